"""The operator image, built here by hack/build-image.sh's buildah path (no Docker engine).

The module builds images/operator/Dockerfile once with the script, forced onto buildah (the
path these machines have; `docker build` is the plain path and needs no script), which reuses
the cached Debian base in ~/.cache/kdag/image-base and buildah's layer cache: about a second
when nothing changed, about a minute after a code change, a few minutes the first time. Then it
checks the image's configuration, its OCI labels, and runs commands in it with
`buildah run --isolation chroot`.

Where buildah cannot run at all the tests skip and say why; a build that fails is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kdag import __version__

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "build-image.sh"
IMAGE = "localhost/kdag-operator:test"
USER = "65532:65532"
# What .dockerignore lets into the build context: what the image is built from.
CONTEXT = ("pyproject.toml", "requirements.lock", "README.md", "operator")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, check=False)


@dataclass(frozen=True)
class Built:
    """The built image: buildah's storage flags, its OCI config, a working container, and
    when its build started (to the second)."""

    flags: tuple[str, ...]
    config: dict[str, object]
    container: str
    started: datetime

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run a command in the image's container as the image's user, in chroot isolation."""
        return _run(
            "buildah", *self.flags, "run", "--isolation", "chroot", self.container, "--", *command
        )

    def python(self, code: str) -> str:
        """What a Python snippet run in the image prints; it must succeed."""
        result = self.run("python", "-c", code)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


def _why_buildah_cannot_run() -> str | None:
    """The exact reason buildah cannot build or run anything here, or None if it can."""
    if os.geteuid() != 0:
        return (
            "hack/build-image.sh's buildah path needs root (debootstrap, chroot isolation); "
            f"uid is {os.geteuid()}"
        )
    if shutil.which("buildah") is None and shutil.which("apt-get") is None:
        return "buildah is not installed and there is no apt-get to install it"
    return None


def _probe_buildah(flags: tuple[str, ...]) -> str | None:
    """After a failed build: None if buildah can make and mount a container, else its error."""
    made = _run("buildah", *flags, "from", "--quiet", "scratch")
    if made.returncode != 0:
        return f"`buildah from scratch` fails: {made.stderr.strip()}"
    try:
        mounted = _run("buildah", *flags, "mount", made.stdout.strip())
        if mounted.returncode != 0:
            return f"`buildah mount` fails: {mounted.stderr.strip()}"
        return None
    finally:
        _run("buildah", *flags, "rm", made.stdout.strip())


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    reason = _why_buildah_cannot_run()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "IMAGE": IMAGE, "KDAG_IMAGE_BUILDER": "buildah"}
    env.pop("SOURCE_DATE_EPOCH", None)  # the created label is then the build's time
    started = datetime.now(UTC).replace(microsecond=0)
    build = _run("bash", str(SCRIPT), env=env)
    # The script has installed buildah by now, or said why it could not.
    got = _run("bash", str(SCRIPT), "--buildah-flags", env=env)
    if got.returncode != 0:
        pytest.skip(f"buildah is unavailable: {got.stderr.strip()}")
    flags = tuple(got.stdout.split())
    if build.returncode != 0:
        probe = _probe_buildah(flags)
        if probe:
            pytest.skip(f"buildah cannot run here: {probe}")
        pytest.fail(f"hack/build-image.sh failed:\n{build.stderr[-4000:]}")
    inspected = _run("buildah", *flags, "inspect", "--type", "image", IMAGE)
    assert inspected.returncode == 0, inspected.stderr
    config = json.loads(inspected.stdout)["OCIv1"]["config"]
    made = _run("buildah", *flags, "from", "--quiet", IMAGE)
    assert made.returncode == 0, made.stderr
    try:
        yield Built(flags=flags, config=config, container=made.stdout.strip(), started=started)
    finally:
        # The image stays: removing it would take the layer cache that makes the next build fast.
        _run("buildah", *flags, "rm", made.stdout.strip())


def test_config_runs_the_operator_as_the_non_root_user(built: Built) -> None:
    assert built.config["User"] == USER
    assert built.config["Entrypoint"] == ["kdag-operator"]
    assert built.config["Cmd"] == ["--all-namespaces"]
    assert built.run("id", "-u").stdout.strip() == "65532"


def test_entry_point_runs(built: Built) -> None:
    result = built.run("kdag-operator", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kdag-operator")


def test_image_holds_this_checkout(built: Built) -> None:
    # Importing the operator works, and what is imported is the working tree's code, not a
    # cached layer of older wheels (buildah's layer cache ignores RUN --mount=from content).
    digest = built.python(
        "import hashlib, kdag.operator.main as m; "
        "print(hashlib.sha256(open(m.__file__, 'rb').read()).hexdigest())"
    )
    source = ROOT / "operator" / "kdag" / "operator" / "main.py"
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()


def test_installers_and_kubernetes_aio_are_removed(built: Built) -> None:
    # The Dockerfile uninstalls pip, setuptools and wheel and deletes kubernetes.aio.
    found = built.python(
        "import importlib.util as u; "
        "print([m for m in ('pip', 'setuptools', 'wheel', 'kubernetes.aio') if u.find_spec(m)])"
    )
    assert found == "[]"
    assert built.run("sh", "-c", "command -v pip pip3").stdout == ""


def test_everything_installed_is_pinned_in_requirements_lock(built: Built) -> None:
    installed = json.loads(
        built.python(
            "import json, importlib.metadata as m; "
            "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"
        )
    )
    locked = dict(
        line.strip().split("==", 1)
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    )
    pinned = {_normal(name): version for name, version in locked.items()}
    assert "kopf" in {_normal(name) for name, _ in installed}, installed  # it sees the install
    unpinned = sorted(
        f"{name}=={version}"
        for name, version in installed
        if _normal(name) != "kdag" and pinned.get(_normal(name)) != version
    )
    assert unpinned == [], "installed in the image but not pinned in requirements.lock"


def test_labels_name_the_version_source_and_license_of_this_checkout(built: Built) -> None:
    labels = built.config["Labels"]
    assert isinstance(labels, dict), built.config
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.title"] == "kdag-operator"
    assert labels["org.opencontainers.image.description"].startswith("kdag: ")
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"] == project["urls"]["Source"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]["text"]
    # The version is the one the image's kdag reports, too.
    shown = built.run("kdag-operator", "--version")
    assert shown.stdout.strip() == f"kdag-operator {__version__}", shown.stderr


def test_revision_label_is_the_checkouts_commit_marked_dirty_when_the_context_differs(
    built: Built,
) -> None:
    head = _git("rev-parse", "HEAD")
    changed = _git("status", "--porcelain", "--", *CONTEXT)
    expected = f"{head}-dirty" if changed else head
    assert built.config["Labels"]["org.opencontainers.image.revision"] == expected


def test_created_label_is_the_time_of_this_build(built: Built) -> None:
    # RFC 3339 in UTC, and not a cached value from an earlier build (buildah 1.28's layer cache
    # kept the first build's labels when the Dockerfile set them from build arguments).
    created = built.config["Labels"]["org.opencontainers.image.created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created), created
    assert built.started <= datetime.fromisoformat(created) <= datetime.now(UTC)


def _git(*args: str) -> str:
    result = _run("git", "-C", str(ROOT), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()
