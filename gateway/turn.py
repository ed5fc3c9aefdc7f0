"""What the store contributes to one create-response request, before generation.

Load the `previous_response_id` chain (one round trip), resolve `item_reference` inputs,
and give every stored input item an id carrying the chain tag. Whatever is refused here
(400, 404-like absence, 503) is refused before any SSE byte. Writing the response as it
starts and ends is the `Run`'s job (`run.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from msgspec import UNSET

from gateway.errors import InvalidRequest, PreviousResponseNotFound
from gateway.protocol import (
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    InputItem,
    ItemReference,
    LocalShellCall,
    Message,
    Reasoning,
    ResponsesRequest,
    UnknownItem,
)
from gateway.store import TERMINAL, ResponseStore, new_tag, tag_of, tagged_id
from gateway.store.conversations import ConversationStart

__all__ = ["Turn", "assign_ids", "open_turn", "resolve_references"]

_ID_PREFIX: dict[type, str] = {
    Message: "msg",
    FunctionCall: "fc",
    FunctionCallOutput: "fco",
    CustomToolCall: "ctc",
    CustomToolCallOutput: "ctco",
    LocalShellCall: "lsc",
    Reasoning: "rs",
}


class Turn(msgspec.Struct, kw_only=True):
    request: ResponsesRequest  # item references resolved: what the model is shown
    history: list[InputItem] | None  # the chain's items, oldest first (None without previous_response_id)
    tag: str
    stored_input: list[InputItem]  # the same input with an id on every item (store only)
    new_item_ids: list[str]
    conversation: ConversationStart | None = None  # the conversation the turn runs in, as it was read

    def ids(self, prefix: str) -> str:
        return tagged_id(prefix, self.tag)


async def open_turn(
    store: ResponseStore, request: ResponsesRequest, may_read: Callable[[str | None], bool], owner: str
) -> Turn:
    """Everything the store contributes before generation; 400/404/409/503 here come before any SSE byte.

    `may_read(model)` says whether the caller may see stored data of that model: a turn or an item
    it may not see is reported exactly as one that does not exist. `owner` is the caller's key name
    ('' on an open API): a conversation of another key is not found.
    """
    previous = request.previous_response_id
    tag = new_tag()
    history: list[InputItem] | None = None
    conversation: ConversationStart | None = None
    conversation_id = request.conversation_id()
    if conversation_id is not None:
        if not request.store:
            raise InvalidRequest("A response in a conversation is stored: `store` must be true.", param="store")
        conversation = await store.conversations.start(conversation_id, owner)
        tag = tag_of(conversation_id) or tag
        history = conversation.items
    if previous is not None:
        tag = tag_of(previous) or ""
        if not tag:
            raise PreviousResponseNotFound(previous)
        turns = await store.chain(previous)
        if not all(may_read(turn.model) for turn in turns):
            raise PreviousResponseNotFound(previous)
        if turns[-1].status not in TERMINAL and await store.reap(previous) == "reaped":
            turns = await store.chain(previous)  # its gateway died: the turn is failed, and can be built on
        if turns[-1].status not in TERMINAL:
            raise InvalidRequest(
                f"Previous response '{previous}' has not finished yet (status {turns[-1].status}).",
                param="previous_response_id",
                code="previous_response_in_progress",
            )
        history = [item for turn in turns for item in (*turn.input, *turn.output)]
    items = await resolve_references(store, request.input, may_read)
    # Only the stored copy gets ids: the model sees the input as sent (its prompt does not change with `store`).
    stored, new_ids = assign_ids(items, tag) if request.store else ([], [])
    return Turn(
        request=msgspec.structs.replace(request, input=items),
        history=history,
        tag=tag,
        stored_input=stored,
        new_item_ids=new_ids,
        conversation=conversation,
    )


async def resolve_references(
    store: ResponseStore, items: list[InputItem], may_read: Callable[[str | None], bool], *, param: str = "input"
) -> list[InputItem]:
    """Replace `item_reference`s by the stored items (one round trip); 400 naming the first unknown id
    (an item of a model the caller may not read counts as unknown)."""
    wanted = [item.id for item in items if isinstance(item, ItemReference)]
    if not wanted:
        return items
    found = await store.items(wanted)
    resolved: list[InputItem] = []
    for index, item in enumerate(items):
        if isinstance(item, ItemReference):
            target = found.get(item.id)
            if target is None or not may_read(target.model):
                raise InvalidRequest(f"Item with id '{item.id}' not found.", param=f"{param}[{index}].id")
            item = target.item
        resolved.append(item)
    return resolved


def assign_ids(items: list[InputItem], tag: str) -> tuple[list[InputItem], list[str]]:
    """Give each item without an id one carrying `tag`; returns the items and the new ids."""
    out: list[InputItem] = []
    new_ids: list[str] = []
    for item in items:
        if isinstance(item, UnknownItem):
            if not isinstance(item.data.get("id"), str):
                new_ids.append(tagged_id("item", tag))
                item = msgspec.structs.replace(item, data={**item.data, "id": new_ids[-1]})
        elif getattr(item, "id", None) is UNSET:
            new_ids.append(tagged_id(_ID_PREFIX[type(item)], tag))
            item = msgspec.structs.replace(item, id=new_ids[-1])
        out.append(item)
    return out, new_ids
