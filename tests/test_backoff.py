"""The one backoff every retry loop uses."""

from __future__ import annotations

from jobcast.backoff import Backoff, jittered_s


def test_waits_double_within_jitter_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(0.1, 1.0)
    waits = [backoff.next_s() for _ in range(8)]
    for n, wait in enumerate(waits):
        ceiling = min(1.0, 0.1 * 2**n)
        assert ceiling / 2 <= wait <= ceiling, (n, wait)
    backoff.reset()
    assert 0.05 <= backoff.next_s() <= 0.1


def test_a_long_outage_does_not_overflow() -> None:
    assert 2.5 <= jittered_s(0.05, 5.0, 10_000) <= 5.0
