"""The way back: model function calls → the client's tool types."""

from __future__ import annotations

import json

import pytest

from gateway.adapters.base import Finish, TextDelta, ToolCallArguments, ToolCallStart
from gateway.normalize import decode_request
from gateway.policies.calls import CallMapper, unwrap_input
from gateway.policies.tools import ToolRules, plan_tools

TOOLS = [
    {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
    {"type": "custom", "name": "apply_patch"},
    {"type": "namespace", "name": "docs", "tools": [{"type": "function", "name": "search"}, {"type": "custom", "name": "raw"}]},
]


def mapper(parallel: bool = True) -> CallMapper:
    request = decode_request(json.dumps({"model": "m", "tools": TOOLS}).encode())
    return CallMapper(plan_tools(request.tools, ToolRules()), parallel_tool_calls=parallel)


def run(m: CallMapper, deltas):  # type: ignore[no-untyped-def]
    out = []
    for delta in deltas:
        out += m.map(delta)
    return out


def test_function_calls_pass_through_streaming() -> None:
    out = run(mapper(), [ToolCallStart(name="exec_command", call_id="c"), ToolCallArguments(text='{"cmd":'),
                         ToolCallArguments(text='"ls"}'), Finish(reason="tool_calls")])
    assert out == [ToolCallStart(name="exec_command", call_id="c"), ToolCallArguments(text='{"cmd":'),
                   ToolCallArguments(text='"ls"}'), Finish(reason="tool_calls")]


def test_wrapped_call_becomes_a_custom_call_with_raw_input() -> None:
    patch = "*** Begin Patch\n*** Add File: a\n+x\n*** End Patch"
    arguments = json.dumps({"input": patch})
    out = run(mapper(), [ToolCallStart(name="apply_patch", call_id="p"), ToolCallArguments(text=arguments[:10]),
                         ToolCallArguments(text=arguments[10:]), Finish()])
    assert out == [ToolCallStart(name="apply_patch", call_id="p", custom=True), ToolCallArguments(text=patch), Finish()]


def test_namespace_child_gets_its_name_and_namespace_back() -> None:
    out = run(mapper(), [ToolCallStart(name="docs__search"), ToolCallArguments(text="{}"), Finish()])
    assert out[0] == ToolCallStart(name="search", namespace="docs")
    out = run(mapper(), [ToolCallStart(name="docs__raw"), ToolCallArguments(text='{"input":"x"}'), TextDelta(text="t")])
    assert out == [ToolCallStart(name="raw", namespace="docs", custom=True), ToolCallArguments(text="x"), TextDelta(text="t")]


def test_parallel_false_keeps_only_the_first_call() -> None:
    out = run(mapper(parallel=False), [
        ToolCallStart(name="exec_command"), ToolCallArguments(text="{}"),
        ToolCallStart(name="apply_patch"), ToolCallArguments(text='{"input":"x"}'),
        ToolCallStart(name="docs__search"), ToolCallArguments(text="{}"), Finish(reason="tool_calls"),
    ])
    assert out == [ToolCallStart(name="exec_command"), ToolCallArguments(text="{}"), Finish(reason="tool_calls")]


def test_unknown_names_and_native_custom_calls_pass_through() -> None:
    out = run(mapper(), [ToolCallStart(name="hallucinated"), ToolCallArguments(text="{}")])
    assert out == [ToolCallStart(name="hallucinated"), ToolCallArguments(text="{}")]
    out = run(mapper(), [ToolCallStart(name="apply_patch", custom=True), ToolCallArguments(text="raw")])
    assert out == [ToolCallStart(name="apply_patch", custom=True), ToolCallArguments(text="raw")]


@pytest.mark.parametrize(
    ("arguments", "raw"),
    [
        ('{"input": "patch"}', "patch"),
        ('{"patch": "patch"}', "patch"),          # a model that renamed the only argument
        ('"patch"', "patch"),                     # a bare JSON string
        ("*** Begin Patch", "*** Begin Patch"),   # not JSON at all: take the text
        ('{"a": 1, "b": 2}', '{"a": 1, "b": 2}'),  # ambiguous: keep it verbatim
        ("", ""),
    ],
)
def test_unwrap_input(arguments: str, raw: str) -> None:
    assert unwrap_input(arguments) == raw


def test_max_tool_calls_keeps_the_first_n_and_says_the_limit_was_passed() -> None:
    request = decode_request(json.dumps({"model": "m", "tools": TOOLS}).encode())
    m = CallMapper(plan_tools(request.tools, ToolRules()), max_tool_calls=2)
    out = run(m, [ToolCallStart(name="exec_command", call_id="a"), ToolCallArguments(text="{}"),
                  ToolCallStart(name="exec_command", call_id="b"), ToolCallArguments(text="{}")])
    assert not m.over_limit and [d.call_id for d in out if isinstance(d, ToolCallStart)] == ["a", "b"]
    assert run(m, [ToolCallStart(name="exec_command", call_id="c"), ToolCallArguments(text="{}")]) == []
    assert m.over_limit
