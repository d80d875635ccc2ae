"""The shard ring's handover rule (kdag.engine.shard_ring): tables for each rule, and a
simulation of replicas joining, dying, freezing, losing the API and leaving, in which no run
is ever owned by two replicas at one instant, and every run finds an owner once things
settle."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdag.engine import shard_ring as ring
from kdag.engine.shard_ring import MemberLease, RingState

D = 15.0  # lease duration
R = 5.0  # renew period (and the fence's margin)
KEYS = [ring.run_key("team", f"run-{i}") for i in range(40)]


def lease(name: str, token: str, duration: float = D) -> MemberLease:
    return MemberLease(identity=name, renew_time=token, duration_seconds=duration)


def cycle(state: RingState, at: float, *others: MemberLease) -> RingState:
    mine = lease(state.me, f"{state.me}@{at}")
    return ring.observe(state, [mine, *others], cycle_started=at, now=at + 0.1)


# ------------------------------------------------------------------ tables


def test_a_replica_owns_nothing_before_its_first_cycle_and_during_the_grace() -> None:
    state = ring.start("a", D, R)
    assert not ring.valid(state, 0.0)
    state = cycle(state, 0.0)
    assert ring.valid(state, 1.0) and not ring.acting(state, 1.0)
    for t in (5.0, 10.0):
        state = cycle(state, t)
    assert not any(ring.owns(state, k, 15.0) for k in KEYS)  # 0.1 + 15 not reached
    assert all(ring.owns(state, k, 15.2) for k in KEYS)  # alone: every run


def test_a_replica_that_cannot_renew_stops_before_its_lease_would_expire() -> None:
    """The API refuses Lease writes (403, 500) or answers 409: no cycle is observed, and
    the fence ends its ownership `margin` before anyone may count it dead."""
    state = ring.start("a", D, R)
    for t in (0.0, 5.0, 10.0, 15.0, 20.0):
        state = cycle(state, t)
    assert ring.owns(state, KEYS[0], 21.0)
    # The cycle at 25 fails, and every one after it: the last good one started at 20.
    assert ring.owns(state, KEYS[0], 29.9)
    assert not ring.owns(state, KEYS[0], 30.0)  # 20 + 15 - 5
    assert ring.live(state, 30.0) == frozenset()
    # Others count it dead only from 20 + (their latency) + 15 > 30.


def test_a_frozen_replica_that_wakes_rechecks_and_waits_a_whole_grace() -> None:
    """SIGSTOP longer than the lease: on waking its state is stale, owns() says no at once,
    and after its next good cycle it waits a lease duration before taking anything."""
    state = ring.start("a", D, R)
    for t in (0.0, 5.0, 10.0, 15.0, 20.0):
        state = cycle(state, t)
    assert ring.owns(state, KEYS[0], 24.0)
    # Frozen from 24 to 60: the first thing it does is ask.
    assert not ring.owns(state, KEYS[0], 60.0)
    for t in (60.0, 65.0, 70.0):
        state = cycle(state, t)
    assert not ring.acting(state, 75.0)
    assert ring.owns(state, KEYS[0], 75.2)


def test_a_cycle_that_completes_after_the_fence_ran_out_breaks_the_stretch() -> None:
    """Frozen mid-cycle: the renewal started in time but completed too late."""
    state = ring.start("a", D, R)
    for t in (0.0, 5.0, 10.0, 15.0, 20.0):
        state = cycle(state, t)
    # The fence ran out at 30 (20 + 15 - 5); the cycle started at 25 completes at 31.
    late = ring.observe(state, [lease("a", "late")], cycle_started=25.0, now=31.0)
    assert ring.valid(late, 31.0)  # until 25 + 10
    assert not ring.acting(late, 31.0)
    assert late.valid_since == 31.0


def test_clock_skew_does_not_matter_renew_time_is_only_a_change_token() -> None:
    """b's clock is an hour behind (or ahead): its renewTime still changes each renewal, and
    liveness is judged by when a renewal was *seen*, on a's own clock."""
    a = ring.start("a", D, R)
    for i, t in enumerate((0.0, 5.0, 10.0, 15.0, 20.0)):
        skewed = lease("b", f"2026-11-30T{i:02d}:00:00.000000Z")  # far from a's time
        a = cycle(a, t, skewed)
    assert ring.live(a, 20.2) == frozenset({"a", "b"})
    # b stops renewing: its last change was seen at 20.1, so it is live until 35.1.
    a = cycle(a, 25.0, lease("b", "2026-11-30T04:00:00.000000Z"))
    assert "b" in ring.live(a, 35.0)
    assert "b" not in ring.live(a, 35.2)


