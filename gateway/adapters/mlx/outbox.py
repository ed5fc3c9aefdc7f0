"""Deltas from the engine to the gateway, joined so that a response's frames are at least an interval apart.

Every frame costs a gateway wake-up, an SSE event and a client wake-up on the cores the model runs on; sent per
token, they slow decoding measurably (bench/mlx_streaming.py has a row with `stream_interval_ms: 0`). So a
request's deltas go out at once when its previous frame left more than a window ago (the first token always does),
otherwise they are held until the window has passed since the oldest of them and sent together, adjacent text
pieces joined. The window is the model's `stream_interval_ms` (50 ms: 20 updates a second, faster than anyone
reads), and at least `PER_SEQUENCE` per request being generated, since a batch of eight yields eight tokens a step;
0 sends every token as it comes. A request's held deltas always go out before its `Failed` or `Done`.

Engine thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.adapters.base import Delta, ReasoningDelta, Tally, TextDelta, ToolCallArguments
from gateway.adapters.mlx.wire import Deltas, Done, Failed, WireMessage

__all__ = ["Outbox"]

PER_SEQUENCE = 0.003  # seconds of window per request being generated (a batch of 8: at least 24 ms)

_JOINABLE = (TextDelta, ReasoningDelta, ToolCallArguments)


class Outbox:
    def __init__(self, send: Callable[[WireMessage], None], interval: float,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._send = send
        self._clock = clock
        self._interval = interval
        self._window = 0.0
        self.busy(1)
        self._held: dict[str, list[Delta]] = {}
        self._since: dict[str, float] = {}  # when the oldest held delta of a request arrived
        self._sent: dict[str, float] = {}  # when a request's last frame left

    def busy(self, active: int) -> None:
        """With more sequences in the batch, each token costs the shared cores more: hold longer."""
        if self._interval > 0:
            self._window = max(self._interval, PER_SEQUENCE * max(1, active))

    def deltas(self, request_id: str, deltas: list[Delta]) -> None:
        if not deltas:
            return
        now = self._clock()
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
        now = self._clock()
        for request_id in [r for r, since in self._since.items() if now - since >= self._window]:
            self._flush(request_id, now)

    def _flush(self, request_id: str, now: float | None = None) -> None:
        held = self._held.pop(request_id, None)
        self._since.pop(request_id, None)
        if held:
            self._send(Deltas(request_id=request_id, deltas=held))
            self._sent[request_id] = self._clock() if now is None else now


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
