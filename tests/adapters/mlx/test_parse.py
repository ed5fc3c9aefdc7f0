"""Output parsing with mlx-lm's text state machine and tool parsers, fed a character at a time."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from gateway.adapters.base import Delta, ReasoningDelta, TextDelta, ToolCallArguments, ToolCallStart

pytestmark = pytest.mark.mlx

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "", "parameters": {}}}]


def parser(  # type: ignore[no-untyped-def]
    tools: list | None = None, stop: list[str] | None = None, initial: str = "normal"
):
    from gateway.adapters.mlx.mlxlm import named_tool_parser
    from gateway.adapters.mlx.parse import Markers, OutputParser

    json_tools = named_tool_parser("json_tools")
    markers = Markers(think_start="<think>", think_end="</think>", call_start=json_tools.call_start,
                      call_end=json_tools.call_end, parse_call=json_tools.parse)
    return OutputParser(markers, tools=TOOLS if tools is None else tools, stop=stop or [], initial=initial)


def run(text: str, **kwargs: object) -> list[Delta]:
    p = parser(**kwargs)  # type: ignore[arg-type]
    out: list[Delta] = []
    for ch in text:  # the worst case: every marker arrives split into single characters
        out += p.feed(ch)
    return out + p.close()


def merged(deltas: list[Delta]) -> Iterator[tuple[str, str]]:
    kind, buffer = "", ""
    for d in deltas:
        k = type(d).__name__
        text = d.name if isinstance(d, ToolCallStart) else d.text  # type: ignore[union-attr]
        if k == kind and k in ("TextDelta", "ReasoningDelta", "ToolCallArguments"):
            buffer += text
            continue
        if kind:
            yield kind, buffer
        kind, buffer = k, text
    if kind:
        yield kind, buffer


def test_think_text_and_a_tool_call_split_into_characters() -> None:
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    out = run(f"<think>Look it up.</think>It is sunny.\n<tool_call>\n{call}\n</tool_call>")
    assert list(merged(out)) == [
        ("ReasoningDelta", "Look it up."),
        ("TextDelta", "It is sunny.\n"),
        ("ToolCallStart", "get_weather"),
        ("ToolCallArguments", '{"city": "Paris"}'),
    ]
    assert not any("<" in d.text for d in out if isinstance(d, TextDelta))


def test_answers_starting_inside_a_think_block() -> None:
    out = run("still thinking</think>done", initial="reasoning")
    assert list(merged(out)) == [("ReasoningDelta", "still thinking"), ("TextDelta", "done")]


def test_two_calls_in_a_row() -> None:
    one = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>'
    two = '<tool_call>\n{"name": "b", "arguments": {"x": 1}}\n</tool_call>'
    out = run(one + two)
    starts = [d.name for d in out if isinstance(d, ToolCallStart)]
    args = [json.loads(d.text) for d in out if isinstance(d, ToolCallArguments)]
    assert starts == ["a", "b"] and args == [{}, {"x": 1}]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_malformed_call_comes_back_as_text_with_a_warning() -> None:
    handler = _Records()
    logger = logging.getLogger("gateway.mlx.parse")
    logger.addHandler(handler)
    try:
        out = run('Here: <tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call> after')
    finally:
        logger.removeHandler(handler)
    assert not any(isinstance(d, ToolCallStart) for d in out)
    text = "".join(d.text for d in out if isinstance(d, TextDelta))
    assert text == 'Here: <tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call> after'
    assert [r.levelno for r in handler.records] == [logging.WARNING]


def test_an_unterminated_call_is_still_parsed_at_the_end() -> None:
    out = run('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n')
    assert [type(d).__name__ for d in out] == ["ToolCallStart", "ToolCallArguments"]


def test_without_tools_markup_is_just_text() -> None:
    text = '<tool_call>{"name": "x"}</tool_call>'
    assert "".join(d.text for d in run(text, tools=[])) == text  # type: ignore[union-attr]


def test_stop_strings_end_the_answer_even_when_split() -> None:
    p = parser(stop=["END"])
    out = p.feed("one two E") + p.feed("N") + p.feed("D three") + p.feed("more") + p.close()
    assert "".join(d.text for d in out if isinstance(d, TextDelta)) == "one two "
    assert p.stopped


def test_a_partial_marker_at_the_end_is_released_as_text() -> None:
    out = run("answer <tool")
    assert "".join(d.text for d in out) == "answer <tool"  # type: ignore[union-attr]
    assert all(isinstance(d, TextDelta) for d in out)
    assert not any(isinstance(d, ReasoningDelta) for d in out)


def test_a_value_the_parser_leaves_as_text_is_read_by_its_declared_type() -> None:
    """mlx-lm's qwen3_coder reads a list `type` with literal_eval, which takes no JSON `true` or nested `null`: the
    worker reads such a value back as JSON. A parameter that may be a string keeps the parser's text."""
    from gateway.adapters.mlx.mlxlm import named_tool_parser
    from gateway.adapters.mlx.parse import Markers, OutputParser

    coder = named_tool_parser("qwen3_coder")
    markers = Markers(call_start=coder.call_start, call_end=coder.call_end, parse_call=coder.parse)
    properties = {"flag": {"type": ["boolean", "null"]}, "box": {"type": ["object", "null"]},
                  "name": {"type": ["string", "null"]}, "size": {"type": "integer"}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                            "properties": properties}}}]
    parser = OutputParser(markers, tools=tools, stop=[])
    text = ("<tool_call>\n<function=f>\n<parameter=flag>\ntrue\n</parameter>\n<parameter=box>\n"
            '{"open": false, "lid": null}\n</parameter>\n<parameter=name>\ntrue\n</parameter>\n'
            "<parameter=size>\n3\n</parameter>\n</function>\n</tool_call>")
    deltas = parser.feed(text) + parser.close()
    arguments = json.loads("".join(d.text for d in deltas if isinstance(d, ToolCallArguments)))
    assert arguments == {"flag": True, "box": {"open": False, "lid": None}, "name": "true", "size": 3}


