"""A custom tool's grammar (`lark` or `regex`), rewritten to match the JSON-escaped form of its language.

A model that sees a custom tool wrapped as a function writes the tool's input inside a JSON string. JSON escaping
works character by character, so escaping every terminal of the grammar escapes its whole language: string
literals are escaped directly, regexes are parsed (Python's own `re` parser: Lark terminals are Python regexes) and
written back in the engine's syntax with every character class split into its plain characters and the escape
sequences of the characters JSON must escape. Rule and terminal names get a prefix so the result can sit inside a
larger grammar (the model's call format). Pure; the engine validates the result (constraints.py).
"""

from __future__ import annotations

import ast
import json
import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

__all__ = ["GrammarError", "escaped_grammar", "literal_regex", "raw_grammar", "start_name"]

# Characters JSON must escape, and how json.dumps writes them (the parser reads them back with json.loads).
_SPECIAL = ['"', "\\", *[chr(c) for c in range(0x20)]]
_PLAIN_CLASS = r'[^"\\\x00-\x1F]'
# Lark's `%import common.X` terminals this rewriting knows, as Python regexes.
_COMMON = {
    "LF": r"\n", "CR": r"\r", "NEWLINE": r"(\r?\n)+", "WS": r"[ \t\f\r\n]+", "WS_INLINE": r"[ \t]+",
    "DIGIT": r"[0-9]", "HEXDIGIT": r"[a-fA-F0-9]", "INT": r"[0-9]+", "LETTER": r"[A-Za-z]", "WORD": r"[A-Za-z]+",
    "LCASE_LETTER": r"[a-z]", "UCASE_LETTER": r"[A-Z]", "CNAME": r"[_A-Za-z][_A-Za-z0-9]*",
}
_TOKENS = re.compile(r"""
    (?P<space>[ \t]+) | (?P<newline>\r?\n) | (?P<comment>//[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"(?P<sflags>[a-z]*))
  | (?P<regex>/(?:[^/\\\n]|\\.)+/(?P<rflags>[a-z]*))
  | (?P<import>%import[ \t]+common\.(?:(?P<one>\w+)|\((?P<many>[\w\s,]+)\)))
  | (?P<directive>%\w+)
  | (?P<alias>->[ \t]*\w+)
  | (?P<number>\d+\b)
  | (?P<name>[?!]?\w+)
  | (?P<other>\.\.|[:|()\[\]+*?~,])
""", re.VERBOSE)


class GrammarError(ValueError):
    """The grammar uses something the rewriting cannot carry into a JSON string."""


def escaped_grammar(definition: str, syntax: str, prefix: str) -> str:
    """Lark terminals; the one named `start_name(prefix)` matches exactly the JSON-escaped strings of the grammar.
    `prefix` is upper case."""
    return _terminals(definition, syntax, prefix, escape=True)


def raw_grammar(definition: str, syntax: str, prefix: str) -> str:
    """The same terminals for the grammar's own strings, unescaped: for call formats that carry a parameter's text
    as it is (Qwen3-Coder's XML)."""
    return _terminals(definition, syntax, prefix, escape=False)


def _terminals(definition: str, syntax: str, prefix: str, *, escape: bool) -> str:
    if syntax == "regex":
        return f"{start_name(prefix)}: {_escaped_terminal(definition, '', escape)}\n"
    if syntax != "lark":
        raise GrammarError(f"grammar syntax '{syntax}' is not one of lark, regex")
    out: list[str] = []
    position = 0
    while position < len(definition):
        match = _TOKENS.match(definition, position)
        if match is None:
            raise GrammarError(f"cannot read the grammar at offset {position}: {definition[position:position + 20]!r}")
        position = match.end()
        out.append(_rewrite(match, str(match.lastgroup), prefix, escape))  # the outer group closes last
    return "".join(out)


