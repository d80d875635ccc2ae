"""The CRD YAML under crds/ is what the pydantic models generate (SPEC §2: one source of truth)."""

from __future__ import annotations

from pathlib import Path

from kdag.api import crdgen

CRD_DIR = Path(__file__).resolve().parents[3] / "crds"


def test_checked_in_crds_match_the_models() -> None:
    diffs = crdgen.stale(CRD_DIR)
    assert not diffs, (
        "crds/ is stale: the pydantic models in operator/kdag/api generate different CRDs. "
        "Run `make crds` and commit crds/.\n" + "".join(diffs)
    )
