"""Decoded text → deltas: think blocks become reasoning, tool-call markup becomes calls.

Matching is done on text with mlx-lm's `TextStateMachine` (`mlxlm.TextMatcher`), which holds back anything
that could still be the start of a marker, so markup split across tokens never
reaches the answer text. A finished tool-call block goes to the model's own
mlx-lm tool parser; what it cannot parse comes back as plain text (and a warning),
never an exception. Stop strings end the answer without being shown.

Lives in the worker (it needs mlx-lm's parser modules).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gateway.adapters.base import Delta, ReasoningDelta, TextDelta, ToolCallArguments, ToolCallStart
from gateway.adapters.mlx.mlxlm import ParseCall, TextMatcher

__all__ = ["Markers", "OutputParser"]

log = logging.getLogger("gateway.mlx.parse")


class Markers:
    """What a model writes around reasoning and tool calls, and how its calls are parsed."""

    __slots__ = ("call_end", "call_start", "parse_call", "think_end", "think_start")

    def __init__(
        self,
        *,
        think_start: str | None = None,
        think_end: str | None = None,
        call_start: str | None = None,
        call_end: str | None = None,
        parse_call: ParseCall | None = None,
    ) -> None:
        self.think_start = think_start
        self.think_end = think_end
        self.call_start = call_start
        self.call_end = call_end
        self.parse_call = parse_call


class OutputParser:
    """Feed decoded text in; get reasoning, text and tool-call deltas out."""

    def __init__(
        self,
        markers: Markers,
        *,
        tools: list[dict[str, Any]],
        stop: list[str],
        initial: str = "normal",
    ) -> None:
        self._markers = markers
        self._tools = tools
        self._parse_calls = bool(tools) and markers.call_start is not None and markers.parse_call is not None
        self._matcher = TextMatcher(self._transitions(markers, stop), initial)
        self._call_text: list[str] = []
        self._call_ids: set[str] = set()
        self.calls = 0
        self.stopped = False

    def _transitions(self, markers: Markers, stop: list[str]) -> dict[str, list[tuple[str, str | None]]]:
        transitions: dict[str, list[tuple[str, str | None]]] = {"normal": []}
        if markers.think_start and markers.think_end:
            transitions["normal"].append((markers.think_start, "reasoning"))
            transitions["reasoning"] = [(markers.think_end, "normal")]
        if self._parse_calls:
            assert markers.call_start is not None
            transitions["normal"].append((markers.call_start, "tool"))
            if "reasoning" in transitions:
                transitions["reasoning"].append((markers.call_start, "tool"))
            transitions["tool"] = [(markers.call_end, "normal")] if markers.call_end else []
        for word in stop:
            if word:
                for state in ("normal", "reasoning"):
                    if state in transitions:
                        transitions[state].append((word, None))  # None: a terminal state
        return transitions

    @property
    def state(self) -> str | None:
        return self._matcher.state

    def feed(self, text: str) -> list[Delta]:
        if self.stopped or not text:
            return []
        segments = self._matcher.feed(text)
        out: list[Delta] = []
        for index, (state, piece) in enumerate(segments):
            out += self._emit(state, piece)
            left_state = index < len(segments) - 1
            if state == "tool" and left_state:
                out += self._close_call(complete=True)
        if self.state is None:
            self.stopped = True
        return out

    def close(self, cut: bool = False) -> list[Delta]:
        """End of generation: release held-back text and any unterminated call. `cut`: the token budget ended the
        answer, so a call whose end marker never came is unfinished: it comes back as text, never as a call with
        whatever arguments a lenient parser makes of it (a format without an end marker is parsed as always)."""
        if self.stopped:
            return []
        state, held = self._matcher.flush()
        out = self._emit(state, held)
        if state == "tool" and cut and self._markers.call_end:
            text = "".join(self._call_text)
            self._call_text = []
            return [*out, TextDelta(text=f"{self._markers.call_start}{text}")]
        if state == "tool":
            out += self._close_call(complete=False)
        return out

    def _emit(self, state: str | None, piece: str) -> list[Delta]:
        if not piece:
            return []
        if state == "tool":
            self._call_text.append(piece)
            return []
        if state == "reasoning":
            return [ReasoningDelta(text=piece)]
        return [TextDelta(text=piece)]

    def _close_call(self, *, complete: bool) -> list[Delta]:
        text = "".join(self._call_text)
        self._call_text = []
        calls = self._parsed(text)
        if calls is None:
            end = (self._markers.call_end or "") if complete else ""
            log.warning("malformed tool call returned as text", extra={"fields": {"text": text[:500]}})
            return [TextDelta(text=f"{self._markers.call_start}{text}{end}")]
        out: list[Delta] = []
        for name, arguments, call_id in calls:
            if call_id is not None and call_id in self._call_ids:
                # Ids the model writes (kimi_k2's `functions.NAME:N`) can repeat; a client pairs outputs with calls
                # by id, so a repeated one is left for the gateway to make.
                call_id = None
            if call_id is not None:
                self._call_ids.add(call_id)
            self.calls += 1
            out += [ToolCallStart(name=name, call_id=call_id), ToolCallArguments(text=arguments)]
        return out

    def _parsed(self, text: str) -> list[tuple[str, str, str | None]] | None:
        assert self._markers.parse_call is not None
        try:
            result = self._markers.parse_call(text, self._tools)
        except Exception:
            return None
        items = result if isinstance(result, list) else [result]
        calls = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                return None
            arguments = self._typed(item["name"], item.get("arguments", {}))
            if isinstance(arguments, str):
                encoded = arguments
            else:
                try:
                    encoded = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
                except (TypeError, ValueError):
                    return None
            call_id = item.get("id") if isinstance(item.get("id"), str) else None
            calls.append((item["name"], encoded, call_id))
        return calls or None

    def _typed(self, name: str, arguments: Any) -> Any:
        """A parser that converts values by their declared type can hand back text for a type it does not know:
        mlx-lm's qwen3_coder reads `"type": ["boolean", "null"]` with `literal_eval`, which takes no `true`, so the
        JSON the model (or its grammar) wrote comes back as the string "true". A string where the parameter cannot
        be one is read as JSON instead, when it is JSON."""
        if not isinstance(arguments, dict):
            return arguments
        properties = self._properties(name)
        for key, value in arguments.items():
            kinds = _types(properties.get(key))
            if isinstance(value, str) and kinds and "string" not in kinds:
                try:
                    arguments[key] = json.loads(value)
                except ValueError:
                    pass
        return arguments

    def _properties(self, name: str) -> dict[str, Any]:
        for tool in self._tools:
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and function.get("name") == name:
                parameters = function.get("parameters")
                properties = parameters.get("properties") if isinstance(parameters, dict) else None
                return properties if isinstance(properties, dict) else {}
        return {}


def _types(schema: Any) -> set[str]:
    """The JSON types a parameter's schema declares (empty: not declared)."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return set()
