"""Offline half of the bad-input corpus: the models and the engine catch every case.

The API-server half (admission messages, runs ending Invalid) is in
tests/integration/test_bad_input.py.
"""

from __future__ import annotations

import pytest

from kdag.cli.lint import lint_document
from tests.badinput.corpus import Case, load_cases

CASES = load_cases()
OFFLINE = [c for c in CASES if c.name != "32-unknown-workflowref"]  # needs the cluster


def test_the_corpus_has_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert {c.outcome for c in CASES} == {
        "admission",
        "invalid",
        "admission-or-invalid",
        "workflow-invalid",
    }


@pytest.mark.parametrize("case", OFFLINE, ids=[c.name for c in OFFLINE])
def test_bad_input_is_caught_offline_with_a_message_naming_the_field(case: Case) -> None:
    problems = [str(p) for p in lint_document(case.document, {})]
    assert problems, f"{case.name}: no problem found"
    if case.outcome != "admission":  # the models' wording differs from the API server's
        assert any(case.text in p for p in problems), problems
