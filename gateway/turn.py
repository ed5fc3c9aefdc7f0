"""What the store means for one create-response request.

Before generation: load the `previous_response_id` chain (one round trip), resolve
`item_reference` inputs, give every stored input item an id carrying the chain tag.
Around generation (foreground): write the record as it starts, persist the final
response in the runner's `finalize` hook (before the client sees the terminal event),
and persist a cancelled run (client gone) under a shield. A response whose final
state could not be stored never reaches the client as completed: its terminal event
becomes `response.failed` with `store_unavailable` (a 503 when not streaming).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import msgspec
import structlog
from msgspec import UNSET

from gateway.assemble import Assembler
from gateway.background import BackgroundRuns
from gateway.config import StoreConfig
from gateway.errors import GatewayError, InvalidRequest, PreviousResponseNotFound
from gateway.events import Event, ResponseCompleted, ResponseFailed, ResponseIncomplete
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
    Response,
    ResponseError,
    ResponsesRequest,
    UnknownItem,
)
from gateway.runner import RunStats
from gateway.service import Prepared
from gateway.store import TERMINAL, RedisStore, ResponseStore, TurnRecord, new_tag, tag_of, tagged_id
from gateway.store.shield import shielded

__all__ = ["Saver", "Stateful", "Turn", "assign_ids", "open_turn", "resolve_references"]

log = structlog.get_logger()

_ID_PREFIX: dict[type, str] = {
    Message: "msg",
    FunctionCall: "fc",
    FunctionCallOutput: "fco",
    CustomToolCall: "ctc",
    CustomToolCallOutput: "ctco",
    LocalShellCall: "lsc",
    Reasoning: "rs",
}


class Stateful:
    """The store and the background runs of one running app (built by the lifespan)."""

    def __init__(self, config: StoreConfig) -> None:
        self.store = RedisStore.from_config(config)
        self.background = BackgroundRuns(self.store)

    async def aclose(self) -> None:
        await self.background.aclose()
        await self.store.aclose()


class Turn(msgspec.Struct, kw_only=True):
    request: ResponsesRequest  # item references resolved: what the model is shown
    history: list[InputItem] | None  # the chain's items, oldest first (None without previous_response_id)
    tag: str
    stored_input: list[InputItem]  # the same input with an id on every item (store only)
    new_item_ids: list[str]

    def ids(self, prefix: str) -> str:
        return tagged_id(prefix, self.tag)


async def open_turn(store: ResponseStore, request: ResponsesRequest, may_read: Callable[[str | None], bool]) -> Turn:
    """Everything the store contributes before generation; 400/503 here come before any SSE byte.

    `may_read(model)` says whether the caller may see stored data of that model: a turn or an item
    it may not see is reported exactly as one that does not exist.
    """
    previous = request.previous_response_id
    tag = new_tag()
    history: list[InputItem] | None = None
    if previous is not None:
        tag = tag_of(previous) or ""
        if not tag:
            raise PreviousResponseNotFound(previous)
        turns = await store.chain(previous)
        if not all(may_read(turn.model) for turn in turns):
            raise PreviousResponseNotFound(previous)
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
    )


async def resolve_references(
    store: ResponseStore, items: list[InputItem], may_read: Callable[[str | None], bool]
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
                raise InvalidRequest(f"Item with id '{item.id}' not found.", param=f"input[{index}].id")
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
            item = msgspec.structs.replace(item, id=new_ids[-1])  # type: ignore[type-var]
        out.append(item)
    return out, new_ids


class Saver:
    """One response's record as it starts; for foreground runs also its final write and the
    guard on what the client sees (a no-op with `store: false`)."""

    def __init__(self, store: ResponseStore, prepared: Prepared, turn: Turn) -> None:
        self._store = store
        self._prepared = prepared
        self._turn = turn
        self.enabled = prepared.request.store
        self.saved = False
        self.failure: GatewayError | None = None

    async def begin(self) -> None:
        """The record as the response starts (GET shows it queued or in progress); 503 if Redis is down."""
        if self.enabled:
            turn = self._turn
            record = TurnRecord(
                response=self._prepared.response, input=turn.stored_input, new_item_ids=turn.new_item_ids
            )
            await self._store.begin(record, background=self._prepared.request.background)

    async def finalize(self, response: Response) -> None:
        """The runner's hook, awaited before the terminal event is sent."""
        if not self.enabled:
            return
        try:
            await shielded(self._store.finish(response))
            self.saved = True
        except GatewayError as exc:
            log.error("store_save_failed", response_id=response.id, error=exc.message)
            self.failure = exc

    def wrap(
        self, batches: AsyncIterator[list[Event]], assembler: Assembler, stats: RunStats
    ) -> AsyncIterator[list[Event]]:
        """The event batches as the client may see them (unchanged with `store: false`)."""
        return self._guard(batches, assembler, stats) if self.enabled else batches

    async def _guard(
        self, batches: AsyncIterator[list[Event]], assembler: Assembler, stats: RunStats
    ) -> AsyncIterator[list[Event]]:
        try:
            async with contextlib.aclosing(batches):  # type: ignore[type-var]
                async for batch in batches:
                    if self.failure is not None and assembler.terminal:
                        batch = [unstored(event, self.failure) for event in batch]
                        stats.status, stats.error = "failed", self.failure
                    yield batch
        finally:
            if not self.saved and self.failure is None:
                assembler.cancel()  # a no-op when the runner already ended it
                with contextlib.suppress(GatewayError):
                    await shielded(self._store.finish(assembler.response))


def unstored(event: Event, failure: GatewayError) -> Event:
    """A terminal event for a response whose final state could not be stored."""
    if not isinstance(event, (ResponseCompleted, ResponseIncomplete, ResponseFailed)):
        return event
    error = ResponseError(
        code=failure.code or "store_unavailable",
        message="The response was generated but could not be stored; it is lost. " + failure.message,
    )
    response = msgspec.structs.replace(event.response, status="failed", error=error, completed_at=None)
    return ResponseFailed(sequence_number=event.sequence_number, response=response)
