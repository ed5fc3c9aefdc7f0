"""The tests' one reader of server-sent events.

The gateway writes two dialects of SSE:

* the Responses API: `event: <type>` + one JSON `data:` line per event, no terminator
  (`response_events`, `iter_response_events`);
* chat completions: `data: <chunk JSON>` only, `: keepalive` comments, ending with `data: [DONE]`
  (`chat_chunks`).

Both are read by the same parser (`parse_sse` for a whole body, `iter_sse` for a live httpx stream,
with each event's arrival time). It follows the SSE framing rules the gateway relies on: lines end
with LF, CRLF or CR; a blank line ends an event; `data:` lines of one event are joined with LF;
lines starting with `:` are comments. It is strict where a test should notice a change: a field the
gateway never sends, data that is not JSON (other than `[DONE]`), or a body that stops in the middle
of an event raise ValueError.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["DONE", "SseEvent", "chat_chunks", "iter_response_events", "iter_sse", "parse_sse", "response_events"]

DONE = "[DONE]"

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its `event:` name (None when absent), its data as sent and decoded."""

    event: str | None
    raw: str  # the data lines joined with "\n"
    data: Any  # json.loads(raw); None for the `[DONE]` terminator

    @property
    def done(self) -> bool:
        """The chat-completions terminator, `data: [DONE]`."""
        return self.raw == DONE


class _Decoder:
    """Feeds lines, returns an event when a blank line completes one."""

    def __init__(self) -> None:
        self.event: str | None = None
        self.data: list[str] = []
        self.pending = False  # a field line was seen since the last dispatch

    def line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. ": keepalive"
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        self.pending = True
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        else:
            raise ValueError(f"unexpected SSE field {name!r} in line {line!r}")
        return None

    def _dispatch(self) -> SseEvent | None:
        event, data, pending = self.event, self.data, self.pending
        self.event, self.data, self.pending = None, [], False
        if not data:
            if pending:  # e.g. an `event:` with no data: the gateway never sends one
                raise ValueError(f"SSE event {event!r} without data")
            return None
        raw = "\n".join(data)
        try:
            decoded = None if raw == DONE else json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"SSE data is not JSON: {raw!r}") from exc
        return SseEvent(event=event, raw=raw, data=decoded)

    def end(self, rest: str) -> None:
        if rest or self.pending:
            raise ValueError(f"SSE stream ended inside an event (unparsed: {rest!r})")


def _events(chunks: Iterable[str]) -> Iterator[SseEvent]:
    decoder = _Decoder()
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        start = 0
        while match := _LINE_END.search(buffer, start):
            if match.group() == "\r" and match.end() == len(buffer):
                break  # maybe the first half of a CRLF split across chunks
            line, start = buffer[start : match.start()], match.end()
            if (event := decoder.line(line)) is not None:
                yield event
        buffer = buffer[start:]
    if buffer.endswith("\r"):
        line, buffer = buffer[:-1], ""
        if (event := decoder.line(line)) is not None:
            yield event
    decoder.end(buffer)


def parse_sse(body: str | bytes) -> list[SseEvent]:
    """Every event of a complete SSE body (comments and blank keepalive lines skipped)."""
    return list(_events([body.decode() if isinstance(body, bytes) else body]))


def iter_sse(response: httpx.Response) -> Iterator[tuple[float, SseEvent]]:
    """(time.monotonic() when it arrived, event) for each event of a streaming httpx response, as it arrives."""
    for event in _events(response.iter_text()):
        yield time.monotonic(), event


def _response_event(event: SseEvent) -> dict[str, Any]:
    assert isinstance(event.data, dict), f"not a JSON object: {event.raw!r}"
    assert event.event == event.data.get("type"), f"event: {event.event!r} but data type {event.data.get('type')!r}"
    return event.data


def response_events(body: str | bytes) -> list[dict[str, Any]]:
    """The events of a Responses API stream, checking each `event:` name equals its data's `type`."""
    return [_response_event(event) for event in parse_sse(body)]


def iter_response_events(response: httpx.Response) -> Iterator[tuple[float, dict[str, Any]]]:
    """(arrival time, event) for each event of a streaming Responses API httpx response, checked as above."""
    for arrived, event in iter_sse(response):
        yield arrived, _response_event(event)


def chat_chunks(body: str | bytes) -> list[dict[str, Any]]:
    """The JSON payloads of a chat-completions stream (chunks, or an error object), before its `data: [DONE]`.

    Checks the dialect: no `event:` names, exactly one `[DONE]`, and the body ends with it.
    """
    text = body.decode() if isinstance(body, bytes) else body
    events = parse_sse(text)
    assert text.endswith(f"data: {DONE}\n\n"), f"chat stream does not end with data: {DONE}: {text[-200:]!r}"
    assert [e.done for e in events].count(True) == 1 and events[-1].done
    assert all(e.event is None for e in events), [e.event for e in events]
    chunks = [e.data for e in events[:-1]]
    assert all(isinstance(c, dict) for c in chunks)
    return chunks
