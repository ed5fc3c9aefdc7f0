"""Conversations in the response store: create, read, update, delete, and their items.

A conversation belongs to the API key that created it (`owner`: the key's name, '' on an open API);
every call names the caller's key, and a conversation of another key looks absent. Each call is one
script on the conversation's slot (see `conversation_scripts.py`); a turn that runs *in* a conversation
is written by the response scripts (BEGIN takes the turn lock, FINISH appends and releases it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.protocol import InputItem
from gateway.store import conversation_scripts as scripts
from gateway.store.base import StoredItem
from gateway.store.budget import KEY_OVERHEAD, size_of
from gateway.store.codec import decode_item, encode_item, item_id
from gateway.store.keys import tag_of, tagged_id

__all__ = [
    "Conversation",
    "ConversationPage",
    "ConversationStart",
    "Conversations",
    "conversation_busy",
    "conversation_not_found",
    "turn_pairs",
]

ANY_OWNER = "*"  # what the gateway itself passes when no caller is involved


class Conversation(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    created_at: int
    metadata: dict[str, str]
    owner: str

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "object": "conversation", "created_at": self.created_at, "metadata": self.metadata}


class ConversationPage(msgspec.Struct, kw_only=True, frozen=True):
    items: list[InputItem]
    has_more: bool


class ConversationStart(msgspec.Struct, kw_only=True, frozen=True):
    """What a turn in a conversation starts from: its items, and the version they are (for BEGIN to check)."""

    id: str
    items: list[InputItem]
    version: int


def conversation_not_found(conversation_id: str, param: str | None = "conversation_id") -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param=param)


class Conversations:
    """The conversation half of a `RedisStore` (it lends its client, keys, TTL and round-trip guard)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        names = ("CREATE", "UPDATE", "DELETE", "ADD_ITEMS", "LIST_ITEMS", "GET_ITEM", "DELETE_ITEM", "LOAD")
        self._scripts = {name: store.client.register_script(getattr(scripts, name)) for name in names}

    async def _call(self, script: str, conversation_id: str, *args: Any) -> Any:
        tag = tag_of(conversation_id)
        if tag is None or not conversation_id.startswith("conv_"):
            raise conversation_not_found(conversation_id)
        keys = self._store.keys
        key = f"{keys.space(tag)}:v:{conversation_id}"
        async with self._store._reach(f"conversation_{script.lower()}"):
            return await self._scripts[script](keys=[key], args=[keys.space(tag), conversation_id, *args])

    async def create(self, *, owner: str, metadata: dict[str, str], items: Sequence[InputItem],
                     created_at: int, tag: str) -> Conversation:
        conversation_id = tagged_id("conv", tag)
        pairs = _pairs(items)
        await self._call("CREATE", conversation_id, self._store.ttl_ms, created_at, json.dumps(metadata), owner,
                         *pairs)
        await self._account(conversation_id, pairs)
        return Conversation(id=conversation_id, created_at=created_at, metadata=metadata, owner=owner)

    async def get(self, conversation_id: str, owner: str) -> Conversation:
        reply = await self._call("UPDATE", conversation_id, self._store.ttl_ms, "")
        return _visible(conversation_id, reply, owner)

    async def update(self, conversation_id: str, owner: str, metadata: dict[str, str]) -> Conversation:
        current = await self.get(conversation_id, owner)  # another key's conversation is never changed
        reply = await self._call("UPDATE", current.id, self._store.ttl_ms, json.dumps(metadata))
        return _visible(conversation_id, reply, owner)

    async def delete(self, conversation_id: str, owner: str) -> None:
        outcome = (await self._call("DELETE", conversation_id, owner)).decode()
        if outcome in ("missing", "forbidden"):
            raise conversation_not_found(conversation_id)
        if outcome == "busy":
            raise conversation_busy(conversation_id)

    async def add_items(self, conversation_id: str, owner: str, items: Sequence[InputItem]) -> None:
        pairs = _pairs(items)
        reply = await self._call("ADD_ITEMS", conversation_id, self._store.ttl_ms, owner, *pairs)
        if reply[0] != b"ok":
            raise conversation_not_found(conversation_id)
        await self._account(conversation_id, pairs)

    async def _account(self, conversation_id: str, pairs: list[Any]) -> None:
        """memory://: the conversation's bytes count toward `store.memory_max_mb`, with its chain's tag."""
        tag = tag_of(conversation_id)
        if tag is not None:
            await self._store._account(tag, conversation_id, size_of(pairs) + (2 + len(pairs)) * KEY_OVERHEAD)

    async def list_items(self, conversation_id: str, owner: str, *, after: str | None, limit: int,
                         order: str) -> ConversationPage:
        reply = await self._call("LIST_ITEMS", conversation_id, after or "", limit, order)
        if reply[0] == b"missing" or (reply[0] == b"ok" and reply[1].decode() != owner):
            raise conversation_not_found(conversation_id)
        if reply[0] == b"no_after":
            raise InvalidRequest(f"No item with id '{after}' in this conversation.", param="after")
        items = [decode_item(reply[j + 1]).item for j in range(3, len(reply), 2)]
        return ConversationPage(items=items, has_more=reply[2] == b"1")

    async def get_item(self, conversation_id: str, owner: str, wanted: str) -> InputItem:
        reply = await self._call("GET_ITEM", conversation_id, wanted)
        if reply[0] == b"missing" or reply[1].decode() != owner:
            raise conversation_not_found(conversation_id)
        if not reply[2]:
            raise NotFound(f"Item with id '{wanted}' not found in conversation '{conversation_id}'.", param="item_id")
        return decode_item(reply[2]).item

    async def delete_item(self, conversation_id: str, owner: str, wanted: str) -> Conversation:
        reply = await self._call("DELETE_ITEM", conversation_id, wanted, owner)
        if reply[0] in (b"missing", b"forbidden"):
            raise conversation_not_found(conversation_id)
        if reply[0] == b"no_item":
            raise NotFound(f"Item with id '{wanted}' not found in conversation '{conversation_id}'.", param="item_id")
        return Conversation(id=conversation_id, created_at=int(reply[1]), metadata=json.loads(reply[2]), owner=owner)

    async def start(self, conversation_id: str, owner: str) -> ConversationStart:
        """A turn's view of the conversation: 404 if absent (or another key's), 409 while another turn runs."""
        reply = await self._call("LOAD", conversation_id, self._store.ttl_ms)
        if reply[0] == b"missing" or reply[1].decode() != owner:
            raise conversation_not_found(conversation_id, param="conversation")
        if reply[3] == b"1":
            raise conversation_busy(conversation_id)
        items = [decode_item(blob).item for blob in reply[4:]]
        return ConversationStart(id=conversation_id, items=items, version=int(reply[2]))


def conversation_busy(conversation_id: str) -> Conflict:
    return Conflict(
        f"Another response is in progress in conversation '{conversation_id}'; wait for it to end, then retry.",
        param="conversation", code="conversation_locked",
    )


def _visible(conversation_id: str, reply: list[Any], owner: str) -> Conversation:
    if not reply or reply[2].decode() != owner:
        raise conversation_not_found(conversation_id)
    return Conversation(id=conversation_id, created_at=int(reply[0]), metadata=json.loads(reply[1]), owner=owner)


def _pairs(items: Sequence[InputItem], model: str | None = None) -> list[Any]:
    """(item id, stored item) script arguments; every item must have an id by now."""
    pairs: list[Any] = []
    for item in items:
        identifier = item_id(item)
        if identifier is None:
            raise ValueError("conversation items are stored with ids")
        pairs += [identifier, encode_item(item, model) if model else msgspec.msgpack.encode(StoredItem(None, item))]
    return pairs


def turn_pairs(items: Sequence[InputItem], model: str) -> list[Any]:
    """A finished turn's input and output items, as FINISH appends them to its conversation."""
    return _pairs(items, model)
