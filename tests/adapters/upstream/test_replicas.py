"""Replica choice and circuit breakers, without a network: the probe is a function the test controls."""

from __future__ import annotations

import asyncio

from gateway.adapters.upstream.replicas import Replica, ReplicaSet


def _set(urls: list[str], probe_answers: list[bool] | None = None, failures: int = 2) -> ReplicaSet:
    answers = list(probe_answers or [])

    async def probe(replica: Replica) -> bool:
        return answers.pop(0) if answers else False

    return ReplicaSet(urls, failures_to_open=failures, open_seconds=0.01, probe=probe)


async def test_the_least_busy_replica_is_chosen_and_ties_rotate() -> None:
    replicas = _set(["http://a", "http://b"])
    first = replicas.choose(set())
    assert first is not None
    first.active = 1
    second = replicas.choose(set())
    assert second is not None and second.url != first.url  # the idle one
    first.active = second.active = 0
    picks = [replicas.choose(set()) for _ in range(4)]
    assert [p.url for p in picks if p] in (["http://a", "http://b"] * 2, ["http://b", "http://a"] * 2)


async def test_a_retry_prefers_a_replica_not_tried_yet_then_falls_back_to_one_that_was() -> None:
    replicas = _set(["http://a", "http://b"])
    assert replicas.choose({"http://a"}).url == "http://b"  # type: ignore[union-attr]
    assert replicas.choose({"http://a", "http://b"}) is not None  # one replica retried rather than none


async def test_consecutive_failures_open_the_breaker_and_a_good_probe_closes_it() -> None:
    replicas = _set(["http://a", "http://b"], probe_answers=[False, True])
    a = replicas.replicas[0]
    replicas.failed(a, "refused")
    replicas.succeeded(a)  # a success in between resets the count
    replicas.failed(a, "refused")
    assert not a.open
    replicas.failed(a, "refused")
    assert a.open and replicas.state() == "degraded"
    assert all(replicas.choose(set()).url == "http://b" for _ in range(3))  # type: ignore[union-attr]
    async with asyncio.timeout(2):
        while a.open:  # the first probe fails, the second closes it
            await asyncio.sleep(0.005)
    assert replicas.state() == "ready" and a.consecutive_failures == 0
    assert a.describe()["state"] == "closed" and a.describe()["errors"] == 3
    await replicas.aclose()


async def test_every_breaker_open_means_no_replica_and_unreachable() -> None:
    replicas = _set(["http://a"], failures=1)
    replicas.failed(replicas.replicas[0], "500")
    assert replicas.choose(set()) is None and replicas.state() == "unreachable"
    assert 0 <= replicas.seconds_to_probe() <= 0.01
    await replicas.aclose()
    assert not replicas._probes
