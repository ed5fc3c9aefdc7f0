"""The store suite runs against memory:// (fakeredis), the shared Redis at :6379 (own key prefix, only
our keys deleted) and a 3-node Redis Cluster started for the session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.config import StoreConfig
from gateway.protocol import Message, OutputText, Response
from gateway.store import RedisStore, TurnRecord, new_tag, tagged_id
from tests.redisproc import SHARED_URL, need_redis_server, need_shared_redis, redis_cluster

BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=pytest.mark.redis),
]


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_redis_server()
    with redis_cluster(Path(tmp_path_factory.mktemp("cluster"))) as servers:
        yield f"redis+cluster://127.0.0.1:{servers[0].port}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "redis":
        need_shared_redis()
        return SHARED_URL
    return request.getfixturevalue("cluster_url")  # type: ignore[no-any-return]


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[Callable[..., RedisStore]]:
    """Stores under one fresh key prefix; afterwards only keys under that prefix are deleted."""
    prefix = f"mlxgw-test-{os.urandom(6).hex()}"
    created: list[RedisStore] = []

    def make(**settings: Any) -> RedisStore:
        store = RedisStore.from_config(StoreConfig(url=store_url, key_prefix=prefix, **settings))
        created.append(store)
        return store

    yield make
    for store in created:
        for key in await keys_of(store):
            await store.client.delete(key)
        await store.aclose()


@pytest.fixture
def store(make_store: Callable[..., RedisStore]) -> RedisStore:
    return make_store()


async def keys_of(store: RedisStore) -> list[bytes]:
    return [key async for key in store.client.scan_iter(match=store.keys.pattern(), count=1000)]


async def build_chain(store: RedisStore, turns: int, tag: str | None = None) -> list[Response]:
    """`turns` completed responses, each continuing the previous one: user `q<k>`, assistant `a<k>`."""
    tag = tag or new_tag()
    previous: str | None = None
    chain = []
    for k in range(turns):
        question = Message(id=tagged_id("msg", tag), role="user", content=f"q{k}")
        started = Response(id=tagged_id("resp", tag), created_at=0, status="in_progress", model="m",
                           previous_response_id=previous)
        record = TurnRecord(response=started, input=[question], new_item_ids=[question.id])  # type: ignore[list-item]
        await store.begin(record)
        answer = Message(id=tagged_id("msg", tag), role="assistant", status="completed",
                         content=[OutputText(text=f"a{k}")])
        final = msgspec.structs.replace(started, status="completed", output=[answer])
        assert (await store.finish(final)).outcome == "saved"
        chain.append(final)
        previous = final.id
    return chain
