"""Clients from every URL form; passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from gateway.config import StoreConfig
from gateway.store import RedisStore
from gateway.store.connection import connect, describe_url
from tests.redisproc import RedisProcess, need_redis_server
from tests.store.conftest import build_chain


def test_each_scheme_builds_its_client_without_connecting() -> None:
    assert connect(StoreConfig(url="memory://"))[1] == "memory"
    client, kind = connect(StoreConfig(url="rediss://:pw@127.0.0.1:1/0", timeout_seconds=1.5))
    assert kind == "redis" and client.connection_pool.connection_class is SSLConnection
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 1.5
    client, kind = connect(StoreConfig(url="unix:///tmp/nothing.sock"))
    assert kind == "redis" and client.connection_pool.connection_class is UnixDomainSocketConnection
    assert connect(StoreConfig(url="redis+cluster://127.0.0.1:1"))[1] == "cluster"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:secret@10.0.0.1:6380/2", "redis://:***@10.0.0.1:6380/2"),
        ("rediss://user:secret@host/0", "rediss://user:***@host/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_passwords_are_hidden(url: str, shown: str) -> None:
    assert describe_url(url) == shown


async def test_an_unreachable_store_is_reported_not_raised() -> None:
    store = RedisStore.from_config(StoreConfig(url="redis://127.0.0.1:1/0", connect_timeout_seconds=0.2))
    health = await store.health()
    assert health["state"] == "unavailable" and "Error" in health["error"]
    await store.aclose()


@pytest.mark.redis
async def test_a_unix_socket_url_works(tmp_path: Path) -> None:
    need_redis_server()
    socket_path = tmp_path / "redis.sock"
    server = RedisProcess(tmp_path / "data", None, "--unixsocket", str(socket_path), "--unixsocketperm", "700").start()
    try:
        store = RedisStore.from_config(StoreConfig(url=f"unix://{socket_path}"))
        chain = await build_chain(store, 3)
        turns = await store.chain(chain[-1].id)
        assert [t.input[0].content for t in turns] == ["q0", "q1", "q2"]  # type: ignore[union-attr]
        await store.aclose()
    finally:
        server.stop()
