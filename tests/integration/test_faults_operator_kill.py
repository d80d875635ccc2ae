"""SIGKILL the operator at random points across 20 runs, restarting it each time (SPEC §8).

Runs of five shapes (chain, fan-out, retries, a fan-out from an output with a false `when`,
onFailure: continue with `finally`) are created, half before the first kill and half while the
operator is dead. The operator is then killed again and again at seeded random points: after
a random delay, or right after it created its n-th next Job (between creating a Job and
recording it in the run's status). Every run must end exactly as it would have without the
kills, and no (run, node instance, attempt) may ever get two Jobs: a watch records every Job
created in the namespace for the whole test.

The seed is printed (and shown on failure); `KDAG_FAULT_SEED=<seed>` replays the same kill
points (the timing of the cluster itself still varies).
"""

from __future__ import annotations

from tests.support.cluster import Cluster
from tests.support.faults import (
    ALL_SHAPES,
    JobLedger,
    KillSchedule,
    RunHistory,
    Shape,
    all_finished,
    finish_and_check,
    operator_for,
    own_namespace,
)
from tests.support.operator import apply, create, run_of

RUNS = 20
MAX_KILLS = 12
# Kills that must land while some run is unfinished for the test to mean something. When the
# runs end before that many did (a fast operator on a quiet machine), more runs are created.
MIN_KILLS_DURING_WORK = 4


def _create_runs(namespace: str, shapes: list[Shape], count: int) -> dict[str, Shape]:
    created = {}
    for i in range(count):
        shape = shapes[i % len(shapes)]
        created[create(namespace, run_of(shape.manifest["metadata"]["name"]))] = shape
    return created


def test_an_operator_killed_at_random_points_finishes_every_run_with_no_duplicate_job(
    cluster: Cluster,
) -> None:
    schedule = KillSchedule.from_env()
    print(f"KDAG_FAULT_SEED={schedule.seed}")
    shapes = [make() for make in ALL_SHAPES]
    with (
        own_namespace("fault") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        RunHistory(namespace, cluster.kubeconfig) as history,
        operator_for(cluster.kubeconfig, [namespace]) as operator,
    ):
        apply(namespace, *(shape.manifest for shape in shapes))
        runs = _create_runs(namespace, shapes, RUNS // 2)
        kills = kills_during_work = 0
        while kills < MAX_KILLS:
            if all_finished(namespace, list(runs)):
                if kills_during_work >= MIN_KILLS_DURING_WORK:
                    break
                runs |= _create_runs(namespace, shapes, len(shapes))
            point = schedule.wait_for_kill_point(ledger)
            if not all_finished(namespace, list(runs)):
                kills_during_work += 1
            operator.kill()
            kills += 1
            print(f"kill {kills}: {point}")
            if kills == 1:  # these runs are first seen by a restarted operator
                runs |= _create_runs(namespace, shapes, RUNS - len(runs))
            KillSchedule._pause(schedule.downtime())
            operator.start()
        context = f"KDAG_FAULT_SEED={schedule.seed}, kill points {schedule.log}"
        print(context)
        finish_and_check(namespace, runs, ledger, history, operator)
        assert not ledger.deleted(), f"{context}: Jobs deleted: {ledger.deleted()}"
        assert kills_during_work >= MIN_KILLS_DURING_WORK, context