def test_a_new_member_takes_only_what_it_gains_and_the_others_drop_it_at_once() -> None:
    a = ring.start("a", D, R)
    for t in (0.0, 5.0, 10.0, 15.0, 20.0):
        a = cycle(a, t)
    owned_alone = {k for k in KEYS if ring.owns(a, k, 20.5)}
    assert owned_alone == set(KEYS)
    # b joins at 21; a's cycle at 25 lists it and drops b's share at once.
    b = cycle(ring.start("b", D, R), 21.0, lease("a", "a@20"))
    a = cycle(a, 25.0, lease("b", "b@21"))
    gained = {k for k in KEYS if ring.owner(k, ["a", "b"]) == "b"}
    assert gained and gained != set(KEYS)
    assert {k for k in KEYS if ring.owns(a, k, 25.2)} == set(KEYS) - gained
    assert not any(ring.owns(b, k, 25.2) for k in KEYS)  # b is in its grace
    for t in (26.0, 31.0, 36.0):
        b = cycle(b, t, lease("a", f"a@{t}"))
    assert {k for k in KEYS if ring.owns(b, k, 36.2)} == gained


def test_a_member_that_leaves_cleanly_hands_over_at_once() -> None:
    a = ring.start("a", D, R)
    for t in (0.0, 5.0, 10.0, 15.0, 20.0):
        a = cycle(a, t, lease("b", f"b@{t}"))
    theirs = {k for k in KEYS if ring.owner(k, ["a", "b"]) == "b"}
    assert not any(ring.owns(a, k, 20.2) for k in theirs)
    a = cycle(a, 25.0)  # b deleted its Lease on the way out
    assert all(ring.owns(a, k, 25.2) for k in theirs)


def test_a_member_that_dies_is_taken_over_a_lease_duration_after_its_last_renewal() -> None:
    a = ring.start("a", D, R)
    for t in (0.0, 5.0, 10.0, 15.0, 20.0):
        a = cycle(a, t, lease("b", f"b@{t}"))
    theirs = {k for k in KEYS if ring.owner(k, ["a", "b"]) == "b"}
    for t in (25.0, 30.0):  # b was killed after renewing at 20
        a = cycle(a, t, lease("b", "b@20.0"))
    assert not any(ring.owns(a, k, 35.0) for k in theirs)
    assert all(ring.owns(a, k, 35.2) for k in theirs)  # seen at 20.1, + 15
    assert ring.next_change(a, 30.2) == pytest.approx(35.1)


def test_members_declaring_a_longer_lease_lengthen_the_grace() -> None:
    a = ring.start("a", D, R)
    a = cycle(a, 0.0, lease("b", "b@0", duration=40.0))
    assert ring.grace(a) == 40.0


def test_rendezvous_is_stable_and_moves_only_what_a_member_gains_or_loses() -> None:
    three = {k: ring.owner(k, ["a", "b", "c"]) for k in KEYS}
    two = {k: ring.owner(k, ["a", "b"]) for k in KEYS}
    for k in KEYS:
        if three[k] != "c":
            assert two[k] == three[k]
    assert ring.owner("x", []) is None
    assert ring.owner("team/run-1", ["b", "a"]) == ring.owner("team/run-1", ["a", "b"])
    assert len(set(three.values())) == 3  # 40 keys spread over three members


def test_the_margin_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="margin"):
        ring.start("a", 5.0, 5.0)


# ------------------------------------------------------------------ the simulation


@dataclass
class Replica:
    name: str
    join: float
    latency_list: float  # seconds from a cycle's start to its list reading the server
    latency_done: float  # seconds from the list to the cycle completing
    kill: float = math.inf
    leave: float = math.inf
    frozen: tuple[float, float] = (math.inf, math.inf)  # SIGSTOP from, to
    refused: tuple[float, float] = (math.inf, math.inf)  # Lease writes refused from, to
    state: RingState = field(init=False)

    def __post_init__(self) -> None:
        self.state = ring.start(self.name, D, R)

    def running(self, t: float) -> bool:
        """Its process executes at t (not killed, not gone, not frozen)."""
        return self.join <= t < min(self.kill, self.leave) and not (
            self.frozen[0] <= t < self.frozen[1]
        )

    def thaw(self, t: float) -> float:
        """When something due at t actually happens (a frozen process runs it on waking)."""
        return self.frozen[1] if self.frozen[0] <= t < self.frozen[1] else t


