"""The store's interface: response records and chains, and the event log of background runs.

One Redis implementation serves every URL (`memory://` runs it on fakeredis), so these
Protocols exist to name the seam the rest of the gateway depends on, not for plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from msgspec import Struct

if TYPE_CHECKING:
    from gateway.store.conversations import Conversations

from gateway.events import STREAM_ENDING_TYPES, Event
from gateway.protocol import InputItem, OutputItem, Response

__all__ = [
    "TERMINAL",
    "ChainTurn",
    "EventLog",
    "Finished",
    "LoggedEvent",
    "ResponseStore",
    "Signal",
    "StoredItem",
    "StoredResponse",
    "TurnRecord",
]

TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled"})

Signal = Literal["ok", "cancel", "missing"]


class TurnRecord(Struct, kw_only=True):
    """What `begin` writes: the response as created, and this turn's own input items."""

    response: Response
    input: list[InputItem]
    new_item_ids: list[str] = []  # ids this turn issued to its input: indexed for item_reference
    conversation: str | None = None  # the conversation the turn runs in (BEGIN takes its turn lock)
    conversation_version: int = 0  # how many items the conversation had when the turn was built


class ChainTurn(Struct, kw_only=True, frozen=True):
    status: str
    input: list[InputItem]
    output: list[OutputItem]
    model: str | None = None  # the model that answered this turn: who may read it depends on it


class StoredItem(Struct, frozen=True, array_like=True):
    """An item as `item_reference` finds it, with the model of the response that holds it
    (None for items written before the model was stored with them)."""

    model: str | None
    item: InputItem


class StoredResponse(Struct, kw_only=True):
    response: Response  # with its current status and output
    background: bool


class Finished(Struct, kw_only=True, frozen=True):
    """`saved`; `missing` (deleted meanwhile); `conflict` (already ended as `status`)."""

    outcome: Literal["saved", "missing", "conflict"]
    status: str | None = None


class LoggedEvent(Struct, kw_only=True, frozen=True):
    sequence_number: int
    type: str
    data: bytes  # the event's JSON, exactly as streamed

    @property
    def terminal(self) -> bool:
        return self.type in STREAM_ENDING_TYPES


class ResponseStore(Protocol):
    lease_seconds: float  # how long a running response's owner may stay silent before it counts as gone
    conversations: Conversations

    async def chain(self, response_id: str) -> list[ChainTurn]:
        """The turns ending at `response_id`, oldest first, in one round trip."""

    async def items(self, item_ids: Sequence[str]) -> dict[str, StoredItem]:
        """The stored items among `item_ids` (unknown ids are left out)."""

    async def begin(self, record: TurnRecord, *, background: bool = False) -> None:
        """Write a response as it starts (queued or in progress) with its input."""

    async def finish(
        self, response: Response, events: Sequence[Event] = (), conversation_items: Sequence[Any] = ()
    ) -> Finished:
        """Write a response's final state (and, for background runs, its last events); a turn in a conversation
        appends `conversation_items` ((id, stored item) pairs) to it if it completed."""

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def input_items(self, response_id: str) -> list[InputItem] | None: ...

    async def delete(self, response_id: str) -> bool: ...

    async def heartbeat(self, response_id: str) -> Signal:
        """Renew the lease of a running response's owner (`cancel` if a cancel was asked, `missing` if deleted)."""

    async def reap(self, response_id: str) -> str:
        """The record's status; fails it first if it is still running and its owner's lease lapsed."""

    async def health(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class EventLog(ResponseStore, Protocol):
    """A response store that also logs background responses' events."""

    async def append(self, response_id: str, events: Sequence[Event], status: str | None = None) -> Signal:
        """Log events of a running background response; tells the owner to stop if cancelled."""

    async def read(self, response_id: str, after: int, wait: float) -> list[LoggedEvent]:
        """Events with sequence_number > after, waiting up to `wait` seconds for the first."""

    async def cancel(self, response_id: str) -> StoredResponse:
        """End a background response as cancelled (idempotent); NotFound / InvalidRequest otherwise."""

