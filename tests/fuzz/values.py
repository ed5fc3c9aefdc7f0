"""Scalar and JSON values, plausible and hostile, that request fields are drawn from (`Vocab` and its three
flavours), and the markers for values that only take shape when a case runs (deep nesting, references to ids the
server issued)."""

from __future__ import annotations

import re

from hypothesis import strategies as st

from gateway.normalize import MAX_JSON_DEPTH

# A deep value is a marker string replaced after serialization (json.dumps would recurse itself to death).
DEEP_MARKER = re.compile(r'"@@DEEP\.(\d+)\.(\w+)@@"')
# A reference to a stored object is resolved when the case runs, from the pools of ids seen so far: drawn as an
# index, so the data Hypothesis draws stays the same whatever ids the server issued.
REF_MARKER = re.compile(r"@@REF\.(\w+)\.(\d+)@@")

# Valid JSON, hostile content: control characters, NUL, line breaks, bidi overrides, non-characters, markup.
SPECIAL_STRINGS = [
    "", " ", "\x00", "a\x00b", "\r\n", "\n", "\r", "\t", "\x1b[31m", "\x7f", "\x85", "\u2028", "\u2029",
    "\ufeff", "\ufffe", "\uffff", "\U0001f600", "\u202e", "é", "中文", "null", "true", "0", "-1", "{}", "[]",
    "%s%n", "../../etc/passwd", "<script>", "\\", '"', '{"a": 1}', "resp_", "__unknown_item__", "__hosted__",
]
SURROGATES = ["\ud800", "\udfff", "\udbff", "x\udc00y"]  # lone: a JSON escape msgspec refuses, or invalid UTF-8
HOSTILE_INTS = [
    0, -1, 1, 2, 20, 21, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1,
    10**30, -(10**30), 2**200,
]
HOSTILE_FLOATS = [0.0, -0.0, 0.5, 1.5, 2.0000001, -0.1, 1e308, -1e308, 5e-324, 1e-7, float("inf"), float("nan")]
DEPTHS = [MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 200, 5000,
          100_000]
KEYS = ["type", "name", "id", "text", "content", "role", "input", "output", "tools", "model", "call_id", "a", "é", ""]
MALFORMED = [
    "resp_nope", "resp_", "resp_" + "g" * 48, "resp_" + "AB" * 24, "resp_" + "ab" * 24 + "\n", "msg_" + "0" * 47,
    "RESP_" + "ab" * 24, "resp-" + "ab" * 24, "resp_" + "ab" * 25, "x" * 5000, "{tag}", "a:b:{c}", "*", "?",
    "resp_" + "ab" * 24 + "\x00", "%00", "..", ".", "",
]
NAMES = ["exec_command", "apply_patch", "docs", "search", "forbidden", "web_search", "shell", "a\r\nb", "x\ny",
         "tab\tname", "", "é中", "a" * 300, "docs__search", "__", "exec_command\r\nX-Evil: 1"]


def ref(kind: str) -> st.SearchStrategy[str]:
    return st.integers(0, 63).map(lambda k: f"@@REF.{kind}.{k}@@")


def deep() -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(DEPTHS), st.sampled_from(["list", "dict", "mixed"])).map(
        lambda dk: f"@@DEEP.{dk[0]}.{dk[1]}@@"
    )


def repeated(lengths: list[int], chars: list[str]) -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(lengths), st.sampled_from(chars)).map(lambda nc: nc[1] * nc[0])


class Vocab:
    """The values fields are drawn from. `clean` stays inside what the wire types accept (control characters and
    odd unicode included: they are valid JSON); the dirty one adds lone surrogates, numbers beyond every range
    and strings past the body limit."""

    def __init__(self, dirty: bool, surrogates: bool = False) -> None:
        specials = SPECIAL_STRINGS + (SURROGATES if surrogates else [])
        self.S = st.one_of(st.text(max_size=12), st.sampled_from(specials))
        joined = st.lists(st.sampled_from([*specials, "ab", "x"]), min_size=2, max_size=5).map("".join)
        lengths = [300] * 6 + [5000] * 2 + ([70_000, 300_000] if dirty else [])  # past max_body_bytes: 413
        long = repeated(lengths, ["x", "é", "\x00", '"', "中"])
        self.T = st.one_of(*[st.text(max_size=20)] * 8, *[st.sampled_from(specials)] * 5, *[joined] * 4, long)
        if dirty:
            numbers = st.one_of(st.sampled_from(HOSTILE_INTS), st.sampled_from(HOSTILE_FLOATS), st.integers(),
                                st.floats(allow_nan=False, allow_infinity=False))
        else:
            numbers = st.integers(-(2**53), 2**53) | st.floats(-1e6, 1e6)
        self.numbers = numbers
        self.scalars = st.one_of(st.none(), st.booleans(), numbers, self.S)
        self.any_json = st.recursive(
            self.scalars,
            lambda inner: st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        )
        malformed = st.sampled_from(MALFORMED) | (self.S if dirty else st.nothing())
        self.response_ids = st.one_of(*[ref("response")] * 4, ref("background"), ref("unstored"), ref("deleted"),
                                      ref("fresh"), ref("item"), malformed)
        self.item_ids = st.one_of(*[ref("item")] * 3, ref("input_item"), ref("response"), ref("fresh_item"), malformed)
        self.tool_names = st.one_of(*[st.sampled_from(NAMES)] * 3, self.S)
        self.call_ids = st.sampled_from(["call_1", "call_2", "call_ls1", "call_x"]) | self.S


CLEAN, DIRTY, SURROGATE = Vocab(dirty=False), Vocab(dirty=True), Vocab(dirty=True, surrogates=True)
TEXTS, SHORT_TEXTS, SCALARS, ANY_JSON = SURROGATE.T, SURROGATE.S, SURROGATE.scalars, SURROGATE.any_json
HOSTILE = st.one_of(SCALARS, ANY_JSON, deep(), st.just([]), st.just({}), TEXTS)
MALFORMED_IDS = st.sampled_from(MALFORMED) | SHORT_TEXTS

ROLES = ["user", "assistant", "system", "developer"]
UNKNOWN_TYPES = ["web_search_call", "compaction", "file_search_call", "mcp_call", "image_generation_call",
                 "computer_call_output", "mcp_list_tools", "made_up_call", "__unknown_item__", "__hosted__",
                 "__unknown_tool__", "__unknown_part__", ""]
