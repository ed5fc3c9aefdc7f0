"""Conversations in the store, on memory://, the shared Redis and a cluster: their items, owners, paging,
and a turn's lock and atomic append (BEGIN / FINISH)."""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.protocol import Message, OutputText, Response
from gateway.store import RedisStore, TurnRecord, new_tag, tagged_id
from gateway.store.conversations import turn_pairs
from tests.store.conftest import keys_of


def message(tag: str, text: str, role: str = "user") -> Message:
    return Message(id=tagged_id("msg", tag), role=role, content=text)  # type: ignore[arg-type]


async def test_create_read_update_and_page_items(store: RedisStore) -> None:
    tag = new_tag()
    items = [message(tag, f"m{i}") for i in range(5)]
    conversations = store.conversations
    made = await conversations.create(owner="k", metadata={"topic": "x"}, items=items, created_at=7, tag=tag)
    assert made.id.startswith("conv_") and made.to_wire() == {
        "id": made.id, "object": "conversation", "created_at": 7, "metadata": {"topic": "x"}}
    assert (await conversations.get(made.id, "k")).metadata == {"topic": "x"}
    assert (await conversations.update(made.id, "k", {"topic": "y"})).metadata == {"topic": "y"}

    first = await conversations.list_items(made.id, "k", after=None, limit=2, order="asc")
    assert [i.content for i in first.items] == ["m0", "m1"] and first.has_more  # type: ignore[union-attr]
    rest = await conversations.list_items(made.id, "k", after=first.items[-1].id, limit=10, order="asc")  # type: ignore[union-attr]
    assert [i.content for i in rest.items] == ["m2", "m3", "m4"] and not rest.has_more  # type: ignore[union-attr]
    newest = await conversations.list_items(made.id, "k", after=None, limit=2, order="desc")
    assert [i.content for i in newest.items] == ["m4", "m3"]  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest):
        await conversations.list_items(made.id, "k", after="msg_nope", limit=2, order="asc")

    await conversations.add_items(made.id, "k", [message(tag, "m5")])
    assert (await conversations.get_item(made.id, "k", items[2].id)).content == "m2"  # type: ignore[arg-type,union-attr]
    await conversations.delete_item(made.id, "k", items[2].id)  # type: ignore[arg-type]
    left = await conversations.list_items(made.id, "k", after=None, limit=100, order="asc")
    assert [i.content for i in left.items] == ["m0", "m1", "m3", "m4", "m5"]  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await conversations.get_item(made.id, "k", items[2].id)  # type: ignore[arg-type]


async def test_another_owner_sees_nothing_and_changes_nothing(store: RedisStore) -> None:
    tag = new_tag()
    made = await store.conversations.create(owner="alice", metadata={}, items=[message(tag, "secret")],
                                            created_at=1, tag=tag)
    for call in (
        store.conversations.get(made.id, "bob"),
        store.conversations.update(made.id, "bob", {"a": "b"}),
        store.conversations.delete(made.id, "bob"),
        store.conversations.add_items(made.id, "bob", [message(tag, "intruder")]),
        store.conversations.list_items(made.id, "bob", after=None, limit=10, order="asc"),
        store.conversations.start(made.id, "bob"),
    ):
        with pytest.raises(NotFound):
            await call
    page = await store.conversations.list_items(made.id, "alice", after=None, limit=10, order="asc")
    assert [i.content for i in page.items] == ["secret"]  # type: ignore[union-attr]
    assert (await store.conversations.get(made.id, "alice")).metadata == {}


async def test_delete_removes_every_key(store: RedisStore) -> None:
    tag = new_tag()
    made = await store.conversations.create(owner="", metadata={}, items=[message(tag, "x")], created_at=1, tag=tag)
    assert await keys_of(store)
    await store.conversations.delete(made.id, "")
    assert await keys_of(store) == []
    with pytest.raises(NotFound):
        await store.conversations.get(made.id, "")


async def turn(store: RedisStore, conversation_id: str, text: str, version: int) -> Response:
    tag = conversation_id[5:21]
    question = message(tag, text)
    started = Response(id=tagged_id("resp", tag), created_at=0, status="in_progress", model="m")
    await store.begin(TurnRecord(response=started, input=[question], new_item_ids=[question.id],  # type: ignore[list-item]
                                 conversation=conversation_id, conversation_version=version))
    return started


async def test_a_turn_locks_the_conversation_and_appends_when_it_completes(store: RedisStore) -> None:
    tag = new_tag()
    made = await store.conversations.create(owner="", metadata={}, items=[message(tag, "q0")], created_at=1, tag=tag)
    start = await store.conversations.start(made.id, "")
    assert start.version == 1 and [i.content for i in start.items] == ["q0"]  # type: ignore[union-attr]
    running = await turn(store, made.id, "q1", start.version)
    with pytest.raises(Conflict) as busy:
        await store.conversations.start(made.id, "")  # a second turn while the first runs
    assert busy.value.code == "conversation_locked"
    with pytest.raises(Conflict):
        await turn(store, made.id, "q1 again", start.version)  # BEGIN refuses it too
    with pytest.raises(Conflict):
        await store.conversations.delete(made.id, "")  # and nobody deletes it under the turn

    answer = Message(id=tagged_id("msg", tag), role="assistant", content=[OutputText(text="a1")], status="completed")
    done = msgspec.structs.replace(running, status="completed", output=[answer])
    question = (await store.input_items(running.id))[0]  # type: ignore[index]
    outcome = await store.finish(done, (), turn_pairs([question, answer], "m"))
    assert outcome.outcome == "saved"
    after = await store.conversations.start(made.id, "")  # unlocked
    assert after.version == 3
    assert [i.content if isinstance(i.content, str) else i.content[0].text for i in after.items] == [  # type: ignore[union-attr]
        "q0", "q1", "a1"]
    with pytest.raises(Conflict) as changed:
        await turn(store, made.id, "built on the old version", start.version)
    assert changed.value.code == "conversation_changed"


async def test_a_failed_turn_appends_nothing_and_unlocks(store: RedisStore) -> None:
    tag = new_tag()
    made = await store.conversations.create(owner="", metadata={}, items=[], created_at=1, tag=tag)
    running = await turn(store, made.id, "q", 0)
    failed = msgspec.structs.replace(running, status="failed")
    await store.finish(failed, (), turn_pairs([message(tag, "q")], "m"))
    start = await store.conversations.start(made.id, "")
    assert start.items == [] and start.version == 0
