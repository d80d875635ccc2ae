"""The one backoff for retrying what failed: doubling from a base, capped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 0.5
    max_seconds: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1 waits the base)."""
        # The exponent is bounded so that a long outage cannot overflow the float.
        exponent = min(failures - 1, 64)
        return min(self.base_seconds * 2.0**exponent, self.max_seconds)
