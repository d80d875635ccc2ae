"""The krew manifest template (plugins/krew/kdag.yaml) renders to what krew accepts, and the
archive's launcher runs the plugin and its completion through krew's link."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from string import Template
from typing import Any

import yaml

from kdag import __version__

REPO = Path(__file__).resolve().parents[3]
KREW = REPO / "plugins" / "krew"
SHA = "ab" * 32
PYTHON = "{}.{}".format(*sys.version_info[:2])
VALUES = {
    "VERSION": __version__,
    "DOWNLOAD": "https://example.invalid/releases/v" + __version__,
    "HOMEPAGE": "https://example.invalid/kdag",
    **{f"SHA256_{p}": SHA for p in ("LINUX_AMD64", "LINUX_ARM64", "DARWIN_AMD64", "DARWIN_ARM64")},
}


def _manifest() -> dict[str, Any]:
    # substitute(), not safe_substitute(): a placeholder the docs do not list fails here.
    return dict(yaml.safe_load(Template((KREW / "kdag.yaml").read_text()).substitute(VALUES)))


def test_the_manifest_is_a_krew_plugin_named_as_its_file() -> None:
    manifest = _manifest()
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == (KREW / "kdag.yaml").stem == "kdag"
    spec = manifest["spec"]
    assert spec["version"] == f"v{__version__}"
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", spec["version"])
    assert spec["shortDescription"] and spec["description"] and spec["homepage"]


def test_every_platform_installs_the_plugin_and_its_completion() -> None:
    platforms = _manifest()["spec"]["platforms"]
    selectors = {
        (p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"])
        for p in platforms
    }
    assert selectors == {
        ("linux", "amd64"),
        ("linux", "arm64"),
        ("darwin", "amd64"),
        ("darwin", "arm64"),
    }
    for platform in platforms:
        os_, arch = (
            platform["selector"]["matchLabels"]["os"],
            platform["selector"]["matchLabels"]["arch"],
        )
        assert platform["uri"].endswith(f"kubectl-kdag_v{__version__}_{os_}_{arch}.tar.gz")
        assert platform["sha256"] == SHA
        assert platform["bin"] == "kubectl-kdag"
        shipped = {f["from"] for f in platform["files"]}
        assert shipped == {"kubectl-kdag", "kubectl_complete-kdag", "lib", "LICENSE"}


def _archive(tmp_path: Path) -> Path:
    """An unpacked archive as docs/releasing.md builds it (lib/ holds kdag; the test's venv
    holds the dependencies), linked into a bin directory as krew links it."""
    store = tmp_path / "store"
    for version in (PYTHON, "3.99"):
        (store / "lib" / version).mkdir(parents=True)
    (store / "lib" / PYTHON / "kdag").symlink_to(REPO / "operator" / "kdag")
    launcher = (KREW / "launcher.sh").read_text()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("kubectl-kdag", "kubectl_complete-kdag"):
        (store / name).write_text(launcher)
        (store / name).chmod(0o755)
        (bin_dir / name).symlink_to(store / name)
    python = bin_dir / "python3"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return bin_dir


def _run(bin_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)


def test_the_launcher_runs_the_plugin_and_its_completion_through_krew_s_link(
    tmp_path: Path,
) -> None:
    bin_dir = _archive(tmp_path)
    version = _run(bin_dir, str(bin_dir / "kubectl-kdag"), "version", "--client")
    assert (version.returncode, version.stdout) == (0, f"Client Version: {__version__}\n"), version
    completion = _run(bin_dir, str(bin_dir / "kubectl_complete-kdag"), "get", "ru")
    assert (completion.returncode, completion.stdout) == (0, "runs\n:4\n"), completion


def test_the_launcher_says_so_when_python_is_not_one_it_was_built_for(tmp_path: Path) -> None:
    bin_dir = _archive(tmp_path)
    (bin_dir / "python3").write_text("#!/bin/sh\necho 3.9\n")  # what an old python3 says
    result = _run(bin_dir, str(bin_dir / "kubectl-kdag"), "version")
    assert result.returncode == 1
    assert result.stderr == (
        "error: kubectl kdag needs python3 on PATH of a version it was built for"
        f" ({' '.join(sorted((PYTHON, '3.99')))}; python3 is 3.9)\n"
    )
