"""`memory://` stays under `store.memory_max_mb`: least recently used chains are evicted whole,
never one still running; what is evicted is reported as missing, never half there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
import structlog

from gateway.config import StoreConfig
from gateway.errors import PreviousResponseNotFound
from gateway.protocol import Message, OutputText, Response
from gateway.store import RedisStore, TurnRecord, new_tag, tagged_id
from gateway.store.budget import MemoryBudget
from tests.store.conftest import keys_of

MiB = 1024 * 1024
TEXT = "x" * 50_000  # stored twice per turn (the record's input, and the item for item_reference)


@pytest.fixture
async def make_memory() -> AsyncIterator[Callable[..., RedisStore]]:
    created: list[RedisStore] = []

    def make(**settings: object) -> RedisStore:
        store = RedisStore.from_config(StoreConfig(url="memory://", **settings))  # type: ignore[arg-type]
        created.append(store)
        return store

    yield make
    for store in created:
        await store.aclose()


async def begin(store: RedisStore, previous: Response | None = None, *, background: bool = False) -> Response:
    tag = previous.id[5:21] if previous else new_tag()
    question = Message(id=tagged_id("msg", tag), role="user", content=TEXT)
    response = Response(id=tagged_id("resp", tag), created_at=0, status="in_progress", model="m",
                        previous_response_id=previous.id if previous else None, background=background)
    await store.begin(TurnRecord(response=response, input=[question], new_item_ids=[question.id]),  # type: ignore[list-item]
                      background=background)
    return response


async def finish(store: RedisStore, response: Response, status: str = "completed") -> Response:
    answer = Message(id=tagged_id("msg", response.id[5:21]), role="assistant", status="completed",
                     content=[OutputText(text="done")])
    final = msgspec.structs.replace(response, status=status, output=[answer])  # type: ignore[arg-type]
    assert (await store.finish(final)).outcome == "saved"
    return final


async def turn(store: RedisStore, previous: Response | None = None) -> Response:
    return await finish(store, await begin(store, previous))


async def stored_bytes(store: RedisStore) -> int:
    """What fakeredis really holds: every key's name and value."""
    total = 0
    for key in await keys_of(store):
        kind = await store.client.type(key)
        if kind == b"hash":
            value = await store.client.hgetall(key)
            total += sum(len(k) + len(v) for k, v in value.items())
        elif kind == b"string":
            total += len(await store.client.get(key))
        elif kind == b"stream":
            total += sum(len(f) + len(v) for _, fields in await store.client.xrange(key) for f, v in fields.items())
        total += len(key)
    return total


async def test_the_oldest_chains_are_evicted_to_stay_under_the_bound(
    make_memory: Callable[..., RedisStore],
) -> None:
    store = make_memory(memory_max_mb=1)
    with structlog.testing.capture_logs() as logs:
        first = [await turn(store)]
        first.append(await turn(store, first[0]))  # a two-turn chain, the oldest
        rest = [await turn(store) for _ in range(30)]
    health = (await store.health())["memory"]
    assert health["used_bytes"] <= MiB and health["max_bytes"] == MiB
    assert await stored_bytes(store) <= health["used_bytes"]  # the estimate never undercounts
    assert health["evicted_chains"] >= 20 and health["evicted_responses"] == health["evicted_chains"] + 1
    evictions = [line for line in logs if line["event"] == "store_evicted"]
    assert evictions and all(line["log_level"] == "warning" for line in evictions)
    assert sum(line["chains"] for line in evictions) == health["evicted_chains"]
    assert sum(line["bytes"] for line in evictions) == health["evicted_bytes"] > 0
    # Both turns of the oldest chain went together; the newest are all there.
    for response in first:
        assert await store.get(response.id) is None
        with pytest.raises(PreviousResponseNotFound) as caught:
            await store.chain(response.id)
        assert caught.value.param == "previous_response_id" and response.id in caught.value.message
    assert all([await store.get(response.id) is not None for response in rest[-5:]])
    survivors = [r for r in rest if await store.get(r.id) is not None]
    assert survivors == rest[len(rest) - len(survivors):]  # oldest first


async def test_a_running_response_is_never_evicted(make_memory: Callable[..., RedisStore]) -> None:
    store = make_memory(memory_max_mb=1)
    running = await begin(store)  # the oldest, still in progress
    owned = await begin(store, background=True)  # a background run: in progress, its owner's lease alive
    await store.cancel(owned.id, wait=0)  # cancelled, yet its owner has not written its last state
    others = [await turn(store) for _ in range(20)]
    assert await store.get(running.id) is not None and await store.get(owned.id) is not None
    assert await store.get(others[0].id) is None  # evicted around them
    assert (await store.health())["memory"]["used_bytes"] <= MiB
    await finish(store, running)  # once it has ended it may go, oldest first
    await finish(store, owned, "cancelled")
    for _ in range(12):
        await turn(store)
    assert await store.get(running.id) is None and await store.get(owned.id) is None


async def test_a_chain_in_use_is_evicted_last(make_memory: Callable[..., RedisStore]) -> None:
    store = make_memory(memory_max_mb=1)
    kept, dropped = await turn(store), await turn(store)
    fillers = [await turn(store) for _ in range(6)]
    await store.chain(kept.id)  # continuing the oldest chain makes it the most recent
    await store.get(fillers[0].id)  # so does reading a response
    for _ in range(4):
        await turn(store)
    assert await store.get(dropped.id) is None
    assert await store.get(kept.id) is not None and await store.get(fillers[0].id) is not None


async def test_an_evicted_chain_leaves_no_key_behind(make_memory: Callable[..., RedisStore]) -> None:
    store = make_memory(memory_max_mb=1)
    chain = [await turn(store)]
    for _ in range(3):
        chain.append(await turn(store, chain[-1]))
    tag = chain[0].id[5:21]
    for _ in range(12):
        await turn(store)
    assert not [key for key in await keys_of(store) if tag.encode() in key]


async def test_deleting_gives_the_bytes_back(make_memory: Callable[..., RedisStore]) -> None:
    store = make_memory()
    response = await turn(store)
    assert (await store.health())["memory"]["used_bytes"] > 100_000
    assert await store.delete(response.id)
    assert (await store.health())["memory"] == {
        "used_bytes": 0, "max_bytes": 512 * MiB, "chains": 0, "evicted_chains": 0,
        "evicted_responses": 0, "evicted_bytes": 0,
    }


async def test_redis_stores_are_not_bounded_by_the_gateway(make_store: Callable[..., RedisStore]) -> None:
    store = make_store(memory_max_mb=1)
    assert (store.budget is None) == (store.kind != "memory")  # Redis has maxmemory of its own
    assert ("memory" in await store.health()) == (store.kind == "memory")


def test_the_budget_counts_rewritten_values_once_and_forgets_what_expired() -> None:
    now = [0.0]
    budget = MemoryBudget(1000, ttl_seconds=60, clock=lambda: now[0])
    budget.add("a", "r1", 100, {"r": 50})
    budget.add("a", "r1", 10, {"r": 60, "o": 30})  # a rewrite replaces the response header
    budget.add("a", "r1", 0, {"r": 60, "o": 30})  # the same final state written again adds nothing
    assert budget.used_bytes == 100 + 60 + 10 + 30
    now[0] = 30
    assert not budget.add("b", "r2", 5)
    now[0] = 61  # `a` untouched for a whole TTL: surely expired
    assert budget.add("c", "r3", 1) and budget.used_bytes == 6 and budget.chains == 2
    assert budget.remove("b", ["r2"]) == 5 and budget.used_bytes == 1
