"""The store against every backend: layout, chains in one round trip, errors, items, deletion, TTLs,
and the background event log (append, read, cancel, reap)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from gateway.errors import InvalidRequest, NotFound, PreviousResponseNotFound
from gateway.events import ErrorEvent, ResponseCreated, ResponseInProgress
from gateway.protocol import Message, OutputText, Response
from gateway.store import RedisStore, TurnRecord, new_tag, tagged_id
from gateway.store.base import StoredItem
from gateway.store.codec import decode_input
from tests.store.conftest import build_chain, keys_of


def count_commands(store: RedisStore) -> list[str]:
    """Record every command the client sends (a script call is one)."""
    sent: list[str] = []
    original = store.client.execute_command

    async def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return await original(*args, **kwargs)

    store.client.execute_command = counting
    return sent


async def test_a_response_round_trips(store: RedisStore) -> None:
    [response] = await build_chain(store, 1)
    stored = await store.get(response.id)
    assert stored is not None and stored.background is False
    assert stored.response == response
    items = await store.input_items(response.id)
    assert items is not None and [i.content for i in items] == ["q0"]  # type: ignore[union-attr]
    assert await store.get(tagged_id("resp", new_tag())) is None
    assert await store.get("resp_not_ours") is None


async def test_the_chain_loads_oldest_first_in_one_round_trip(store: RedisStore) -> None:
    chain = await build_chain(store, 40)
    await store.chain(chain[0].id)  # loads the script into the server's cache
    sent = count_commands(store)
    turns = await store.chain(chain[-1].id)
    assert len(sent) == 1 and sent[0] in ("EVALSHA", "EVAL")
    assert [t.input[0].content for t in turns] == [f"q{k}" for k in range(40)]  # type: ignore[union-attr]
    assert [t.output[0].content[0].text for t in turns] == [f"a{k}" for k in range(40)]  # type: ignore[union-attr]
    assert all(t.status == "completed" for t in turns)
    mid = await store.chain(chain[9].id)
    assert len(mid) == 10


async def test_each_record_holds_only_its_own_turn(store: RedisStore) -> None:
    chain = await build_chain(store, 30)
    tag = chain[0].id[5:21]
    for k in (0, 29):
        blob = await store.client.hget(store.keys.record(tag, chain[k].id), "i")
        assert [m.content for m in decode_input(blob)] == [f"q{k}"]  # type: ignore[union-attr]
    sizes = [len(await store.client.hget(store.keys.record(tag, r.id), "o")) for r in chain]
    assert max(sizes) - min(sizes) <= 2  # the 30th turn is no bigger than the first


async def test_unknown_and_foreign_start_ids_are_not_found(store: RedisStore) -> None:
    for bad in ("resp_elsewhere", tagged_id("resp", new_tag())):
        with pytest.raises(PreviousResponseNotFound) as caught:
            await store.chain(bad)
        assert caught.value.param == "previous_response_id" and bad in caught.value.message


async def test_a_missing_ancestor_is_reported_by_id_and_distance(store: RedisStore) -> None:
    chain = await build_chain(store, 6)
    assert await store.delete(chain[2].id)
    with pytest.raises(PreviousResponseNotFound) as caught:
        await store.chain(chain[5].id)
    assert f"'{chain[2].id}'" in caught.value.message and "3 turn(s) before" in caught.value.message
    assert caught.value.code == "previous_response_not_found"
    assert len(await store.chain(chain[1].id)) == 2  # the part before the gap is intact


async def test_the_depth_limit_stops_the_walk(make_store: Callable[..., RedisStore]) -> None:
    store = make_store(max_chain_depth=5)
    chain = await build_chain(store, 6)
    assert len(await store.chain(chain[4].id)) == 5
    with pytest.raises(InvalidRequest) as caught:
        await store.chain(chain[5].id)
    assert caught.value.code == "previous_response_chain_too_long" and "5" in caught.value.message


async def test_a_cycle_is_detected(store: RedisStore) -> None:
    chain = await build_chain(store, 3)
    tag = chain[0].id[5:21]
    await store.client.hset(store.keys.record(tag, chain[0].id), "p", chain[2].id)  # corrupt: root points at the tip
    with pytest.raises(InvalidRequest) as caught:
        await store.chain(chain[2].id)
    assert caught.value.code == "previous_response_chain_invalid" and chain[2].id in caught.value.message


async def test_walking_a_chain_renews_its_ttl(make_store: Callable[..., RedisStore]) -> None:
    store = make_store(ttl_seconds=1000)
    chain = await build_chain(store, 3)
    tag = chain[0].id[5:21]
    root = store.keys.record(tag, chain[0].id)
    item = store.keys.item(tag, chain[0].output[0].id)  # type: ignore[arg-type]
    await store.client.pexpire(root, 5000)
    await store.client.pexpire(item, 5000)
    await store.chain(chain[2].id)
    assert await store.client.pttl(root) > 900_000 and await store.client.pttl(item) > 900_000


async def test_every_key_has_a_ttl_and_shares_its_chain_slot(store: RedisStore) -> None:
    chain = await build_chain(store, 3)
    background = await start_background(store, chain[0].id[5:21])
    await store.append(background.id, [ResponseCreated(sequence_number=0, response=background)])
    await store.cancel(background.id, wait=0)  # no owner runs it here: answer at once
    keys = await keys_of(store)
    assert len(keys) >= 3 * 3 + 4  # records, items, and a stream, a cancel flag, a lease, a record
    for key in keys:
        ttl = await store.client.pttl(key)
        assert 0 < ttl <= 30 * 24 * 3600 * 1000, key
    assert {key.split(b"}")[0] for key in keys} == {f"{store.keys.prefix}:{{{chain[0].id[5:21]}".encode()}


async def test_items_resolve_and_unknown_ids_are_left_out(store: RedisStore) -> None:
    one, two = await build_chain(store, 2)
    question = (await store.input_items(two.id))[0]  # type: ignore[index]
    answer = one.output[0]
    wanted = [answer.id, question.id, "msg_foreign", tagged_id("msg", new_tag())]
    found = await store.items(wanted)  # type: ignore[arg-type]
    # Each item comes back with the model of its response: who may reference it depends on that.
    assert found == {answer.id: StoredItem("m", answer), question.id: StoredItem("m", question)}  # type: ignore[arg-type]
    other = await build_chain(store, 1)  # another chain, another slot: one call resolves both
    found = await store.items([answer.id, other[0].output[0].id])  # type: ignore[list-item]
    assert len(found) == 2


async def test_delete_removes_every_key_of_the_response(store: RedisStore) -> None:
    [response] = await build_chain(store, 1)
    question = (await store.input_items(response.id))[0]  # type: ignore[index]
    assert await keys_of(store)
    assert await store.delete(response.id) is True
    assert await keys_of(store) == []
    assert await store.get(response.id) is None
    assert await store.items([question.id, response.output[0].id]) == {}  # type: ignore[list-item]
    assert await store.delete(response.id) is False


# ------------------------------------------------------------------ event log


async def start_background(store: RedisStore, tag: str | None = None) -> Response:
    response_id = tagged_id("resp", tag or new_tag())
    response = Response(id=response_id, created_at=0, status="queued", model="m", background=True)
    await store.begin(TurnRecord(response=response, input=[]), background=True)
    return response


def progress(seq: int, response: Response) -> ResponseInProgress:
    return ResponseInProgress(sequence_number=seq, response=response)


async def test_events_are_logged_once_and_read_after_a_sequence_number(store: RedisStore) -> None:
    response = await start_background(store)
    batch = [ResponseCreated(sequence_number=0, response=response), progress(1, response)]
    assert await store.append(response.id, batch, status="in_progress") == "ok"
    assert await store.append(response.id, batch) == "ok"  # a retried write adds nothing
    assert await store.append(response.id, [progress(2, response)]) == "ok"
    logged = await store.read(response.id, after=-1, wait=0)
    assert [(e.sequence_number, e.type) for e in logged] == [
        (0, "response.created"), (1, "response.in_progress"), (2, "response.in_progress")
    ]
    assert msgspec.json.decode(logged[0].data)["response"]["id"] == response.id
    assert [e.sequence_number for e in await store.read(response.id, after=1, wait=0)] == [2]
    assert (await store.get(response.id)).response.status == "in_progress"  # type: ignore[union-attr]


async def test_a_blocked_read_returns_when_an_event_arrives(store: RedisStore) -> None:
    response = await start_background(store)

    async def later() -> None:
        await asyncio.sleep(0.2)
        await store.append(response.id, [progress(0, response)])

    writer = asyncio.create_task(later())
    logged = await store.read(response.id, after=-1, wait=0.9)
    await writer
    assert [e.sequence_number for e in logged] == [0]
    assert await store.read(response.id, after=0, wait=0.1) == []


async def test_cancel_reaches_the_owner_and_the_first_end_wins(store: RedisStore) -> None:
    response = await start_background(store)
    assert await store.heartbeat(response.id) == "ok"
    cancelled = await store.cancel(response.id, wait=0)  # the owner is played below, after the answer
    assert cancelled.response.status == "cancelled" and cancelled.background
    assert (await store.cancel(response.id, wait=0)).response.status == "cancelled"  # idempotent
    assert await store.heartbeat(response.id) == "cancel"
    assert await store.append(response.id, [progress(0, response)]) == "cancel"
    done = msgspec.structs.replace(response, status="completed")
    conflict = await store.finish(done)
    assert conflict.outcome == "conflict" and conflict.status == "cancelled"
    partial = msgspec.structs.replace(
        response, status="cancelled",
        output=[Message(id=tagged_id("msg", response.id[5:21]), role="assistant", status="incomplete",
                        content=[OutputText(text="par")])],
    )
    end = ErrorEvent(sequence_number=1, code="response_cancelled", message="cancelled")
    assert (await store.finish(partial, [end])).outcome == "saved"
    stored = await store.get(response.id)
    assert stored is not None and stored.response.status == "cancelled" and len(stored.response.output) == 1
    assert (await store.read(response.id, after=0, wait=0))[-1].terminal


async def test_cancel_needs_a_background_response(store: RedisStore) -> None:
    [response] = await build_chain(store, 1)
    with pytest.raises(InvalidRequest):
        await store.cancel(response.id)
    with pytest.raises(NotFound):
        await store.cancel(tagged_id("resp", new_tag()))


async def test_deleting_a_running_response_stops_its_owner(store: RedisStore) -> None:
    response = await start_background(store)
    await store.delete(response.id)
    assert await store.heartbeat(response.id) == "missing"
    assert await store.append(response.id, [progress(0, response)]) == "missing"
    assert (await store.finish(response)).outcome == "missing"


async def test_an_orphan_is_failed_once_its_owner_lease_lapses(store: RedisStore) -> None:
    response = await start_background(store)
    await store.append(response.id, [progress(0, response)], status="in_progress")
    assert await store.reap(response.id) == "in_progress"  # the owner's lease is alive
    tag = response.id[5:21]
    await store.client.delete(f"{store.keys.space(tag)}:o:{response.id}")  # the owner died
    assert await store.reap(response.id) == "reaped"
    assert await store.reap(response.id) == "failed"
    stored = await store.get(response.id)
    assert stored is not None and stored.response.status == "failed"
    assert stored.response.error is not None and stored.response.error.code == "response_lost"
    last = (await store.read(response.id, after=0, wait=0))[-1]
    assert last.terminal and last.sequence_number == 1
    assert msgspec.json.decode(last.data)["code"] == "response_lost"


async def test_health_and_backend(store: RedisStore) -> None:
    health = await store.health()
    assert health["state"] == "ok" and health["error"] is None
    assert health["backend"] in ("memory", "redis", "cluster")
