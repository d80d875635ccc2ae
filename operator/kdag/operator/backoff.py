"""The operator's backoff for retrying what failed (a pass, a watch, a peering write): the
engine's one exponential rule, doubling from a base."""

from __future__ import annotations

from dataclasses import dataclass

from kdag.engine.backoff import exponential_delay


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 0.5
    max_seconds: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1 waits the base)."""
        return exponential_delay(self.base_seconds, 2.0, self.max_seconds, failures)
