"""kdag as a user gets it from `pip install`: a wheel of this checkout in a clean venv.

The module builds the wheel once, as pip builds any source tree (`pip wheel --no-deps`, the
setuptools backend in an isolated build environment), from a copy of the checkout's files
(what git tracks and what it does not ignore), so the build neither writes build/ and
*.egg-info into the checkout nor picks up stale ones from it. Then it makes a fresh venv with
no kdag and no PYTHONPATH, installs the wheel there with its dependencies pinned by
requirements.lock, and runs both entry points.

The dependencies come from PyPI through a wheelhouse, ${XDG_CACHE_HOME:-~/.cache}/kdag/wheels:
the install is tried offline from it first, and only when that fails (the first run, or a
changed lock) are the missing wheels downloaded into it (pip's own HTTP cache stored nothing
on the development machines). The first run needs PyPI and takes about a minute; later ones
about 15 s on an idle machine (building the wheel, making the venv, installing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from kdag import __version__

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
WHEELHOUSE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kdag" / "wheels"
# What would make the venv import the checkout (or another install) instead of the wheel.
LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in LEAKY}


def _try(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        cwd=cwd,
        timeout=900,
        check=False,
    )


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    """A command's output; it must succeed."""
    result = _try(*args, cwd=cwd)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


def _checkout_copy(to: Path) -> Path:
    """The checkout's files (tracked, and untracked but not ignored) copied to `to`."""
    listed = _run("git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        target = to / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return to


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _checkout_copy(tmp_path_factory.mktemp("checkout"))
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, source, cwd=dist)
    built = sorted(dist.glob("kdag-*.whl"))
    assert len(built) == 1, f"pip wheel made {[p.name for p in dist.iterdir()]}"
    return built[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its dependencies installed, nothing else of kdag."""
    where = tmp_path_factory.mktemp("venv")
    python = where / "bin" / "python"
    _run(sys.executable, "-m", "venv", where)
    # --no-compile: byte-compiling some 60 packages takes longer than everything else here,
    # and Python runs without it.
    install = (
        python, "-m", "pip", "install", "--quiet", "--no-compile", "--constraint", LOCK,
        "--no-index", "--find-links", WHEELHOUSE, wheel,
    )  # fmt: skip
    if _try(*install, cwd=where).returncode != 0:
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        dependencies = [str(r) for r in _runtime_requirements(wheel)]
        _run(
            python, "-m", "pip", "download", "--quiet", "--constraint", LOCK,
            "--dest", WHEELHOUSE, *dependencies,
            cwd=where,
        )  # fmt: skip
        _run(*install, cwd=where)
    return where


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"kdag-{__version__}.dist-info/METADATA").decode()
    return Parser().parsestr(text)


def _runtime_requirements(wheel: Path) -> list[Requirement]:
    """What installing the wheel installs (not its extras)."""
    requires = map(Requirement, _metadata(wheel).get_all("Requires-Dist", []))
    return [r for r in requires if r.marker is None]


def test_wheel_holds_the_kdag_package_with_its_type_marker_and_no_tests(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "kdag/py.typed" in names
    assert "kdag/operator/main.py" in names  # it sees the package's modules
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"kdag", f"kdag-{__version__}.dist-info"}
    tests = [name for name in names if re.search(r"(^|/)(tests?|conftest)(/|\.py$)|/test_", name)]
    assert tests == []


def test_wheel_metadata_has_the_version_project_urls_and_dependency_ranges(wheel: Path) -> None:
    metadata = _metadata(wheel)
    assert metadata["Name"] == "kdag"
    assert metadata["Version"] == __version__
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL", []))
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    assert all(url.startswith(urls["Source"]) for url in urls.values()), urls
    assert urls["Source"].startswith("https://")
    # The run-time dependencies are pyproject's ranges: a user's `pip install kdag` is not
    # forced onto exact versions (only the dev extra pins).
    runtime = _runtime_requirements(wheel)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {r.name: r.specifier for r in runtime} == {
        r.name: r.specifier for r in map(Requirement, declared)
    }
    assert [str(r) for r in runtime if any(s.operator == "==" for s in r.specifier)] == []


@pytest.mark.parametrize("program", ["kubectl-kdag", "kdag-operator"])
def test_installed_entry_point_prints_the_version(venv: Path, program: str) -> None:
    shown = _run(venv / "bin" / program, "--version", cwd=venv)
    assert shown.strip() == f"{program} {__version__}"


def test_the_venv_runs_the_installed_wheel_with_consistent_dependencies(venv: Path) -> None:
    python = venv / "bin" / "python"
    imported = _run(python, "-c", "import kdag; print(kdag.__file__)", cwd=venv).strip()
    assert Path(imported).is_relative_to(venv / "lib"), imported
    _run(python, "-m", "pip", "check", cwd=venv)


def test_the_installed_plugins_version_verb_prints_the_version(venv: Path) -> None:
    shown = _run(venv / "bin" / "kubectl-kdag", "version", "--client", cwd=venv)
    assert shown.strip() == f"Client Version: {__version__}"
