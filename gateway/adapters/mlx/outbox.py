"""Deltas from the engine to the gateway, coalesced when tokens come faster than anyone can read them.

A small model decodes a token every ~0.7 ms, a batch of eight yields eight tokens a step;
one frame, one gateway wake-up and one SSE event per token then costs the machine more
than the model does (the gateway, the client and the model share the cores). So a
request's deltas go out at once when its previous frame of text left more than a window
ago (the first token always does, and every token of a slow model), otherwise they are
held at most that window and sent together, adjacent text pieces joined. The window is
`WINDOW` per request being generated: 3 ms alone, 24 ms for a batch of eight. A
request's held deltas always go out before its `Failed` or `Done`.

Engine thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.adapters.base import Delta, ReasoningDelta, Tally, TextDelta, ToolCallArguments
from gateway.adapters.mlx.wire import Deltas, Done, Failed, WireMessage

__all__ = ["Outbox"]

WINDOW = 0.003  # seconds a delta may be held back, per request being generated (a batch of 8: 24 ms)

_JOINABLE = (TextDelta, ReasoningDelta, ToolCallArguments)


class Outbox:
    def __init__(self, send: Callable[[WireMessage], None], window: float = WINDOW) -> None:
        self._send = send
        self._base = window
        self._window = window
        self._held: dict[str, list[Delta]] = {}
        self._since: dict[str, float] = {}  # when the oldest held delta of a request arrived
        self._sent: dict[str, float] = {}  # when a request's last frame left

    def busy(self, active: int) -> None:
        """With more sequences in the batch, each token costs the shared cores more: hold longer."""
        self._window = self._base * max(1, active)

    def deltas(self, request_id: str, deltas: list[Delta]) -> None:
        if not deltas:
            return
        now = time.perf_counter()
        held = self._held.get(request_id)
        if held is None and now - self._sent.get(request_id, 0.0) >= self._window:
            self._send(Deltas(request_id=request_id, deltas=deltas))
            self._sent[request_id] = now
            return
        if held is None:
            held = self._held[request_id] = []
            self._since[request_id] = now
        for delta in deltas:
            _append(held, delta)

    def send(self, message: WireMessage) -> None:
        """A message other than deltas; a request's held deltas precede its `Failed` and `Done`."""
        if isinstance(message, (Failed, Done)):
            self._flush(message.request_id)
            if isinstance(message, Done):
                self._sent.pop(message.request_id, None)
        self._send(message)

    def flush_due(self) -> None:
        if not self._held:
            return
        now = time.perf_counter()
        for request_id in [r for r, since in self._since.items() if now - since >= self._window]:
            self._flush(request_id, now)

    def _flush(self, request_id: str, now: float | None = None) -> None:
        held = self._held.pop(request_id, None)
        self._since.pop(request_id, None)
        if held:
            self._send(Deltas(request_id=request_id, deltas=held))
            self._sent[request_id] = time.perf_counter() if now is None else now


def _append(held: list[Delta], delta: Delta) -> None:
    if held and isinstance(held[-1], Tally):
        # Only the newest count matters, and it goes last: the text before it stays joinable.
        counted = held.pop()
        if not isinstance(delta, Tally):
            _append(held, delta)
            delta = counted
        held.append(delta)
        return
    last = held[-1] if held else None
    if isinstance(delta, _JOINABLE) and type(last) is type(delta):
        held[-1] = type(delta)(text=last.text + delta.text)
    else:
        held.append(delta)
