"""Active-active shards: the Lease shell around `kdag.engine.shard_ring` (docs/install.md
"Shards").

Each replica holds a `coordination.k8s.io/v1` Lease of its own, `kdag-shard-<identity>` in
the operator's namespace, labelled `kdag.dev/shard-group=<group>`. Every `renew` seconds a
cycle replaces its Lease (a new renewTime) and lists the group's Leases; a cycle that did
both is fed to the ring, which decides the live members and whether this replica may act
(`shard_ring`'s module docstring has the handover rule and why it is safe). A failed cycle
(403, 409, 500, a timeout) feeds nothing: the ring's fence then stops this replica from
driving anything before its Lease could be counted expired by others.

`owns(key)` is the one cheap question the reconciler asks (before each pass, each enqueue,
each write). It says yes only for what both the ring says now and the last *applied* epoch
says: losing a run takes effect at once, gaining one only once `Shards` has told its owner
(`on_gained`), which re-reads the run and lists its Jobs before planning it.

On a clean stop the replica deletes its Lease, after its work has stopped, so the others take
its runs at once instead of a lease duration later.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from kdag.engine import shard_ring as ring
from kdag.engine.shard_ring import MemberLease, RingState
from kdag.operator.kube import KubeError
from kdag.operator.objects import RunKey, utcnow

logger = logging.getLogger(__name__)

GROUP_LABEL = "kdag.dev/shard-group"
LEASE_PREFIX = "kdag-shard-"


class LeaseApi(Protocol):
    """The Lease calls of `kdag.operator.kube.KubeClient` the shell makes."""

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]: ...

    async def replace_lease(
        self, namespace: str, name: str, lease: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def list_leases(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    async def delete_lease(self, namespace: str, name: str) -> bool: ...


def lease_name(identity: str) -> str:
    """`kdag-shard-<identity>`, made a valid object name (a hash keeps distinct ones apart)."""
    readable = re.sub(r"[^a-z0-9-]+", "-", identity.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return f"{LEASE_PREFIX}{readable}-{digest}" if readable else f"{LEASE_PREFIX}{digest}"


def micro_time(moment: datetime) -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds, UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def member_of(lease: Mapping[str, Any]) -> MemberLease | None:
    """The member a listed Lease names; None for one that names nobody or is malformed."""
    spec = lease.get("spec") or {}
    try:
        return MemberLease(
            identity=spec.get("holderIdentity") or "",
            renew_time=str(spec.get("renewTime") or ""),
            duration_seconds=spec.get("leaseDurationSeconds") or 0,
            acquire_time=str(spec.get("acquireTime") or ""),
        )
    except ValidationError:
        return None


@functools.lru_cache(maxsize=65_536)
def _owner_among(key: str, members: frozenset[str]) -> str | None:
    """`ring.owner`, remembered: asked on every event of a run, a sha256 per member each time.
    Bounded, so the runs of months do not pile up in a long-lived replica."""
    return ring.owner(key, members)


@dataclass(frozen=True)
class Epoch:
    """What ownership was last applied from: whether this replica acted, and the members."""

    acting: bool
    members: frozenset[str]


NOBODY = Epoch(acting=False, members=frozenset())


class Shards:
    """One replica's membership: its Lease, the ring state, and the epoch applied."""

    def __init__(
        self,
        api: LeaseApi,
        *,
        namespace: str,
        group: str,
        identity: str,
        lease_seconds: int,
        renew_seconds: float,
        on_change: Callable[[Callable[[str], bool], Callable[[str], bool]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._api = api
        self._close = close
        self.namespace = namespace
        self.group = group
        self.identity = identity
        self.lease_name = lease_name(identity)
        self._lease_seconds = lease_seconds
        self._renew = renew_seconds
        self.on_change = on_change
        self.on_members: Callable[[int], None] | None = None  # the member count, for metrics
        self._clock = clock
        self._wall = wall
        self.state: RingState = ring.start(identity, float(lease_seconds), renew_seconds)
        self._epoch = NOBODY
        self._quiet_until = -math.inf  # see `apply`
        self._stored: dict[str, Any] | None = None  # our Lease as last written
        self._usurped = False  # another process renews our Lease under our identity
        self._acquired = micro_time(wall())
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ the question

    def owns(self, key: str) -> bool:
        """Whether this replica drives `key` now (a ring key: `shard_ring.run_key`)."""
        epoch = self._epoch
        if not epoch.acting or self._owner(key) != self.identity:
            return False
        now = self._clock()
        if now < self._quiet_until:
            return True  # nothing has expired since the epoch was applied: it still holds
        if not ring.acting(self.state, now):
            return False
        members = ring.live(self.state, now)
        return members == epoch.members or ring.owner(key, members) == self.identity

    def owns_run(self, key: RunKey) -> bool:
        return self.owns(ring.run_key(*key))

    def owns_workflows(self) -> bool:
        return self.owns(ring.WORKFLOWS_KEY)

    def _owner(self, key: str) -> str | None:
        return _owner_among(key, self._epoch.members)

    @property
    def members(self) -> frozenset[str]:
        """The members of the epoch applied (for logs, metrics and tests)."""
        return self._epoch.members

    # ------------------------------------------------------------ one cycle

    def _desired(self) -> dict[str, Any]:
        lease: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.lease_name,
                "namespace": self.namespace,
                "labels": {GROUP_LABEL: self.group},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._lease_seconds,
                "acquireTime": self._acquired,
                "renewTime": micro_time(self._wall()),
            },
        }
        if self._stored is not None:
            version = (self._stored.get("metadata") or {}).get("resourceVersion")
            lease["metadata"]["resourceVersion"] = version
        return lease

    async def _renew_lease(self) -> None:
        """Write our Lease with a new renewTime; raises KubeError when that fails."""
        if self._usurped:
            raise KubeError(409, "Conflict", "another process holds this replica's identity")
        if self._stored is None:
            try:
                self._stored = await self._api.create_lease(self.namespace, self._desired())
                return
            except KubeError as exc:
                if exc.status != 409:
                    raise
                # Ours from before a restart (same identity): renew it from what is stored,
                # with our acquireTime (a process still renewing it then stops).
                self._stored = await self._api.get_lease(self.namespace, self.lease_name)
                if self._stored is None:
                    raise
        try:
            self._stored = await self._api.replace_lease(
                self.namespace, self.lease_name, self._desired()
            )
        except KubeError as exc:
            if exc.status == 404:
                self._stored = None  # deleted (by hand): created again next cycle
                raise
            if exc.status != 409:
                raise
            # Our last write's answer was lost, or someone wrote our Lease: read it, then
            # write once more in this cycle (which still counts from its start) - unless
            # another process took our identity (a new acquireTime): then it has the Lease,
            # and this replica stops renewing, so its fence stops it.
            self._stored = await self._api.get_lease(self.namespace, self.lease_name)
            if self._stored is None:
                raise
            if (self._stored.get("spec") or {}).get("acquireTime") != self._acquired:
                self._usurped = True
                logger.error(
                    "shard lease %s was taken by another process with identity %s: this "
                    "replica stops driving runs",
                    self.lease_name,
                    self.identity,
                )
                raise
            self._stored = await self._api.replace_lease(
                self.namespace, self.lease_name, self._desired()
            )

    async def cycle(self) -> bool:
        """Renew our Lease, then list the group's; True when both succeeded (and the ring
        has seen them). Then apply what changed."""
        started = self._clock()
        ok = False
        try:
            await self._renew_lease()
            listed = await self._api.list_leases(self.namespace, f"{GROUP_LABEL}={self.group}")
        except KubeError as exc:
            logger.warning("shard lease %s not renewed: %s", self.lease_name, exc)
        else:
            members = [m for m in map(member_of, listed) if m is not None]
            self.state = ring.observe(self.state, members, started, self._clock())
            ok = True
        self.apply()
        return ok

    def apply(self) -> None:
        """Bring the applied epoch up to what the ring says now, and tell the owner what
        moved: first what was lost, then what was gained."""
        now = self._clock()
        acting = ring.acting(self.state, now)
        members = ring.live(self.state, now) if acting else frozenset()
        epoch = Epoch(acting, members)
        before = self._epoch
        # Until the ring's next time-bound change, `owns` may trust the epoch alone.
        self._quiet_until = ring.next_change(self.state, now) or now
        if epoch == before:
            return
        me = self.identity

        def was_mine(key: str) -> bool:
            return before.acting and ring.owner(key, before.members) == me

        def is_mine(key: str) -> bool:
            return epoch.acting and ring.owner(key, epoch.members) == me

        self._epoch = epoch
        if self.on_members is not None:
            self.on_members(len(members))
        logger.info(
            "shards: %s (members: %s)",
            "acting" if acting else "not acting: owns nothing",
            ", ".join(sorted(members)) or "none",
        )
        if self.on_change is not None:
            self.on_change(was_mine, is_mine)

    # ------------------------------------------------------------ the loop

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name="kdag-shards")

    async def _forever(self) -> None:
        while True:
            started = self._clock()
            try:
                await asyncio.wait_for(self.cycle(), timeout=self._renew)
            except TimeoutError:
                logger.warning(
                    "shard lease %s: a cycle took over %.0fs", self.lease_name, self._renew
                )
                self.apply()
            # Sleep until the next cycle, waking for any time-bound change in between (the
            # fence, the end of the grace, a member's expiry).
            next_cycle = started + self._renew
            while (now := self._clock()) < next_cycle:
                due = ring.next_change(self.state, now)
                wake = min(next_cycle, due if due is not None else next_cycle)
                await asyncio.sleep(max(wake - now, 0.0) + 0.01)
                self.apply()

    async def stop(self, *, leave: bool = True) -> None:
        """Stop renewing; with `leave`, delete our Lease so others take over at once (call
        only once this replica's work has stopped)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._epoch = NOBODY
        self._quiet_until = -math.inf
        if leave:
            try:
                await self._api.delete_lease(self.namespace, self.lease_name)
            except KubeError as exc:
                logger.warning("shard lease %s not deleted: %s", self.lease_name, exc)
        if self._close is not None:
            await self._close()


class OwnedRuns:
    """What `Shards.apply` tells the operator: runs lost and gained in the cache, and the
    Workflows' side when its key moves."""

    def __init__(
        self,
        keys: Callable[[], Iterable[RunKey]],
        take: Callable[[RunKey], None],
        release: Callable[[RunKey], None],
        workflows_gained: Callable[[], None],
    ) -> None:
        self._keys = keys
        self._take = take
        self._release = release
        self._workflows_gained = workflows_gained

    def __call__(self, was_mine: Callable[[str], bool], is_mine: Callable[[str], bool]) -> None:
        lost = gained = 0
        for key in list(self._keys()):
            ring_key = ring.run_key(*key)
            before, after = was_mine(ring_key), is_mine(ring_key)
            if before and not after:
                self._release(key)
                lost += 1
            elif after and not before:
                self._take(key)
                gained += 1
        if is_mine(ring.WORKFLOWS_KEY) and not was_mine(ring.WORKFLOWS_KEY):
            self._workflows_gained()
            logger.info("shards: this replica drives the Workflows (status and schedules)")
        if lost or gained:
            logger.info("shards: took over %d run(s), released %d", gained, lost)
