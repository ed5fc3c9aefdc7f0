"""msgpack for stored values, JSON for logged events; and the response as a reader sees it."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from gateway.events import ErrorEvent, Event
from gateway.protocol import InputItem, OutputItem, Response, ResponseError, UnknownItem
from gateway.store.base import StoredItem

__all__ = [
    "LOST",
    "LOST_EVENT_TEMPLATE",
    "decode_input",
    "decode_item",
    "decode_output",
    "decode_response",
    "encode",
    "encode_item",
    "event_triples",
    "item_id",
    "present",
]

_PACK = msgspec.msgpack.Encoder()
_JSON = msgspec.json.Encoder()
_INPUT = msgspec.msgpack.Decoder(list[InputItem])
_OUTPUT = msgspec.msgpack.Decoder(list[OutputItem])
_ITEM = msgspec.msgpack.Decoder(InputItem)
_STORED_ITEM = msgspec.msgpack.Decoder(StoredItem)
_RESPONSE = msgspec.msgpack.Decoder(Response)

LOST = ResponseError(
    code="response_lost", message="The gateway instance running this response stopped before it finished."
)
# The same loss as the `error` event the reaper appends to the log (Lua fills in the sequence number).
LOST_EVENT_TEMPLATE = _JSON.encode(
    ErrorEvent(sequence_number=0, code=LOST.code, message=LOST.message)
).decode().replace('"sequence_number":0', '"sequence_number":%d', 1)


def encode(value: object) -> bytes:
    return _PACK.encode(value)


def decode_input(blob: bytes | None) -> list[InputItem]:
    return _INPUT.decode(blob) if blob else []


def decode_output(blob: bytes | None) -> list[OutputItem]:
    return _OUTPUT.decode(blob) if blob else []


def encode_item(item: InputItem, model: str) -> bytes:
    return _PACK.encode(StoredItem(model, item))


def decode_item(blob: bytes) -> StoredItem:
    """An item with its model; a bare item (written before models were kept with items) has none."""
    try:
        return _STORED_ITEM.decode(blob)
    except msgspec.ValidationError:
        return StoredItem(None, _ITEM.decode(blob))


def decode_response(blob: bytes) -> Response:
    return _RESPONSE.decode(blob)


def item_id(item: InputItem) -> str | None:
    """An item's id, if it has one (unknown item types keep theirs in `data`)."""
    value = item.data.get("id") if isinstance(item, UnknownItem) else getattr(item, "id", None)
    return value if isinstance(value, str) else None


def present(response: Response, status: str, output: list[OutputItem]) -> Response:
    """The stored response with its current status (the record's `s` field is authoritative:
    the cancel endpoint and the reaper change it without rewriting the response)."""
    error = response.error
    if status == "failed" and error is None:
        error = LOST  # only the reaper fails a response without an error of its own
    return msgspec.structs.replace(response, status=status, output=output, error=error)


def event_triples(events: Sequence[Event]) -> list[bytes | int | str]:
    """Script arguments for logged events: (sequence_number, type, JSON) per event."""
    args: list[bytes | int | str] = []
    for event in events:
        args += [event.sequence_number, event.event_type, _JSON.encode(event)]
    return args
