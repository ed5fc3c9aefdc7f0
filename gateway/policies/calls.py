"""The way back: the model's function calls → the tool types the client declared.

A call to a wrapped custom tool becomes a `custom_tool_call` whose raw input is the
wrapped string argument; a call to an expanded namespace child becomes a
`function_call` with `namespace`. With `parallel_tool_calls: false` (or `max_tool_calls: n`) a call past the
first (the n-th) sets `over_limit`: the runner then stops the model, so the rest is never generated. A state
machine over deltas, no I/O.
"""

from __future__ import annotations

import msgspec

from gateway.adapters.base import Delta, ToolCallArguments, ToolCallStart
from gateway.policies.tools import WRAPPED_ARGUMENT, ToolPlan

__all__ = ["CallMapper", "unwrap_input"]

_JSON = msgspec.json.Decoder()


def unwrap_input(arguments: str) -> str:
    """The raw input inside `{"input": "..."}`; models that skip the wrapper keep their text."""
    try:
        value = _JSON.decode(arguments)
    except msgspec.DecodeError:
        return arguments
    if isinstance(value, dict):
        if isinstance(value.get(WRAPPED_ARGUMENT), str):
            return value[WRAPPED_ARGUMENT]
        strings = [v for v in value.values() if isinstance(v, str)]
        if len(value) == 1 and strings:
            return strings[0]
    if isinstance(value, str):
        return value
    return arguments


class CallMapper:
    def __init__(self, plan: ToolPlan, *, parallel_tool_calls: bool = True, max_tool_calls: int | None = None) -> None:
        self.plan = plan
        self.limit = 1 if not parallel_tool_calls else max_tool_calls
        self.calls = 0
        self.over_limit = False
        self._skipping = False
        self._wrapped: ToolCallStart | None = None
        self._buffer: list[str] = []

    def map(self, delta: Delta) -> list[Delta]:
        if isinstance(delta, ToolCallArguments):
            if self._skipping:
                return []
            if self._wrapped is not None:
                self._buffer.append(delta.text)
                return []
            return [delta]
        out = self._flush()
        self._skipping = False
        if isinstance(delta, ToolCallStart):
            self.calls += 1
            if self.limit is not None and self.calls > self.limit:
                self._skipping = True
                self.over_limit = True
                return out
            route = self.plan.routes.get(delta.name)
            if route is None or delta.custom:
                return [*out, delta]
            start = ToolCallStart(name=route.name, call_id=delta.call_id, custom=route.custom, namespace=route.namespace)
            if route.custom:
                self._wrapped = start
                return out
            return [*out, start]
        return [*out, delta]

    def _flush(self) -> list[Delta]:
        if self._wrapped is None:
            return []
        start, self._wrapped = self._wrapped, None
        raw = unwrap_input("".join(self._buffer))
        self._buffer = []
        return [start, ToolCallArguments(text=raw)] if raw else [start]
