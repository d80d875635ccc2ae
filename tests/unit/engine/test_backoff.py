"""The one exponential backoff behind node retries, refused Jobs and the operator's retries."""

from __future__ import annotations

import pytest

from kdag.engine.backoff import exponential_delay


@pytest.mark.parametrize(
    ("base", "factor", "cap", "failures", "expected"),
    [
        (1, 2, 30, 1, 1.0),
        (1, 2, 30, 5, 16.0),
        (1, 2, 30, 6, 30.0),
        (10, 1, 60, 9, 10.0),
        (0.5, 3, 100, 3, 4.5),
        (1, 2, 30, 0, 1.0),
        (1, 2, 30, 10**9, 30.0),
        (1, 1e300, 60, 3, 60.0),
    ],
)
def test_delay_grows_by_the_factor_up_to_the_cap(
    base: float, factor: float, cap: float, failures: int, expected: float
) -> None:
    assert exponential_delay(base, factor, cap, failures) == expected
