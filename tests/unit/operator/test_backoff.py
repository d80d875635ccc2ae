from kdag.operator.backoff import Backoff


def test_the_delay_doubles_from_the_base_up_to_the_cap() -> None:
    backoff = Backoff(base_seconds=0.5, max_seconds=3.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_long_outage_stays_at_the_cap() -> None:
    assert Backoff(base_seconds=0.5, max_seconds=60.0).delay(100_000) == 60.0
