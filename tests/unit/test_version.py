"""One version: kdag.__version__, which the package, both entry points and the chart carry."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from kdag import __version__

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_the_installed_package_has_kdag_version() -> None:
    assert version("kdag") == __version__


def test_the_chart_carries_the_same_version() -> None:
    chart = yaml.safe_load((REPO / "charts/kdag/Chart.yaml").read_text())
    assert chart["version"] == __version__
    assert chart["appVersion"] == __version__


@pytest.mark.parametrize("program", ["kdag-operator", "kubectl-kdag"])
def test_both_entry_points_print_the_version(program: str) -> None:
    shown = subprocess.run(
        [str(BIN / program), "--version"], capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == f"{program} {__version__}"