def simulate(replicas: list[Replica], end: float, step: float = 0.5) -> dict[float, dict]:
    """Run every replica's cycles against one Lease store; at each step, what each running
    replica owns. Returns {t: {key: [owners]}} for steps with a conflict, and checks."""
    server: dict[str, MemberLease] = {}
    events: list[tuple[float, int, str, str, float]] = []  # (at, seq, kind, name, started)
    seq = 0
    by_name = {r.name: r for r in replicas}

    def push(at: float, kind: str, name: str, started: float) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, name, started))

    for r in replicas:
        push(r.join, "write", r.name, r.join)
        gone = r.thaw(r.leave)  # a frozen replica leaves when it wakes
        if gone < r.kill and gone < math.inf:
            push(gone + 0.01, "delete", r.name, gone)
    conflicts: dict[float, dict] = {}
    listed: dict[str, list[MemberLease]] = {}
    t = 0.0
    while t <= end:
        while events and events[0][0] <= t:
            at, _, kind, name, started = heapq.heappop(events)
            r = by_name[name]
            if kind == "delete":
                server.pop(name, None)
                continue
            if at >= min(r.kill, r.leave):
                continue
            woke = r.thaw(at)
            if woke > at:
                push(woke, kind, name, started)
                continue
            if kind == "write":
                if r.refused[0] <= at < r.refused[1]:
                    push(started + R, "write", name, started + R)  # failed cycle
                    continue
                server[name] = lease(name, f"{name}@{at}")
                push(at + r.latency_list, "list", name, started)
            elif kind == "list":
                listed[name] = list(server.values())
                push(at + r.latency_done, "done", name, started)
            elif kind == "done":
                r.state = ring.observe(r.state, listed.pop(name), started, at)
                nxt = max(started + R, at)
                push(nxt, "write", name, nxt)
        owners: dict[str, list[str]] = {}
        for r in replicas:
            if r.running(t):
                for k in KEYS:
                    if ring.owns(r.state, k, t):
                        owners.setdefault(k, []).append(r.name)
        clash = {k: v for k, v in owners.items() if len(v) > 1}
        if clash:
            conflicts[t] = clash
        t = round(t + step, 6)
    return conflicts


def owned_at(replicas: list[Replica], t: float) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {k: [] for k in KEYS}
    for r in replicas:
        if r.running(t):
            for k in KEYS:
                if ring.owns(r.state, k, t):
                    owners[k].append(r.name)
    return owners


window = st.tuples(st.floats(0, 90), st.floats(0, 40)).map(lambda w: (w[0], w[0] + w[1]))
maybe_window = st.one_of(st.just((math.inf, math.inf)), window)
maybe_time = st.one_of(st.just(math.inf), st.floats(0, 100))


@st.composite
def replica(draw: st.DrawFn, name: str) -> Replica:
    latency_list = draw(st.floats(0, 1.5))
    return Replica(
        name=name,
        join=draw(st.floats(0, 60)),
        latency_list=latency_list,
        latency_done=draw(st.floats(0, 2.0 - latency_list)),
        kill=draw(maybe_time),
        leave=draw(maybe_time),
        frozen=draw(maybe_window),
        refused=draw(maybe_window),
    )


@settings(max_examples=60, deadline=None)
@given(
    troubled=st.lists(st.integers(0, 99), min_size=1, max_size=3).flatmap(
        lambda ids: st.tuples(*(replica(f"r{i}-{n}") for n, i in enumerate(ids)))
    ),
    steady_join=st.floats(0, 60),
)
def test_no_run_is_ever_owned_by_two_replicas_and_every_run_finds_an_owner(
    troubled: tuple[Replica, ...], steady_join: float
) -> None:
    """Replicas join, are killed, freeze (longer or shorter than the lease), lose the API
    (every Lease write refused) and leave, each acting on what it last listed (staleness up
    to 2 s < the renew period); one steady replica is never disturbed."""
    steady = Replica("steady", steady_join, latency_list=0.5, latency_done=0.5)
    replicas = [steady, *troubled]
    assert simulate(replicas, end=170.0) == {}
    # Every disturbance is over by 130 and settled (expiry + grace) by 170: each run has
    # exactly one owner.
    assert all(len(v) == 1 for v in owned_at(replicas, 170.0).values())


def test_the_simulation_finds_a_conflict_when_the_grace_is_skipped() -> None:
    """The check has teeth: a joining replica that acts at once clashes with the others."""
    a = Replica("a", 0.0, 0.5, 0.5)
    b = Replica("b", 41.0, 0.5, 0.5)  # a lists next at 45.5
    original = ring.grace
    try:
        ring.grace = lambda state: 0.0  # type: ignore[assignment]
        assert simulate([a, b], end=60.0) != {}
    finally:
        ring.grace = original  # type: ignore[assignment]


def test_the_simulation_finds_a_conflict_when_the_fence_is_skipped() -> None:
    """And without the fence: a replica frozen past its lease wakes believing it still owns
    its runs, which the other took meanwhile."""
    a = Replica("a", 0.0, 0.5, 0.5)
    b = Replica("b", 0.0, 0.5, 0.5, frozen=(40.0, 70.0))
    original = ring.valid
    try:
        ring.valid = lambda state, now: True  # type: ignore[assignment]
        assert simulate([a, b], end=75.0) != {}
    finally:
        ring.valid = original  # type: ignore[assignment]