def test_a_call_id_the_model_repeats_is_not_used_twice() -> None:
    """kimi_k2's ids are written by the model (`functions.NAME:N`): when two calls carry the same one, the second is
    left without, and the gateway gives it an id of its own."""
    from gateway.adapters.mlx.mlxlm import named_tool_parser
    from gateway.adapters.mlx.parse import Markers, OutputParser

    kimi = named_tool_parser("kimi_k2")
    markers = Markers(call_start=kimi.call_start, call_end=kimi.call_end, parse_call=kimi.parse)
    tools = [{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}]
    parser = OutputParser(markers, tools=tools, stop=[])
    call = '<|tool_call_begin|>functions.read:0<|tool_call_argument_begin|>{"p": 1}<|tool_call_end|>'
    text = f"{kimi.call_start}{call}{call}{kimi.call_end}"
    deltas = parser.feed(text) + parser.close()
    ids = [d.call_id for d in deltas if isinstance(d, ToolCallStart)]
    assert ids == ["functions.read:0", None]


def test_a_call_cut_by_the_budget_is_text_not_a_call() -> None:
    """glm47's parser reads a call whose end marker never came: cut by the token budget, that call is unfinished
    (its arguments may miss what the schema requires), so it comes back as text in the incomplete answer."""
    from gateway.adapters.mlx.mlxlm import named_tool_parser
    from gateway.adapters.mlx.parse import Markers, OutputParser

    glm = named_tool_parser("glm47")
    markers = Markers(call_start=glm.call_start, call_end=glm.call_end, parse_call=glm.parse)
    tools = [{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}]
    cut = "<tool_call>read<arg_key>path</arg_key><arg_value>src/a"
    parser = OutputParser(markers, tools=tools, stop=[])
    deltas = parser.feed(cut) + parser.close(cut=True)
    assert [type(d).__name__ for d in deltas] == ["TextDelta"] and deltas[0].text == cut  # type: ignore[union-attr]
    ended = OutputParser(markers, tools=tools, stop=[])  # the model ended there itself: read as a call
    assert [type(d).__name__ for d in ended.feed(cut) + ended.close()] == ["ToolCallStart", "ToolCallArguments"]
