"""Server-sent-event framing: `event: <type>` + one-line JSON `data:` per event, no [DONE]."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import msgspec

from gateway.events import Event

__all__ = ["SSE_HEADERS", "encode_events", "frame", "sse_stream"]

_ENCODER = msgspec.json.Encoder()

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies must not hold events back
}


def encode_events(events: Sequence[Event]) -> bytes:
    buffer = bytearray()
    for event in events:
        buffer += b"event: "
        buffer += event.event_type.encode()
        buffer += b"\ndata: "
        buffer += _ENCODER.encode(event)
        buffer += b"\n\n"
    return bytes(buffer)


def frame(event_type: str, data: bytes) -> bytes:
    """One event whose JSON is already encoded (a replay from the background event log)."""
    return b"event: " + event_type.encode() + b"\ndata: " + data + b"\n\n"


async def sse_stream(batches: AsyncIterator[list[Event]]) -> AsyncIterator[bytes]:
    """One write per batch: events that are ready together leave together."""
    async for batch in batches:
        if batch:
            yield encode_events(batch)
