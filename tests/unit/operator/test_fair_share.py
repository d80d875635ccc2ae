"""FairShare hands freed slots round-robin to the owners that wait."""

from __future__ import annotations

import asyncio

import pytest

from kdag.operator.fair_share import FairShare


async def _request(log: list[str], name: str, gate: asyncio.Event) -> str:
    log.append(f"start {name}")
    await gate.wait()
    return name


def test_waiting_owners_are_served_in_turn_one_request_each() -> None:
    async def scenario() -> list[str]:
        share, log, gate = FairShare(1), [], asyncio.Event()
        calls = [("a", f"a{i}") for i in range(3)] + [("b", "b0"), ("c", "c0"), ("b", "b1")]
        tasks = []
        for owner, name in calls:
            tasks.append(asyncio.create_task(share.run(owner, _request(log, name, gate))))
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
        return log

    started = asyncio.run(scenario())
    assert started == ["start a0", "start a1", "start b0", "start c0", "start a2", "start b1"]


def test_an_owner_alone_uses_every_slot() -> None:
    async def scenario() -> int:
        share, gate = FairShare(3), asyncio.Event()
        log: list[str] = []
        tasks = [asyncio.create_task(share.run("a", _request(log, str(i), gate))) for i in range(5)]
        for _ in range(5):
            await asyncio.sleep(0)
        running = len(log)
        gate.set()
        await asyncio.gather(*tasks)
        return running

    assert asyncio.run(scenario()) == 3


def test_a_cancelled_wait_gives_its_turn_to_the_next_and_leaks_no_slot() -> None:
    async def scenario() -> list[str]:
        share, log, gate = FairShare(1), [], asyncio.Event()
        first = asyncio.create_task(share.run("a", _request(log, "a0", gate)))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(share.run("b", _request(log, "b0", gate)))
        after = asyncio.create_task(share.run("c", _request(log, "c0", gate)))
        await asyncio.sleep(0)
        waiting.cancel()
        gate.set()
        await first
        await after
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Every slot is free again: a new request starts at once.
        log.append("free" if share._free == 1 and not share._waiting else "leaked")
        return log

    assert asyncio.run(scenario()) == ["start a0", "start c0", "free"]


def test_a_request_that_fails_frees_its_slot() -> None:
    async def failing() -> None:
        raise RuntimeError("500")

    async def scenario() -> int:
        share = FairShare(1)
        with pytest.raises(RuntimeError):
            await share.run("a", failing())
        return share._free

    assert asyncio.run(scenario()) == 1
