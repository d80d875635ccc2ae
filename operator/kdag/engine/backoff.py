"""The one exponential backoff: a base delay multiplied on every failure in a row, capped.

Retries of a node (SPEC §3 `retry`), Jobs the API server refuses for now, and the
operator's own failed passes all wait by this rule.
"""

from __future__ import annotations


def exponential_delay(base: float, factor: float, cap: float, failures: int) -> float:
    """Seconds to wait after the `failures`-th failure in a row: base·factor^(failures-1),
    at most `cap` (the first failure waits the base)."""
    # The exponent is bounded so that a long outage cannot overflow the float.
    exponent = min(max(failures - 1, 0), 64)
    try:
        return float(min(base * factor**exponent, cap))
    except OverflowError:
        return float(cap)
