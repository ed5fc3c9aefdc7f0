"""Every backend under more concurrent round trips than `store.max_connections`: they wait their turn,
none fails, the pool never grows past the gate, and /health reports the gate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest
from redis.asyncio import BlockingConnectionPool

from gateway.config import ConfigError, StoreConfig, parse_config
from gateway.protocol import Message, Response
from gateway.store import RedisStore, TurnRecord, new_tag, tagged_id
from gateway.store.connection import connect
from gateway.store.gate import Gate
from tests.store.conftest import build_chain


class PeakGate(Gate):
    peak = 0

    async def enter(self) -> None:
        await super().enter()
        self.peak = max(self.peak, self.in_use)


def started(tag: str | None = None, previous: str | None = None) -> TurnRecord:
    tag = tag or new_tag()
    question = Message(id=tagged_id("msg", tag), role="user", content="q")
    response = Response(id=tagged_id("resp", tag), created_at=0, status="in_progress", model="m",
                        previous_response_id=previous)
    return TurnRecord(response=response, input=[question], new_item_ids=[question.id])  # type: ignore[list-item]


async def test_four_hundred_round_trips_through_four_connections(make_store: Callable[..., RedisStore]) -> None:
    store = make_store(max_connections=4)
    store.gate = gate = PeakGate(4, store.gate.timeout)
    chain = await build_chain(store, 2)

    async def one_turn() -> None:
        record = started()
        await store.begin(record)
        stored = await store.get(record.response.id)
        assert stored is not None
        done = msgspec.structs.replace(record.response, status="completed")
        assert (await store.finish(done)).outcome == "saved"
        assert len(await store.chain(chain[-1].id)) == 2

    await asyncio.gather(*(one_turn() for _ in range(100)))  # 4 round trips each
    assert gate.peak == 4
    health = await store.health()
    assert health["state"] == "ok" and health["errors"] == 0
    assert health["pool"] == {"size": 4, "in_use": 0, "idle": 4, "waiting": 0, "timeouts": 0}
    assert max(_open_connections(store)) <= 4  # never more than the gate lets through (per node on a cluster)


def _open_connections(store: RedisStore) -> list[int]:
    client = store.client
    if store.kind == "cluster":
        return [len(node._connections) for node in client.get_nodes()]
    pool = client.connection_pool
    return [len(pool._available_connections) + len(pool._in_use_connections)]


def test_every_pool_is_sized_from_the_manifest() -> None:
    for url in ("memory://", "redis://127.0.0.1:1/0", "unix:///tmp/nothing.sock"):
        client, _ = connect(StoreConfig(url=url, max_connections=7, timeout_seconds=1.5))
        pool = client.connection_pool
        # Blocking: a pool that is somehow full makes a caller wait (up to the store timeout), never raise.
        assert isinstance(pool, BlockingConnectionPool) and pool.max_connections == 7 and pool.timeout == 1.5
    cluster, _ = connect(StoreConfig(url="redis+cluster://127.0.0.1:1", max_connections=7))
    # Per node; the gate keeps the total below it, so no node raises MaxConnectionsError.
    assert cluster.nodes_manager.connection_kwargs["max_connections"] == 7
    sentinel, _ = connect(StoreConfig(url="redis+sentinel://127.0.0.1:1/primary", max_connections=7))
    assert sentinel.connection_pool.max_connections == 7


@pytest.mark.parametrize(
    ("store", "problem"),
    [
        ("{max_connections: 0}", "store.max_connections: Expected `int` >= 1"),
        ("{max_connections: 10001}", "store.max_connections: Expected `int` <= 10000"),
        ("{memory_max_mb: 0}", "store.memory_max_mb: Expected `int` >= 1"),
        ("{memory_max_mb: lots}", "store.memory_max_mb: Expected `int`, got `str`"),
    ],
)
def test_capacity_settings_are_checked(store: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"store: {store}")
    assert caught.value.problems == [problem]


def test_capacity_defaults() -> None:
    config = parse_config("models: []").store
    assert (config.max_connections, config.memory_max_mb) == (64, 512)
