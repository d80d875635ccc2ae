"""A costly `when` on the real operator: its node fails with the budget message, and the
run that holds it does not hold up other runs (the planning thread is shared by all).
"""

from __future__ import annotations

import pytest

from tests.support.operator import apply, create, run_of, wait_phase, workflow

pytestmark = pytest.mark.operator

TEN = "[0,1,2,3,4,5,6,7,8,9]"
# Six nested maps over ten items: about 22 million steps, minutes of unbounded celpy.
SIX_NESTED_MAPS = (
    f"size({TEN}.map(a, {TEN}.map(b, {TEN}.map(c, {TEN}.map(d, {TEN}.map(e, "
    f"{TEN}.map(f, 1))))))) > 0"
)
# Far longer than a 3-node run takes, far shorter than the stall the condition would cause.
PLAIN_RUN_SECONDS = 60


def test_a_costly_when_fails_its_node_and_other_runs_go_on(namespace: str) -> None:
    apply(
        namespace,
        workflow(
            "costly",
            [{"name": "gated", "when": SIX_NESTED_MAPS}, {"name": "other"}],
            onFailure="continue",
        ),
        workflow(
            "plain",
            [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}, {"name": "c", "dependsOn": ["b"]}],
        ),
    )
    costly = create(namespace, run_of("costly"))
    plain = create(namespace, run_of("plain"))

    assert wait_phase(namespace, plain, "Succeeded", timeout=PLAIN_RUN_SECONDS)["progress"] == "3/3"
    ended = wait_phase(namespace, costly, "Failed")
    gated = ended["nodes"]["gated"]
    assert gated["phase"] == "Failed"
    # Steps decide on an idle machine; on a very busy one the wall-clock backstop may be first.
    assert gated["message"] in (
        "when: evaluation exceeded its cost budget of 50000 steps",
        "when: evaluation exceeded its time budget of 2s",
    )
    assert ended["nodes"]["other"]["phase"] == "Succeeded"
