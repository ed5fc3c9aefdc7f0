"""The escaped grammar accepts exactly the JSON-escaped strings the tool's own grammar accepts, and the raw one
exactly the strings themselves.

Each case runs the engine (byte tokenizer) on the rewritten grammar, and an independent oracle on the raw string:
Python's `re` for regexes, the `lark` package for Lark grammars."""

from __future__ import annotations

import json
import re

import lark
import llguidance
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.grammars import GrammarError, escaped_grammar, raw_grammar, start_name

TOKENIZER = llguidance.LLTokenizer("byte")

PATCH_GRAMMAR = r"""start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?

hunk: add_hunk | delete_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
delete_hunk: "*** Delete File: " filename LF
update_hunk: "*** Update File: " filename LF change_move? change?

filename: /(.+)/
add_line: "+" /(.*)/ LF -> line

change_move: "*** Move to: " filename LF
change: (change_context | change_line)+ eof_line?
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
eof_line: "*** End of File" LF

%import common.LF
"""

PATCHES = [
    "*** Begin Patch\n*** Add File: hello.txt\n+hi \"there\" \\ tab\there\n*** End Patch\n",
    "*** Begin Patch\n*** Update File: src/a b.py\n@@ def f():\n-    old\n+    new\n     same\n*** End Patch",
    "*** Begin Patch\n*** Delete File: gone.txt\n*** Update File: x\n*** Move to: y\n@@\n+é ünïcode \x01\n*** End Patch\n",
    "*** Begin Patch\n*** Add File: a\n+\n*** End Patch\n",
]
NOT_PATCHES = [
    "*** Begin Patch\nnot a hunk\n*** End Patch\n",
    "*** Begin Patch\n*** Add File: empty\n*** End Patch\n",  # an added file needs a line
    "*** Begin Patch\n*** Add File: a\n+x\n",  # no end
    "*** Begin Patch\n*** Add File: a\nb\n+x\n*** End Patch\n",
]


def engine_accepts(definition: str, syntax: str, raw: str) -> bool:
    prefix = "G0"
    grammar = f'start: "\\"" {start_name(prefix)} "\\""\n' + escaped_grammar(definition, syntax, prefix)
    matcher = llguidance.LLMatcher(TOKENIZER, llguidance.grammar_from("lark", grammar), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    tokens = TOKENIZER.tokenize_str(json.dumps(raw, ensure_ascii=False))
    return bool(matcher.consume_tokens(tokens)) and bool(matcher.is_accepting())


def engine_accepts_raw(definition: str, syntax: str, raw: str) -> bool:
    """The unescaped form (raw_grammar): the string itself, between two tags as in an XML call format, the value
    and its closing tag one lexeme holding no earlier closing tag (as gateway/adapters/mlx/call_formats.py writes it)."""
    prefix = "G0"
    grammar = (f'start: "<v>" VALUE\nVALUE: ({start_name(prefix)} "</v>") & ~/(?s:.*<\\/v>.+)/\n'
               + raw_grammar(definition, syntax, prefix))
    matcher = llguidance.LLMatcher(TOKENIZER, llguidance.grammar_from("lark", grammar), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    tokens = TOKENIZER.tokenize_str(f"<v>{raw}</v>")
    return bool(matcher.consume_tokens(tokens)) and bool(matcher.is_accepting())


def lark_parser(definition: str) -> lark.Lark:
    """The `lark` package as an independent parser. It refuses terminals that can match nothing, so `/(.*)/`
    is written `/(.+)/?` (the same language) for it."""
    return lark.Lark(definition.replace("/(.*)/", "/(.+)/?"), parser="earley", lexer="dynamic")


def lark_accepts(definition: str, raw: str) -> bool:
    try:
        lark_parser(definition).parse(raw)
    except lark.exceptions.UnexpectedInput:
        return False
    return True


@pytest.mark.parametrize("raw", PATCHES + NOT_PATCHES)
def test_the_patch_grammar_agrees_with_lark(raw: str) -> None:
    expected = lark_accepts(PATCH_GRAMMAR, raw)
    assert expected == (raw in PATCHES)  # the oracle itself sees the cases as written
    assert engine_accepts(PATCH_GRAMMAR, "lark", raw) == expected
    assert engine_accepts_raw(PATCH_GRAMMAR, "lark", raw) == expected


REGEXES = [r"[a-z]+\d{2}(\.txt|/x)?", r'[^x]*', r"(ab|c\n)+", r'"quoted" \\ .', r"\w+@\s?\S{1,3}", r"^a.b$"]
SAMPLES = ["abc12", "abc12/x", "abc12.txt", "abc1", "Abc12", "", "ab", "abc\n", "c\nab", "x", 'a\n"\\\t\x01é',
           '"quoted" \\ !', '"quoted" \\ \n', "w_9@ é", "w@\t\x02", "a\nb", "a-b", "a\tb"]


@pytest.mark.parametrize("pattern", REGEXES)
def test_regex_tools_accept_what_python_re_accepts(pattern: str) -> None:
    for raw in SAMPLES:
        assert engine_accepts(pattern, "regex", raw) == bool(re.fullmatch(pattern, raw)), (pattern, raw)
        assert engine_accepts_raw(pattern, "regex", raw) == bool(re.fullmatch(pattern, raw)), (pattern, raw)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from('ab"\\\n\t\x00é/{} '), max_size=12))
def test_any_string_is_judged_as_re_judges_it(raw: str) -> None:
    pattern = r'(a|"|\\|\n)*[b\t\x00-\x1f é]?[^a]*'
    assert engine_accepts(pattern, "regex", raw) == bool(re.fullmatch(pattern, raw))
    assert engine_accepts_raw(pattern, "regex", raw) == bool(re.fullmatch(pattern, raw))


def test_names_are_prefixed_so_the_grammar_nests() -> None:
    rules = escaped_grammar('start: item+\nitem: WORD " "\nWORD: /[a-z]+/', "lark", "G3")
    assert start_name("G3") == "G3R_START"
    assert {"G3R_START", "G3R_ITEM", "G3T_WORD"} <= set(re.findall(r"^(\w+):", rules, re.MULTILINE))


@pytest.mark.parametrize(("definition", "syntax", "complaint"), [
    ('start: "a"i', "lark", "string flags"),
    ("start: /a/i", "lark", "regex flags"),
    ("%ignore WS\nstart: /a/", "lark", "%ignore"),
    ("%import common.ESCAPED_STRING\nstart: ESCAPED_STRING", "lark", "common.ESCAPED_STRING"),
    ("(?=a)a", "regex", "assert"),
    ("(a", "regex", "invalid regex"),
    ("start: /a/", "ebnf", "syntax"),
])
def test_what_cannot_be_carried_is_said(definition: str, syntax: str, complaint: str) -> None:
    with pytest.raises(GrammarError, match=re.escape(complaint)):
        escaped_grammar(definition, syntax, "G0")
