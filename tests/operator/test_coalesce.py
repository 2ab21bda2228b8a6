"""The re-render coalescer: bursts collapse, nothing requested during a run is missed, failures do not stick."""

from __future__ import annotations

import asyncio

import pytest
from gateway_operator.reconcile.coalesce import Coalescer


async def test_a_burst_runs_at_most_twice_and_every_request_sees_a_later_run():
    co = Coalescer()
    runs: list[int] = []
    release = asyncio.Event()
    changes = 0

    async def render():
        seen = changes
        runs.append(seen)
        await release.wait()
        return seen

    changes = 1
    first = asyncio.create_task(co.run("gw", render))
    await asyncio.sleep(0)
    waiters = []
    for _ in range(50):
        changes += 1
        waiters.append(asyncio.create_task(co.run("gw", render)))
    await asyncio.sleep(0)
    release.set()
    assert await first == 1
    results = await asyncio.gather(*waiters)
    assert runs == [1, 51]  # one run for the whole burst that arrived during the first
    assert all(r == 51 for r in results)  # each waiter got a run that began after its change


async def test_keys_are_independent_and_a_failure_is_retried_by_the_next_request():
    co = Coalescer()
    calls = {"a": 0, "b": 0}

    async def fail():
        calls["a"] += 1
        raise RuntimeError("apiserver down")

    async def ok():
        calls["b"] += 1
        return "ok"

    with pytest.raises(RuntimeError):
        await co.run("a", fail)
    assert await co.run("b", ok) == "ok"
    with pytest.raises(RuntimeError):
        await co.run("a", fail)
    assert calls == {"a": 2, "b": 1}


async def test_requests_do_not_wait_and_a_burst_during_a_run_costs_one_more_run():
    co = Coalescer()
    runs: list[int] = []
    release = asyncio.Event()
    changes = 0

    async def render():
        runs.append(changes)
        await release.wait()

    changes = 1
    co.request("gw", render)  # returns at once: a watch event handler never waits for a reconcile
    await asyncio.sleep(0.01)
    assert runs == [1]
    for _ in range(1000):
        changes += 1
        co.request("gw", render)
    release.set()
    await asyncio.sleep(0.01)
    # The burst that arrived during the first run is covered by exactly one run that started after all of it.
    assert runs == [1, 1001]
    changes += 1
    co.request("gw", render)
    await asyncio.sleep(0.01)
    assert runs == [1, 1001, 1002]  # a request after the runs finished gets its own run
    await co.stop()


async def test_a_failed_background_run_is_logged_and_the_next_request_runs_again(caplog):
    co = Coalescer()
    calls = 0

    async def fail():
        nonlocal calls
        calls += 1
        raise RuntimeError("apiserver down")

    co.request("gw", fail)
    await asyncio.sleep(0.01)
    co.request("gw", fail)
    await asyncio.sleep(0.01)
    assert calls == 2
    assert caplog.text.count("background reconcile failed: RuntimeError") == 2