def _rewrite(match: re.Match[str], kind: str, prefix: str, escape: bool) -> str:
    text = match.group(0)
    if kind in ("space", "newline", "other", "number"):
        return text
    if kind in ("comment", "alias"):
        return ""  # comments and tree-shaping aliases do not change the language
    if kind == "string":
        if match.group("sflags"):
            raise GrammarError(f"string flags are not supported: {text}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise GrammarError(f"cannot read the string {text}") from exc
        return json.dumps(json.dumps(value, ensure_ascii=False)[1:-1] if escape else value, ensure_ascii=False)
    if kind == "regex":
        flags = match.group("rflags")
        return _escaped_terminal(text[1:len(text) - len(flags) - 1].replace("\\/", "/"), flags, escape)
    if kind == "import":
        names = [match.group("one")] if match.group("one") else re.split(r"[\s,]+", match.group("many").strip())
        lines = []
        for name in names:
            if name not in _COMMON:
                raise GrammarError(f"%import common.{name} is not supported")
            lines.append(f"{_name(name, prefix)}: {_escaped_terminal(_COMMON[name], '', escape)}")
        return "\n".join(lines)
    if kind == "directive":
        raise GrammarError(f"{text} is not supported in a constrained custom tool")
    assert kind == "name"
    return _name(text, prefix)


def _name(name: str, prefix: str) -> str:
    """Every rule becomes a terminal: the engine then lexes the whole input as one regular lexeme. Rules as rules
    would need two characters of lookahead at some lexeme ends once escaped (`\\n` ends a line, `\\"` does not),
    more than the engine's lexer takes. A recursive grammar is not regular and does not compile so."""
    bare = name.lstrip("?!")  # tree-shaping marks: the language is the same
    return f"{prefix}{'T' if bare[:1].isupper() else 'R'}_{bare.upper()}"


def start_name(prefix: str) -> str:
    return _name("start", prefix)


def literal_regex(text: str) -> str:
    """An engine /regex/ matching `text` literally."""
    return _literal(text, escape=False)


def _escaped_terminal(pattern: str, flags: str, escape: bool = True) -> str:
    """`/regex/` (engine syntax) matching the JSON-escaped strings `pattern` matches (the strings themselves when not
    `escape`)."""
    unsupported = set(flags) - {"s"}
    if unsupported:
        raise GrammarError(f"regex flags {''.join(sorted(unsupported))!r} are not supported")
    try:
        tree = sre_parse.parse(pattern, re.DOTALL if "s" in flags else 0)
    except re.error as exc:
        raise GrammarError(f"invalid regex /{pattern}/: {exc}") from exc
    return "/" + _sequence(tree, "s" in flags, escape) + "/"


def _sequence(items: Any, dotall: bool, escape: bool) -> str:
    return "".join(_node(op, arg, dotall, escape) for op, arg in items)


def _node(op: Any, arg: Any, dotall: bool, escape: bool) -> str:
    if op is sre.LITERAL:
        return _literal(chr(arg), escape)
    if op is sre.NOT_LITERAL:
        return _char_class([(sre.NEGATE, None), (sre.LITERAL, arg)], escape)
    if op is sre.ANY:
        items = [(sre.NEGATE, None), (sre.LITERAL, ord("\n"))] if not dotall else [(sre.CATEGORY, None)]
        return _char_class(items, escape)
    if op is sre.IN:
        return _char_class(arg, escape)
    if op is sre.BRANCH:
        return "(?:" + "|".join(_sequence(branch, dotall, escape) for branch in arg[1]) + ")"
    if op is sre.SUBPATTERN:
        return "(?:" + _sequence(arg[-1], dotall, escape) + ")"
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)):
        low, high, body = arg
        bound = "" if high is sre.MAXREPEAT else str(high)
        return f"(?:{_sequence(body, dotall, escape)}){{{low},{bound}}}"
    if op is sre.AT and arg in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING, sre.AT_END, sre.AT_END_STRING):
        return ""  # a terminal is matched whole: anchors add nothing
    raise GrammarError(f"regex construct {str(op).lower()} is not supported in a constrained custom tool")


def _literal(char: str, escape: bool = True) -> str:
    """The JSON-escaped character (or the character, when not `escape`) as an engine regex: ASCII punctuation (and
    `/`, which ends a Lark regex) written as a code point, since the engine does not accept every escape Python's
    `re.escape` writes."""
    text = json.dumps(char, ensure_ascii=False)[1:-1] if escape else char
    return "".join(c if c.isalnum() or ord(c) > 0x7F else _rs_char(ord(c)) for c in text)


def _char_class(items: list[tuple[Any, Any]], escape: bool = True) -> str:
    """A class as (its plain characters) | (escape sequences of the special characters it holds)."""
    python, engine = _class_sources(items)
    if not escape:
        return engine
    members = re.compile(python, re.DOTALL)
    specials = [c for c in _SPECIAL if members.fullmatch(c)]
    alternatives = [f"[{engine}&&{_PLAIN_CLASS}]"] + [_literal(c) for c in specials]
    return "(?:" + "|".join(alternatives) + ")"


def _class_sources(items: list[tuple[Any, Any]]) -> tuple[str, str]:
    """The class in Python syntax (to test membership) and in the engine's (Rust regex) syntax."""
    negate = ""
    python: list[str] = []
    engine: list[str] = []
    for op, arg in items:
        if op is sre.NEGATE:
            negate = "^"
        elif op is sre.LITERAL:
            python.append(_py_char(arg))
            engine.append(_rs_char(arg))
        elif op is sre.RANGE:
            python.append(f"{_py_char(arg[0])}-{_py_char(arg[1])}")
            engine.append(f"{_rs_char(arg[0])}-{_rs_char(arg[1])}")
        elif op is sre.CATEGORY:
            code = _CATEGORIES.get(arg)
            if code is None:
                raise GrammarError(f"regex class {str(arg).lower()} is not supported")
            python.append(code)
            engine.append(code)
        else:
            raise GrammarError(f"regex class item {str(op).lower()} is not supported")
    return f"[{negate}{''.join(python)}]", f"[{negate}{''.join(engine)}]"


_CATEGORIES = {
    None: r"\s\S",  # any character (the dot with DOTALL)
    sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D", sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S", sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W",
}


def _py_char(code: int) -> str:
    return f"\\U{code:08x}"


def _rs_char(code: int) -> str:
    return f"\\x{{{code:x}}}"
