"""Which runs this replica drives, from the member Leases it has seen: the pure core of
active-active shards (`kdag.operator.shards` is the shell that reads and writes the Leases).

Every replica holds a Lease of its own and renews it every `renew` seconds; each renewal
cycle writes its own Lease and then lists everyone's. A run belongs to one live member by
rendezvous (highest-random-weight) hashing of its key over the live members, with sha256, so
every replica computes the same owner from the same members, and a member joining or leaving
moves only the runs it gains or loses.

Times here are one replica's own monotonic seconds, never another replica's clock: a
member's `renewTime` is only a change token (it is written by that member's clock, which may
be skewed), and a member is live for `leaseDurationSeconds` after this replica last *saw*
its renewTime change.

The handover rule (why no run is ever driven by two replicas at once):

1. **Fence.** A replica acts only while its own Lease is surely live in everyone's eyes: until
   `cycle start + its lease duration - margin` of its last cycle that both renewed its
   Lease and listed the others (`margin` is one renew period). A replica that cannot renew
   (API refusing writes, 409s, a partition) or is frozen (SIGSTOP) stops driving everything
   when that passes, before any other replica can count its Lease expired.
2. **Drop at once.** A run whose owner over the live members is someone else is dropped the
   moment that is seen (a new member appears, or this replica's own Lease lapses).
3. **Take after a grace.** A replica takes runs only once it has been acting continuously
   for one lease duration (the longest any member declares): after it joins, and again
   after its own Lease lapsed (a frozen replica that wakes re-checks and waits). By then
   every other replica has either listed its Lease (and dropped what it gains) or fenced
   itself.
4. **Expiry and leave.** A member whose renewTime has not been seen to change for its lease
   duration is dead; by rule 1 it stopped acting before that. A member that leaves cleanly
   deletes its Lease after stopping; others take its runs at once.

Rendezvous hashing makes rules 2 and 3 enough: two replicas that both count each other as
live agree on every run's owner, so a conflict needs one of them to not count the other,
which is exactly a join (rule 3), an expiry or a leave (rules 1 and 4).

The assumption under all of it: a cycle (renew and list) completes within one renew period,
and a write that passed the fence reaches the API server within `margin`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict, Field

# The longest lease a member may declare. Every member waits the longest declared lease
# before it takes runs, so one Lease declaring years would keep every replica idle; a Lease
# beyond this is taken for malformed, as a replica's own flag beyond it is refused.
MAX_LEASE_SECONDS = 3600


class MemberLease(BaseModel):
    """What one member's Lease says (read from `coordination.k8s.io/v1` Leases)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: str = Field(min_length=1, description="spec.holderIdentity: the member's name.")
    renew_time: str = Field(
        description="spec.renewTime as stored: a change token only (another replica's clock)."
    )
    duration_seconds: float = Field(
        gt=0, le=MAX_LEASE_SECONDS, description="spec.leaseDurationSeconds."
    )
    acquire_time: str = Field(default="", description="spec.acquireTime: when it joined.")


@dataclass(frozen=True)
class Seen:
    """One member as this replica saw it: its Lease, and when its renewTime last changed
    (this replica's monotonic seconds)."""

    lease: MemberLease
    changed_at: float

    def live_until(self) -> float:
        return self.changed_at + self.lease.duration_seconds


@dataclass(frozen=True)
class RingState:
    """Everything one replica knows of the ring; changed only by `observe`."""

    me: str
    duration: float
    """This replica's own lease duration, seconds."""
    margin: float
    """The fence's margin, seconds (one renew period)."""
    seen: Mapping[str, Seen] = field(default_factory=dict)
    valid_until: float = -math.inf
    """This replica acts before this time only (rule 1)."""
    valid_since: float = math.inf
    """The start of its current unbroken stretch of validity (rule 3)."""

    def __post_init__(self) -> None:
        if not 0 <= self.margin < self.duration:
            raise ValueError("the margin must be shorter than the lease duration")


def start(me: str, duration: float, margin: float) -> RingState:
    """A replica that has not completed a cycle yet: it owns nothing."""
    return RingState(me=me, duration=duration, margin=margin)


def observe(
    state: RingState, leases: Iterable[MemberLease], cycle_started: float, now: float
) -> RingState:
    """A cycle that renewed this replica's Lease (the write started at `cycle_started`) and
    then listed `leases` completed at `now`. Only successful cycles are observed: a failed
    one changes nothing, and the fence runs out on its own."""
    seen: dict[str, Seen] = {}
    for lease in leases:
        if lease.identity == state.me:
            continue
        before = state.seen.get(lease.identity)
        if before is not None and before.lease.renew_time == lease.renew_time:
            seen[lease.identity] = Seen(lease, before.changed_at)
        else:
            seen[lease.identity] = Seen(lease, now)
    # The stretch is broken if the fence had already run out when this cycle completed: others
    # may have counted this replica dead meanwhile and taken its runs.
    broken = now >= state.valid_until
    return replace(
        state,
        seen=seen,
        valid_until=max(cycle_started + state.duration - state.margin, state.valid_until),
        valid_since=now if broken else state.valid_since,
    )


def valid(state: RingState, now: float) -> bool:
    """Rule 1: this replica's own Lease is surely live."""
    return now < state.valid_until


def grace(state: RingState) -> float:
    """Rule 3's wait: the longest lease duration any member declares."""
    return max([state.duration, *(s.lease.duration_seconds for s in state.seen.values())])


def acting(state: RingState, now: float) -> bool:
    """Valid, and valid without a break for the grace: this replica may own runs."""
    return valid(state, now) and now >= state.valid_since + grace(state)


def live(state: RingState, now: float) -> frozenset[str]:
    """The members whose Lease is live as this replica sees them, itself included if valid."""
    members = {name for name, s in state.seen.items() if now < s.live_until()}
    if valid(state, now):
        members.add(state.me)
    return frozenset(members)


def weight(member: str, key: str) -> int:
    digest = hashlib.sha256(f"{member}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner(key: str, members: Iterable[str]) -> str | None:
    """The member with the highest weight for `key` (ties by name); None without members."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (weight(member, key), member)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


def owns(state: RingState, key: str, now: float) -> bool:
    """Whether this replica drives `key` at `now`."""
    return acting(state, now) and owner(key, live(state, now)) == state.me


def next_change(state: RingState, now: float) -> float | None:
    """The next time at which `owns` may change with no new observation: the fence, the end
    of the grace, a member's expiry. None when nothing is due."""
    due = [state.valid_until, state.valid_since + grace(state)]
    due += [s.live_until() for s in state.seen.values()]
    later = [t for t in due if now < t < math.inf]
    return min(later) if later else None


def run_key(namespace: str, name: str) -> str:
    """A run's key on the ring: `namespace/name`, known from every watch event (a Job's and a
    pod's labels name their run) without reading the run."""
    return f"{namespace}/{name}"


WORKFLOWS_KEY = "kdag.dev/workflows"
"""The ring key whose owner drives every Workflow (status and cron schedules)."""
