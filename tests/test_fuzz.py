"""Property-based fuzzing: client input never produces a 5xx.

Hypothesis generates request bodies for `POST /v1/responses` (and `/v1/responses/input_tokens`) and
`POST /v1/chat/completions`, requests to the stored-response routes (GET, `?stream=true` replays, DELETE,
`input_items`, cancel) and to the Conversations API with random ids and query parameters, and raw bodies that are
not JSON or not objects. Every field the wire types accept is covered
(`gateway/protocol.py` `ResponsesRequest`, every item, content part and tool type, `gateway/chat/protocol.py`),
with plausible values and hostile ones: wrong types, nulls, huge/negative/float/bool numbers, integers beyond
64 bits, nesting around and far beyond `normalize.MAX_JSON_DEPTH`, control characters, NUL and lone surrogates
(as JSON escapes and as raw bytes), unknown item/part/tool types, empty lists, long strings, tool names with
CR/LF, every `tool_choice` shape, ids of stored, deleted, unknown and malformed responses, items and
conversations, streaming and background variants (a slow model keeps background runs going while later cases
poll, replay, cancel and chain on them).

Every case must satisfy: status < 500; every non-2xx body is the OpenAI error envelope, and a 4xx is never typed
`server_error`; a streamed response ends with exactly one terminal event (chat: one `data: [DONE]`) and never
fails; nothing is logged at error level; and afterwards the server still answers a normal request. Most cases run
in-process (a litestar `TestClient`); the last test replays a few hundred against a real uvicorn server on
127.0.0.1, where header problems would show.

Runs are reproducible for a given commit (`derandomize=True`, no example database; Hypothesis also mixes constants
it finds in the project's source into what it draws, so a change to the code changes the sample). About 8,000
cases in ~45 s. Each test prints a one-line summary (cases, statuses, 5xx count) whatever pytest's capture mode,
so CI output shows what was run. `MLXGW_FUZZ_RANDOM=1` (fresh examples) and `MLXGW_FUZZ_SCALE=N` (N times as
many) hunt further.

Defects this suite found are pinned by tests/test_fuzz_regressions.py; none is tolerated here.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import tempfile
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# Hypothesis caches what it learns about the code under test (`.hypothesis/constants`) in its storage
# directory, by default under the working directory: keep it out of the repository.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "mlxgw-hypothesis"))

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from structlog.testing import capture_logs

from gateway.app import create_app
from gateway.normalize import MAX_JSON_DEPTH
from gateway.protocol import HOSTED_TOOL_TYPES
from tests.conftest import FIGURES, make_config, serve
from tests.sse import chat_chunks, response_events

pytestmark = pytest.mark.timeout(600)

MANIFEST = """
server:
  keepalive_seconds: 0.2
  max_body_bytes: 262144      # long strings cross it now and then: 413
  max_input_items: 24
  max_tools: 12
store:
  max_chain_depth: 6          # chains from the id pool reach it: 400
policies:
  strict:
    tools: {custom: reject, local_shell: drop, names: {forbidden: reject}, types: {web_search: drop}}
    items: {unknown: reject, reasoning: drop, images: reject}
  dropper:
    tools: {hosted: drop, unknown: drop, namespace: drop}
    items: {unknown: drop}
clients:
  - name: codex
    match: {originator: "^codex"}
    policy: dropper
  - name: strict-cli
    match: {user-agent: "^strict/"}
    policy: strict
    models: [scripted]
models:
  - name: scripted
    aliases: [demo]
    adapter: scripted
    script:
      chunk_chars: 4
      steps:
        - reasoning: "I should run a command."
          text: "Running it."
          calls:
            - {function: exec_command, arguments: {cmd: "echo hi"}}
            - {custom: apply_patch, input: "*** Begin Patch\\n*** Add File: a.txt\\n+hi\\n*** End Patch\\n"}
        - text: "Searching."
          calls: [{function: docs__search, arguments: '{"q": "x"}'}, {function: exec_command, arguments: "not json"}]
        - reasoning: "done"
          text: "The command printed hi."
  - name: echo
    adapter: scripted
    script: {mode: echo, chunk_chars: 700}
  - name: slow                # background runs still going while later cases poll, replay, cancel and chain
    adapter: scripted
    script: {chunk_chars: 1, delay_ms: 4, first_delay_ms: 250, steps: [{reasoning: "hmm", text: "%s"}]}
  - name: strict
    adapter: scripted
    policy: strict
    script: {chunk_chars: 2, steps: [{text: "ok", calls: [{custom: apply_patch, input: "x"}]}]}
""" % ("y" * 40)

MODELS = ["scripted", "demo", "echo", "strict"]
# CI runs the fixed seed; to hunt further, MLXGW_FUZZ_RANDOM=1 draws fresh examples and MLXGW_FUZZ_SCALE=N runs
# N times as many.
SCALE = float(os.environ.get("MLXGW_FUZZ_SCALE", "1"))
SETTINGS: dict[str, Any] = {
    "derandomize": os.environ.get("MLXGW_FUZZ_RANDOM", "") in ("", "0"),
    "database": None,  # nothing written into the repository
    "deadline": None,
    "print_blob": False,
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
    "suppress_health_check": list(HealthCheck),  # big composite examples are slow on purpose
}
REQUEST_TIMEOUT = 30.0  # seconds; a request taking longer is a hang

# ----------------------------------------------------------------------------------------------- strategies

# A deep value is a marker string replaced after serialization (json.dumps would recurse itself to death).
_DEEP = re.compile(r'"@@DEEP\.(\d+)\.(\w+)@@"')
# A reference to a stored object is resolved when the case runs, from the pools of ids seen so far: drawn as an
# index, so the data Hypothesis draws stays the same whatever ids the server issued.
_REF = re.compile(r"@@REF\.(\w+)\.(\d+)@@")

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
        joined = st.lists(st.sampled_from(specials + ["ab", "x"]), min_size=2, max_size=5).map("".join)
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

ABSENT = object()


ROLL = st.integers(0, 99)
EXTRA_KEYS = st.sampled_from(KEYS) | st.text(max_size=6)
_STRATEGIES: dict[tuple[int, str], st.SearchStrategy[Any]] = {}


MODES = st.sampled_from(["clean"] * 10 + ["single"] * 7 + ["chaos"] * 3)
TARGETS = st.integers(1, 12)


@dataclass
class Gen:
    """Draw helper for one request body, in one of three modes:

    * `clean`: every field plausible (odd unicode, control characters and NUL included: valid JSON);
    * `single`: the same, except exactly one spot (the `target`-th decision in the `fault` section) gets a
      hostile value, a null, or loses a required field, so the request gets past everything else and reaches
      deep code with one fault;
    * `chaos`: hostile values anywhere (6% of the decisions), from a vocabulary with lone surrogates, numbers
      beyond every range and strings past the body limit.
    """

    draw: Callable[[st.SearchStrategy[Any]], Any]
    mode: str
    surrogates: bool = False
    fault: str = ""
    target: int = 0
    section: str = ""
    decisions: int = 0

    @classmethod
    def start(cls, draw: Callable[[st.SearchStrategy[Any]], Any], sections: st.SearchStrategy[str]) -> Gen:
        g = cls(draw, draw(MODES))
        g.surrogates = g.dirty and g.chance(25)
        if g.mode == "single":
            g.fault, g.target = draw(sections), draw(TARGETS)
        return g

    @contextlib.contextmanager
    def within(self, section: str) -> Iterator[None]:
        outer, self.section = self.section, section
        try:
            yield
        finally:
            self.section = outer

    @property
    def dirty(self) -> bool:
        return self.mode == "chaos"

    @property
    def v(self) -> Vocab:
        return (SURROGATE if self.surrogates else DIRTY) if self.dirty else CLEAN

    def corrupt(self, percent: int = 6) -> bool:
        """Whether this decision goes hostile."""
        if self.mode == "single":
            if self.section != self.fault:
                return False
            self.decisions += 1
            return self.decisions == self.target
        return self.dirty and self.chance(percent)

    def s(self, name: str, build: Callable[[Vocab], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
        """The strategy `build(vocabulary)`, built once per vocabulary (building and validating strategies
        per draw would cost more than the requests)."""
        key = (id(self.v), name)
        strategy = _STRATEGIES.get(key)
        if strategy is None:
            strategy = _STRATEGIES[key] = build(self.v)
        return strategy

    def pick(self, name: str, build: Callable[[Vocab], st.SearchStrategy[Any]]) -> Any:
        return self.draw(self.s(name, build))

    def chance(self, percent: int) -> bool:
        """True `percent`% of the time; Hypothesis's simplest draw (0) means False."""
        return bool(self.draw(ROLL) >= 100 - percent)

    def value(self, strategy: Any, *, optional: bool = True, absent: int = 40) -> Any:
        """A field's value: ABSENT (if `optional`), hostile (see `corrupt`), or drawn from `strategy` (a
        strategy, a function drawing it, or a constant)."""
        if self.corrupt():
            roll = self.draw(ROLL)
            return None if roll >= 80 else ABSENT if roll >= 70 and not optional else self.draw(HOSTILE)
        if optional and self.chance(absent):
            return ABSENT
        if isinstance(strategy, st.SearchStrategy):
            return self.draw(strategy)
        return strategy() if callable(strategy) else strategy

    def obj(self, fixed: dict[str, Any], fields: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
        out = dict(fixed)
        for name, strategy in fields.items():
            value = self.value(strategy, optional=name not in required)
            if value is not ABSENT:
                out[name] = value
        if self.corrupt(3):
            out[self.draw(EXTRA_KEYS)] = self.draw(HOSTILE)
        return out

    def items_of(self, make: Callable[[], Any], max_size: int) -> list[Any]:
        return [make() for _ in range(self.draw(SIZES[max_size]))]


SIZES = [st.integers(0, n) for n in range(8)]
BOOLS = st.booleans()
OPT_BOOLS = st.booleans() | st.none()

# --- content parts

INPUT_PART_KINDS = st.sampled_from(["input_text", "input_image", "input_file", "output_text", "refusal",
                                    "reasoning_text", "summary_text", "unknown"])
OUTPUT_PART_KINDS = st.sampled_from(["output_text", "refusal", "input_text", "output_text", "refusal",
                                     "reasoning_text", "summary_text", "unknown"])


IMAGE_URLS = ["data:image/png;base64,AA", "https://example.invalid/a.png", ""]


def content_part(g: Gen, *, output: bool = False) -> Any:
    if g.corrupt(3):
        return g.draw(HOSTILE)
    kind = g.draw(OUTPUT_PART_KINDS if output else INPUT_PART_KINDS)
    v = g.v
    if kind == "input_text":
        return g.obj({"type": kind}, {"text": v.T}, required=("text",))
    if kind == "input_image":
        return g.obj({"type": kind}, {
            "image_url": g.s("image_url", lambda v: st.sampled_from(IMAGE_URLS) | v.S),
            "file_id": v.S, "detail": g.s("detail", lambda v: st.sampled_from(["auto", "low", "high"]) | v.S),
        })
    if kind == "input_file":
        return g.obj({"type": kind}, {"file_data": v.S, "file_url": v.S, "file_id": v.S, "filename": v.T})
    if kind == "output_text":
        json_list = g.s("json_list", lambda v: st.lists(v.any_json, max_size=2))
        return g.obj({"type": kind}, {"text": v.T, "annotations": json_list, "logprobs": json_list}, required=("text",))
    if kind == "refusal":
        return g.obj({"type": kind}, {"refusal": v.T}, required=("refusal",))
    if kind in ("reasoning_text", "summary_text"):
        return g.obj({"type": kind}, {"text": v.T}, required=("text",))
    unknown = g.pick("unknown_part_type", lambda v: st.sampled_from(UNKNOWN_TYPES + ["image", "audio"]) | v.S)
    return g.obj({"type": unknown}, {"text": v.T, "data": v.any_json})


def parts(g: Gen, *, output: bool = False, max_size: int = 3) -> list[Any]:
    return g.items_of(lambda: content_part(g, output=output), max_size)


def content(g: Gen, *, output: bool = False) -> Any:
    return g.draw(g.v.T) if g.chance(50) else parts(g, output=output)


# --- input items

ARGUMENTS = ['{"cmd": "ls"}', "{}", "", "not json", '{"input": "x"}']
ITEM_KINDS = st.sampled_from(
    ["message", "message", "short", "short", "function_call", "function_call_output", "custom_tool_call",
     "custom_tool_call_output", "local_shell_call", "local_shell_call_output", "reasoning", "item_reference",
     "unknown"]
)


def input_item(g: Gen) -> Any:
    v = g.v
    if g.corrupt(3):
        return g.pick("odd_item", lambda v: st.one_of(
            v.scalars, st.lists(v.scalars, max_size=2), st.just({}), st.just({"type": None}), st.just({"type": 5}),
            st.just({"content": "no role, no type"})))
    kind = g.draw(ITEM_KINDS)
    status = g.s("status", lambda v: st.sampled_from(["completed", "in_progress", "incomplete"]) | v.S)
    if kind in ("message", "short"):
        if g.corrupt(3):
            role = g.pick("dirty_role", lambda v: st.sampled_from(ROLES * 3 + ["tool", "", "USER"]) | v.scalars)
        else:
            role = g.pick("role", lambda v: st.sampled_from(ROLES))
        fixed = {"type": "message", "role": role} if kind == "message" else {"role": role}
        return g.obj(fixed, {"content": lambda: content(g, output=role == "assistant"),
                             "id": v.item_ids, "status": status, "phase": v.S}, required=("content",))
    if kind == "function_call":
        return g.obj({"type": kind}, {
            "call_id": v.call_ids, "name": v.tool_names,
            "arguments": g.s("arguments", lambda v: st.sampled_from(ARGUMENTS) | v.T),
            "id": v.item_ids, "status": status,
            "namespace": g.s("namespace", lambda v: st.sampled_from(["docs", ""]) | v.S),
        }, required=("call_id", "name", "arguments"))
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = parts(g) if g.chance(30) else g.draw(v.T)
        return g.obj({"type": kind, "output": output}, {"call_id": v.call_ids, "id": v.item_ids, "status": status},
                     required=("call_id",))
    if kind == "custom_tool_call":
        return g.obj({"type": kind}, {"call_id": v.call_ids, "name": v.tool_names, "input": v.T, "id": v.item_ids,
                                      "status": status, "namespace": v.S},
                     required=("call_id", "name", "input"))
    if kind == "local_shell_call":
        action = g.s("action", lambda v: st.fixed_dictionaries(
            {"type": st.just("exec"), "command": st.lists(v.S, max_size=3)}) | v.any_json)
        return g.obj({"type": kind}, {"call_id": v.call_ids, "action": action, "id": v.item_ids, "status": status},
                     required=("call_id", "action"))
    if kind == "local_shell_call_output":
        return g.obj({"type": kind}, {"id": v.call_ids, "output": v.T, "status": status}, required=("id", "output"))
    if kind == "reasoning":
        summary = g.s("summary", lambda v: st.lists(
            st.fixed_dictionaries({"type": st.just("summary_text"), "text": v.S}), max_size=2))
        reasoning_content = g.s("reasoning_content", lambda v: st.none() | st.lists(
            st.fixed_dictionaries({"type": st.just("reasoning_text"), "text": v.S}), max_size=2))
        return g.obj({"type": kind}, {"summary": summary, "content": reasoning_content, "id": v.item_ids,
                                      "encrypted_content": g.s("opt_S", lambda v: st.none() | v.S), "status": status})
    if kind == "item_reference":
        return g.obj({"type": kind}, {"id": v.item_ids}, required=("id",))
    unknown = g.pick("unknown_item_type", lambda v: st.sampled_from(UNKNOWN_TYPES) | v.S)
    return g.obj({"type": unknown}, {"id": v.item_ids, "call_id": v.call_ids, "action": v.any_json, "output": v.T,
                                     "text": v.T, "encrypted_content": v.S})


# --- tools

SCHEMAS = st.sampled_from([
    {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    {"type": "object"},
    {},
    {"type": "object", "properties": {"x": {"$ref": "#/definitions/x"}}, "definitions": {"x": {"type": "integer"}}},
])
TOOL_KINDS = st.sampled_from(["function", "function", "custom", "namespace", "local_shell", "hosted", "unknown"])
FORMATS = st.sampled_from([
    {"type": "text"},
    {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
    {"type": "grammar", "syntax": "regex", "definition": "^a+$"},
    {"type": "grammar", "definition": 5},
]) | st.none()
HOSTED_TYPES = st.sampled_from(sorted(HOSTED_TOOL_TYPES))


def schema(g: Gen) -> Any:
    if not g.corrupt(20):
        return g.draw(SCHEMAS)
    return g.pick("schema", lambda v: SCHEMAS | st.dictionaries(st.sampled_from(KEYS), v.any_json, max_size=3) | deep())


def tool(g: Gen, *, depth: int = 0) -> Any:
    v = g.v
    if g.corrupt(3):
        return g.pick("odd_tool", lambda v: st.one_of(
            v.scalars, st.just({}), st.just({"type": None}), st.just({"type": ["function"]})))
    kind = g.draw(TOOL_KINDS)
    description = g.s("opt_T", lambda v: st.none() | v.T)
    if kind == "function":
        return g.obj({"type": kind}, {"name": v.tool_names, "description": description,
                                      "parameters": lambda: schema(g), "strict": OPT_BOOLS},
                     required=("name",))
    if kind == "custom":
        return g.obj({"type": kind}, {"name": v.tool_names, "description": description, "format": FORMATS},
                     required=("name",))
    if kind == "namespace":
        children = [] if depth > 1 else g.items_of(lambda: tool(g, depth=depth + 1), 3)
        return g.obj({"type": kind, "tools": children}, {"name": v.tool_names, "description": v.S},
                     required=("name",))
    if kind == "local_shell":
        return {"type": kind}
    if kind == "hosted":
        return g.obj({"type": g.draw(HOSTED_TYPES)},
                     {"name": v.tool_names, "server_label": v.tool_names, "server_url": v.S, "filters": v.any_json,
                      "vector_store_ids": g.s("S_list", lambda v: st.lists(v.S, max_size=2))})
    unknown = g.pick("unknown_tool_type", lambda v: st.sampled_from(UNKNOWN_TYPES) | v.S)
    return g.obj({"type": unknown}, {"name": v.tool_names, "x": v.any_json})


CHOICE_STRINGS = st.sampled_from(["none", "auto", "required"])
CHOICE_KINDS = st.sampled_from(["string", "function", "custom", "allowed", "allowed", "hosted", "odd"])
ALLOWED_TYPES = st.sampled_from(["function", "custom", "mcp"])
HOSTED_CHOICES = st.sampled_from(["web_search", "file_search", "mcp", "image_generation"])


def tool_choice(g: Gen) -> Any:
    with g.within("tool_choice"):
        return _tool_choice(g)


def _tool_choice(g: Gen) -> Any:
    v = g.v
    kind = g.draw(CHOICE_KINDS)
    if kind == "string":
        if g.corrupt(30):
            return g.draw(g.v.S)
        return g.draw(CHOICE_STRINGS)
    if kind in ("function", "custom"):
        return g.obj({"type": kind}, {"name": v.tool_names}, required=("name",))
    if kind == "allowed":
        def entry() -> Any:
            if g.corrupt(5):
                return g.draw(HOSTILE)
            return g.obj({}, {"type": ALLOWED_TYPES, "name": v.tool_names}, required=("type", "name"))

        mode = g.s("mode", lambda v: st.sampled_from(["auto", "required", "none"]) | v.scalars)
        return g.obj({"type": "allowed_tools"}, {"mode": mode, "tools": lambda: g.items_of(entry, 3)},
                     required=("mode", "tools"))
    if kind == "hosted":
        return {"type": g.draw(HOSTED_CHOICES)}
    if not g.corrupt(50):
        return "auto"
    return g.pick("odd_choice", lambda v: st.dictionaries(st.sampled_from(KEYS), v.any_json, max_size=3) | HOSTILE)


# --- whole requests

SMALL_INTS = st.integers(1, 40) | st.sampled_from([1, 2, 3, 4096, 2**31])
RESPONSE_MODELS = st.sampled_from(MODELS * 8 + ["nope", "", "SCRIPTED", "echo\n", "a" * 300])
TEMPERATURES = st.floats(0, 2) | st.sampled_from([0, 1, 2])
TEXT_CONFIGS = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from([{"type": "text"}, {"type": "json_object"},
                               {"type": "json_schema", "name": "x", "schema": {"type": "object"}}]),
    "verbosity": st.sampled_from(["low", "medium", "high"]) | st.none()})
REASONING_CONFIGS = st.fixed_dictionaries({}, optional={
    "effort": st.sampled_from(["none", "minimal", "low", "medium", "high"]) | st.none(),
    "summary": st.sampled_from(["auto", "concise", "detailed"]) | st.none(),
    "generate_summary": st.sampled_from(["auto"]) | st.none()})
METADATA = st.one_of(*[st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4)] * 3,
                     st.dictionaries(st.text(max_size=70), st.text(max_size=600), max_size=17))
UNIT_FLOATS = st.floats(0, 1)
TOP_LOGPROBS = st.integers(0, 20)
TRUNCATIONS = st.sampled_from(["auto", "disabled"])
SERVICE_TIERS = st.sampled_from(["auto", "default", "flex", "priority"])
CALL_TYPES = st.sampled_from(["function", "custom"])
CHAT_TOOL_TYPES = st.sampled_from(["function", "custom", "web_search"])
STREAM_OPTIONS = st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}) | st.none()


@st.composite
def responses_bodies(draw: Any) -> dict[str, Any]:
    g = Gen.start(draw, RESPONSE_SECTIONS)
    v = g.v
    with g.within("fields"):
        body = top_level_fields(g)
    with g.within("input"):
        if not g.chance(15):
            body["input"] = g.draw(v.T) if g.chance(25) else g.items_of(lambda: input_item(g), 6)
        if g.corrupt(5):
            body["input"] = g.draw(HOSTILE)
    with g.within("tools"):
        if g.chance(55):
            body["tools"] = g.items_of(lambda: tool(g), 5)
        if g.corrupt(5):
            body["tools"] = g.draw(HOSTILE)
    with g.within("previous"):
        if g.chance(30) and (previous := g.value(v.response_ids, optional=False)) is not ABSENT:
            body["previous_response_id"] = previous
    if body.get("background") is True and g.chance(50):
        body["model"] = "slow"
        if body.get("stream") is True and not g.chance(10):
            body["stream"] = False
    with g.within("conversation"):
        if g.chance(15) and (conversation := g.value(CONVERSATION_REFS, optional=False)) is not ABSENT:
            body["conversation"] = conversation
            if not g.chance(20):
                body.pop("previous_response_id", None)  # together they are a 400
    return body


CONVERSATION_REFS = st.one_of(*[ref("conversation")] * 5, ref("conversation").map(lambda r: {"id": r}),
                              ref("deleted_conversation"), ref("response"),
                              st.sampled_from(["conv_1", "conv_" + "ab" * 24, {"id": 5}, {"name": "x"}, ""]))

RESPONSE_SECTIONS = st.sampled_from(["fields"] * 2 + ["tool_choice"] * 2 + ["input"] * 3 + ["tools"] * 3
                                    + ["previous", "conversation"])
CHAT_SECTIONS = st.sampled_from(["fields", "messages", "messages", "tools"])


def top_level_fields(g: Gen) -> dict[str, Any]:
    v = g.v
    return g.obj({}, {
        "model": RESPONSE_MODELS,
        "instructions": g.s("opt_T", lambda v: st.none() | v.T),
        "stream": BOOLS,
        "store": BOOLS,
        "background": BOOLS if g.chance(25) else False,
        "tool_choice": lambda: tool_choice(g),
        "parallel_tool_calls": BOOLS,
        "max_output_tokens": SMALL_INTS,
        "max_tool_calls": SMALL_INTS,
        "temperature": TEMPERATURES,
        "top_p": UNIT_FLOATS,
        "top_logprobs": TOP_LOGPROBS,
        "text": TEXT_CONFIGS,
        "reasoning": REASONING_CONFIGS,
        "include": g.s("include", lambda v: st.lists(
            st.sampled_from(["reasoning.encrypted_content", "message.output_text.logprobs"]) | v.S, max_size=3)),
        "truncation": TRUNCATIONS,
        "metadata": METADATA,
        "prompt_cache_key": v.S, "safety_identifier": v.S, "user": v.S,
        "service_tier": SERVICE_TIERS,
        "unknown_field": v.any_json,
    }, required=("model",))


CHAT_PART_KINDS = st.sampled_from(["text", "text", "image_url", "image_str", "other"])
CHAT_ROLES = ["user", "assistant", "system", "developer", "tool", "function"]
CHAT_MODELS = st.sampled_from(MODELS * 8 + ["nope", ""])


@st.composite
def chat_bodies(draw: Any) -> dict[str, Any]:
    g = Gen.start(draw, CHAT_SECTIONS)
    v = g.v

    def chat_part() -> Any:
        kind = g.draw(CHAT_PART_KINDS)
        if kind == "text":
            return g.obj({"type": "text"}, {"text": v.T}, required=("text",))
        if kind == "image_url":
            image = g.s("chat_image", lambda v: st.fixed_dictionaries({"url": v.S}) | v.any_json)
            return g.obj({"type": "image_url"}, {"image_url": image}, required=("image_url",))
        if kind == "image_str":
            return {"type": "image_url", "image_url": g.draw(v.S)}
        other = g.pick("chat_part_type", lambda v: st.sampled_from(["input_audio", "file", "refusal"]) | v.scalars)
        return g.obj({"type": other}, {"x": v.any_json})

    def tool_call() -> Any:
        arguments = g.s("chat_arguments", lambda v: st.sampled_from(['{"cmd": "ls"}', "{}", "bad"]) | v.T)
        function = g.obj({}, {"name": v.tool_names, "arguments": arguments}, required=("name",))
        return g.obj({}, {"id": v.call_ids, "type": CALL_TYPES, "function": function},
                     required=("id", "function"))

    def message() -> Any:
        if g.corrupt(3):
            role = g.pick("chat_dirty_role", lambda v: st.sampled_from(CHAT_ROLES * 5 + ["", "USER", None, 5]))
        else:
            role = g.pick("chat_role", lambda v: st.sampled_from(CHAT_ROLES))
        chat_content = (lambda: g.items_of(chat_part, 3)) if g.chance(40) else g.s("opt_T2", lambda v: v.T | st.none())
        fields: dict[str, Any] = {"content": chat_content, "name": g.s("chat_name", lambda v: v.S | v.tool_names)}
        if role == "assistant" or g.chance(10):
            fields["tool_calls"] = lambda: g.items_of(tool_call, 3)
            fields["reasoning_content"] = g.s("opt_T", lambda v: st.none() | v.T)
        fixed = {"role": role}
        if role in ("tool", "function") and not g.chance(10):
            fixed["tool_call_id"] = g.draw(v.call_ids)
        elif g.chance(10):
            fields["tool_call_id"] = v.call_ids
        return g.obj(fixed, fields)

    def chat_tool() -> Any:
        function = g.obj({}, {"name": v.tool_names, "description": g.s("opt_T", lambda v: st.none() | v.T),
                              "parameters": lambda: schema(g), "strict": BOOLS},
                         required=("name",))
        return g.obj({}, {"type": CHAT_TOOL_TYPES, "function": function},
                     required=("function",))

    def choices(v: Vocab) -> st.SearchStrategy[Any]:
        named = st.fixed_dictionaries({"type": st.sampled_from(["function"] * 4 + ["custom"]),
                                       "function": st.fixed_dictionaries({"name": v.tool_names})})
        return st.sampled_from(["none", "auto", "required"]) | named | (v.any_json if v is not CLEAN else named)

    g.section = "fields"
    body = g.obj({}, {
        "model": CHAT_MODELS,
        "tool_choice": g.s("chat_choice", choices), "parallel_tool_calls": BOOLS,
        "max_tokens": SMALL_INTS,
        "max_completion_tokens": SMALL_INTS,
        "temperature": TEMPERATURES, "top_p": UNIT_FLOATS,
        "stop": g.s("stop", lambda v: v.S | st.lists(v.S, max_size=3) | st.none()),
        "stream": OPT_BOOLS,
        "stream_options": STREAM_OPTIONS,
        "n": 1, "reasoning_effort": g.s("effort", lambda v: st.sampled_from(["low", "high", "none"]) | v.S),
        "user": v.S, "logprobs": BOOLS, "seed": v.numbers, "response_format": v.any_json,
    }, required=("model",))
    g.section = "messages"
    size = 1 + g.draw(SIZES[5]) if not g.corrupt(3) else 0
    body["messages"] = [message() for _ in range(size)] if not g.corrupt(3) else g.draw(HOSTILE)
    g.section = "tools"
    if g.chance(50):
        body["tools"] = g.items_of(chat_tool, 4) if not g.corrupt(5) else g.draw(HOSTILE)
    return body


# --- cases: what one example sends


@dataclass
class Case:
    method: str
    path: str
    body: Any = None  # a JSON value (serialized when the case runs) ...
    raw: bytes | None = None  # ... or bytes sent as they are
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    ascii_only: bool = True
    path_id: str | None = None  # replaces `{id}` in `path` once references resolve, URL-quoted ...
    quote_slash: bool = True  # ... "/" included
    path_item: str | None = None  # replaces `{item}` the same way


# printable ASCII without padding: httpx (h11) refuses to send anything else
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).map(str.strip)


@st.composite
def headers(draw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if draw(st.integers(0, 9)) < 2:
        out["originator"] = draw(st.sampled_from(["codex_cli_rs", "codex", "opencode"]) | HEADER_VALUES)
    if draw(st.integers(0, 9)) < 2:
        out["user-agent"] = draw(st.sampled_from(["strict/1.0", "opencode/1"]) | HEADER_VALUES)
    if draw(st.integers(0, 9)) < 1:
        out["x-request-id"] = draw(HEADER_VALUES)
    return out


def json_case(paths: st.SearchStrategy[str], bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[Case]:
    return st.builds(lambda path, body, ascii_only, hdrs: Case("POST", path, body=body, ascii_only=ascii_only,
                                                               headers=hdrs),
                     paths, bodies, st.booleans(), headers())


def responses_cases() -> st.SearchStrategy[Case]:
    """Create bodies, also sent to `/v1/responses/input_tokens` (the same preparation, nothing generated)."""
    return json_case(st.sampled_from(["/v1/responses"] * 9 + ["/v1/responses/input_tokens"]), responses_bodies())


def chat_cases() -> st.SearchStrategy[Case]:
    return json_case(st.just("/v1/chat/completions"), chat_bodies())


QUERY_VALUES = st.one_of(
    st.sampled_from(["1", "0", "-1", "-2", "20", "100", "101", "1.5", "", " 5", "5 ", "1_0", "٣", "0x10", "1e3",
                     "true", "TRUE", "false", "yes", "no", "1", "on", "asc", "desc", "ASC", "null",
                     str(2**63), str(2**64), str(2**64 - 2), str(10**30), "9" * 5000, "-" + "9" * 30]),
    SHORT_TEXTS, ref("input_item"), ref("item"),
)


STORED_IDS = st.one_of(*[ref("response")] * 6, *[ref("background")] * 2, ref("item"), ref("unstored"),
                        ref("deleted"), ref("fresh"), MALFORMED_IDS, MALFORMED_IDS)
STORED_OPS = st.sampled_from(["get"] * 4 + ["replay"] * 4 + ["input_items"] * 4 + ["cancel"] * 2 + ["delete", "odd"])
ODD_METHODS = st.sampled_from(["PUT", "PATCH", "OPTIONS", "HEAD", "TRACE", "POST", "DELETE", "GET"])
ODD_PATHS = st.sampled_from(["/v1/responses/{id}", "/v1/responses/{id}/input_items", "/v1/responses/{id}/cancel",
                             "/v1/responses", "/v1/chat/completions", "/v1/responses/{id}/", "/v1/responses/{id}/x",
                             "//v1/responses/{id}", "/v1/responses/{id}/input_items/{id}"])


@st.composite
def stored_cases(draw: Any) -> Case:
    op = draw(STORED_OPS)
    response_id = draw(ref("background") if op in ("replay", "cancel") and draw(st.booleans()) else STORED_IDS)
    base = "/v1/responses/{id}"
    if op == "odd":
        path, method = draw(ODD_PATHS), draw(ODD_METHODS)
    else:
        path, method = {
            "get": (base, "GET"), "replay": (base, "GET"), "input_items": (base + "/input_items", "GET"),
            "delete": (base, "DELETE"), "cancel": (base + "/cancel", "POST"),
        }[op]
    names = {"get": ["stream", "starting_after"], "replay": ["starting_after"], "odd": ["stream"],
             "input_items": ["limit", "order", "after", "include"], "delete": [], "cancel": []}[op]
    params: list[tuple[str, str]] = []
    if op == "replay":
        params.append(("stream", draw(st.sampled_from(["true", "1", "yes", "True"]))))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(names * 4 + ["stream", "limit", "foo", "include[]"]) | SHORT_TEXTS)
        params.append((name, draw(QUERY_VALUES)))
    body = draw(st.none() | st.just({}) | ANY_JSON) if method == "POST" else None
    return Case(method, path, body=body, params=params, path_id=response_id, quote_slash=draw(st.integers(0, 9)) > 0)


RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([
        b"", b" ", b"null", b"true", b"0", b"-1", b'"string"', b"[]", b'[{"model": "echo"}]', b"{", b"}", b"{}",
        b'{"model": "echo", "input": "x"', b'{"model": "echo", "input": "x"} trailing', b'{"model": "echo",}',
        b"\xef\xbb\xbf{\"model\": \"echo\", \"input\": \"bom\"}", b'{"model": "echo", "input": "\xff\xfe"}',
        b'{"model": "echo", "input": "\xed\xa0\x80"}', b'{"model": "echo", "input": "\\ud800"}',
        b'{"model": "echo", "input": "\\udc00\\ud800"}', b'{"\\ud800": 1, "model": "echo", "input": "x"}',
        b'{"model": "echo", "input": "x", "temperature": 1e400}', b'{"model": "echo", "input": "x", "top_p": -1e-400}',
        b'{"model": "echo", "input": "x", "max_output_tokens": 1e3}',
        b'{"model": "echo", "input": "x", "temperature": NaN}',
        b'{"model": "echo", "input": "x", "max_output_tokens": 12345678901234567890123456789}',
        b'{"model": "echo", "input": "x", "metadata": {"k": 1' + b"0" * 5000 + b"}}",
        b'{"model": "echo", "input": "x", "unknown": ' + b"9" * 5000 + b"}",
        b'{"model": "echo", "model": 5, "input": "x"}', b'{"model": "echo", "input": "x", "input": 7}',
        b'{"model": "echo", "input": "\\u0000\\u001f\\u007f"}', b"{'model': 'echo'}", b'{"model": echo}',
        b'{"model": "echo", "input": "x"}\x00', b"\x00" * 16,
        '{"model": "echo", "input": "é中"}'.encode("utf-16"),
        b'{"model": "echo", "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": true}',
    ]),
    st.tuples(st.sampled_from(DEPTHS), st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"k":', "}]")])).map(
        lambda dk: (dk[1][0] * dk[0] + "1" + dk[1][1] * dk[0]).encode()
    ),
    st.tuples(st.sampled_from(DEPTHS), st.booleans()).map(
        lambda dv: (b'{"model": "echo", "input": "x", "metadata": ' + b"[" * dv[0] + b"]" * dv[0] + b"}")
        if dv[1] else b"[" * dv[0]
    ),
)


@st.composite
def raw_cases(draw: Any) -> Case:
    path = draw(st.sampled_from(["/v1/responses", "/v1/responses", "/v1/chat/completions", "/v1/chat/completions",
                                 "/v1/responses/@@REF.background.0@@/cancel"]))
    content_type = draw(st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain",
                                         "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                         "application/octet-stream", ""]))
    return Case("POST", path, raw=draw(RAW_BODIES), headers={"content-type": content_type} if content_type else {})


CONVERSATION_OPS = st.sampled_from(["create"] * 3 + ["get"] * 2 + ["update"] + ["items"] * 3 + ["add"] * 2
                                   + ["item"] * 2 + ["delete_item", "delete", "odd"])
CONVERSATION_IDS = st.one_of(*[ref("conversation")] * 6, ref("deleted_conversation"), ref("response"),
                             ref("fresh_conversation"), MALFORMED_IDS)
CONVERSATION_ITEM_IDS = st.one_of(*[ref("conv_item")] * 4, ref("item"), ref("fresh_item"), MALFORMED_IDS)
CONVERSATION_PATHS = ["/v1/conversations", "/v1/conversations/{id}", "/v1/conversations/{id}/items",
                      "/v1/conversations/{id}/items/{item}", "/v1/conversations/{id}/items/{item}/x",
                      "/v1/conversations/{id}/"]


@st.composite
def conversation_bodies(draw: Any, *, items: bool, metadata: bool) -> Any:
    g = Gen.start(draw, st.sampled_from(["items", "metadata", "body"]))
    body: dict[str, Any] = {}
    with g.within("items"):
        if items and not g.chance(10):
            body["items"] = g.items_of(lambda: input_item(g), 5)
        if g.corrupt(10):
            body["items"] = g.draw(HOSTILE)
    with g.within("metadata"):
        if (metadata or g.chance(40)) and (value := g.value(METADATA, optional=not metadata)) is not ABSENT:
            body["metadata"] = value
    with g.within("body"):
        if g.corrupt(20):
            return g.draw(HOSTILE)
    return body


@st.composite
def conversation_cases(draw: Any) -> Case:
    """The Conversations API: ids of live, deleted, unknown and malformed conversations and items, bodies with
    every item type (item references included), metadata at and past its limits, list parameters."""
    op = draw(CONVERSATION_OPS)
    method, path = {
        "create": ("POST", "/v1/conversations"), "get": ("GET", "/v1/conversations/{id}"),
        "update": ("POST", "/v1/conversations/{id}"), "delete": ("DELETE", "/v1/conversations/{id}"),
        "items": ("GET", "/v1/conversations/{id}/items"), "add": ("POST", "/v1/conversations/{id}/items"),
        "item": ("GET", "/v1/conversations/{id}/items/{item}"),
        "delete_item": ("DELETE", "/v1/conversations/{id}/items/{item}"),
        "odd": (draw(ODD_METHODS), draw(st.sampled_from(CONVERSATION_PATHS))),
    }[op]
    body: Any = None
    if method == "POST":
        body = draw(conversation_bodies(items=op in ("create", "add", "odd"), metadata=op == "update"))
    params: list[tuple[str, str]] = []
    names = ["limit", "order", "after", "include", "include[]"] if op in ("items", "add", "item") else ["limit"]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(names * 4 + ["foo"]) | SHORT_TEXTS)
        params.append((name, draw(QUERY_VALUES | ref("conv_item"))))
    return Case(method, path, body=body, params=params, path_id=draw(CONVERSATION_IDS),
                path_item=draw(CONVERSATION_ITEM_IDS), quote_slash=draw(st.integers(0, 9)) > 0)


def any_cases() -> st.SearchStrategy[Case]:
    return st.one_of(responses_cases(), responses_cases(), chat_cases(), stored_cases(), raw_cases(),
                     conversation_cases())


# ----------------------------------------------------------------------------------------------- harness

TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}


@dataclass
class Pools:
    """Ids the server issued, which later cases refer to (an index drawn by Hypothesis, resolved here)."""

    ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, value: str, cap: int = 64) -> None:
        pool = self.ids.setdefault(kind, [])
        if value not in pool:
            pool.append(value)
            del pool[:-cap]

    def discard(self, value: str, graveyard: str = "deleted") -> None:
        for kind, pool in self.ids.items():
            if kind != graveyard and value in pool:
                pool.remove(value)
        self.add(graveyard, value)

    def resolve(self, kind: str, index: int) -> str:
        pool = self.ids.get(kind)
        if pool:
            return pool[index % len(pool)]
        prefix = {"fresh_item": "msg", "item": "msg", "input_item": "msg", "conv_item": "msg", "conversation": "conv",
                  "fresh_conversation": "conv", "deleted_conversation": "conv"}.get(kind, "resp")
        return f"{prefix}_{index:016x}{'c' * 32}"  # well formed, never issued


@dataclass
class Stats:
    name: str
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    streams: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def line(self) -> str:
        self.seconds = time.monotonic() - self.started
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (f"[fuzz] {self.name}: {self.cases} cases in {self.seconds:.1f} s; "
                f"statuses {{{statuses}}}; streams read {self.streams}; unexpected 5xx {self.server_errors}"
                )


SUMMARY: list[Stats] = []


class Harness:
    """Sends cases through an httpx client (in-process TestClient or a real server) and checks each answer."""

    def __init__(self, client: httpx.Client, stats: Stats, logs: list[dict[str, Any]]) -> None:
        self.client = client
        self.stats = stats
        self.pools = Pools()
        self.logs = logs
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.hung: str | None = None

    # --- materializing a case

    def _substitute(self, text: str) -> str:
        return _REF.sub(lambda m: self.pools.resolve(m.group(1), int(m.group(2))), text)

    @staticmethod
    def _deep(match: re.Match[str]) -> str:
        depth, kind = int(match.group(1)), match.group(2)
        if kind == "list":
            return "[" * depth + "1" + "]" * depth
        if kind == "dict":
            return '{"a":' * depth + "1" + "}" * depth
        half = depth // 2
        return '{"k":[' * half + "null" + "]}" * half

    def body_bytes(self, case: Case) -> bytes | None:
        if case.raw is not None:
            return case.raw
        if case.body is None and case.method != "POST":
            return None
        text = json.dumps(case.body, ensure_ascii=case.ascii_only)
        text = self._substitute(_DEEP.sub(self._deep, text))
        return text.encode("utf-8", "surrogatepass")  # a lone surrogate without ensure_ascii: invalid UTF-8

    # --- running one

    def send(self, method: str, path: str, *, content: bytes | None = None, params: Any = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        if self.hung is not None:
            raise AssertionError(f"an earlier request hung: {self.hung}")
        future = self.executor.submit(self.client.request, method, path, content=content, params=params,
                                      headers=headers)
        try:
            return future.result(timeout=REQUEST_TIMEOUT)
        except concurrent.futures.TimeoutError:
            self.hung = f"{method} {path} {params!r} {content[:500] if content else content!r}"
            raise AssertionError(f"request hung for {REQUEST_TIMEOUT:g} s: {self.hung}") from None

    def run(self, case: Case) -> httpx.Response:
        content = self.body_bytes(case)
        path = self._substitute(case.path)
        safe = "" if case.quote_slash else "/"
        if case.path_id is not None:
            path = path.replace("{id}", _quote(self._substitute(case.path_id), safe))
        if case.path_item is not None:
            path = path.replace("{item}", _quote(self._substitute(case.path_item), safe))
        params = [(self._substitute(k), self._substitute(v)) for k, v in case.params] or None
        if params:  # encoded here: httpx refuses lone surrogates, a server must not
            path += "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)
        hdrs = dict(case.headers)
        if content is not None and case.raw is None:
            hdrs.setdefault("content-type", "application/json")
        self.replenish()
        self.logs.clear()
        self.stats.cases += 1
        try:
            response = self.send(case.method, path, content=content, headers=hdrs)
        except AssertionError:
            raise
        except Exception as exc:  # a dropped connection, or an exception escaping the app
            self.stats.server_errors += 1
            raise AssertionError(f"{case.method} {path}: no answer ({type(exc).__name__}: {exc})\n"
                                 f"body: {_clip(content)}") from exc
        self.stats.statuses[response.status_code] += 1
        where = f"{case.method} {path} params={params!r}\nbody: {_clip(content)}\nanswer: {_clip(response.content)}"
        if response.status_code >= 500:
            self.stats.server_errors += 1
            raise AssertionError(f"5xx for client input: {response.status_code}\n{where}\n{self._errors()}")
        check_answer(response, where)
        self._check_stream(response, path, params, where)
        self._check_object(case, path, response, where)
        self._harvest(case, path, response)
        self._check_logs(where)
        return response

    def _errors(self) -> str:
        lines = []
        for entry in self.logs:
            if entry.get("log_level") in ("error", "critical", "exception"):
                exc = entry.get("exc_info")
                detail = ""
                if isinstance(exc, BaseException):
                    detail = "".join(traceback.format_exception(exc))
                fields = {k: v for k, v in entry.items() if k != "exc_info"}
                lines.append(f"log: {entry.get('event')} {fields}\n{detail}")
        return "\n".join(lines)

    def _check_logs(self, where: str) -> None:
        errors = self._errors()
        if errors:
            raise AssertionError(f"error logged while serving client input\n{where}\n{errors}")

    def _check_stream(self, response: httpx.Response, path: str, params: Any, where: str) -> None:
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith("text/event-stream"):
            return
        self.stats.streams += 1
        if path == "/v1/chat/completions":
            chunks = chat_chunks(response.text)
            assert not any("error" in chunk for chunk in chunks), f"chat stream failed\n{where}"
            return
        events = response_events(response.text)
        seqs = [event["sequence_number"] for event in events]
        assert seqs == sorted(set(seqs)), f"sequence numbers out of order {seqs}\n{where}"
        endings = [event for event in events if event["type"] in TERMINAL]
        replay_after = [value for name, value in params or [] if name == "starting_after"]
        if not endings and replay_after:
            # a replay that starts after the ending has nothing to send: check that is what happened
            full = response_events(self.send("GET", path.partition("?")[0] + "?stream=true").text)
            last = [e["sequence_number"] for e in full if e["type"] in TERMINAL]
            assert len(last) == 1 and any(int(v) >= last[0] for v in replay_after), f"replay without ending\n{where}"
            return
        assert len(endings) == 1 and events[-1] is endings[0], f"{len(endings)} terminal events\n{where}"
        ending = endings[0]
        if ending["type"] == "error":
            assert ending.get("code") == "response_cancelled", f"stream ended with an error event\n{where}"
        else:
            assert ending["type"] != "response.failed", f"stream failed\n{where}"
            assert ending["response"]["status"] in ("completed", "incomplete")

    @staticmethod
    def _check_object(case: Case, path: str, response: httpx.Response, where: str) -> None:
        """A created response or completion that is not streamed ended well (or, in the background, started)."""
        if (response.status_code != 200 or case.method != "POST"
                or not response.headers.get("content-type", "").startswith("application/json")):
            return
        if path == "/v1/responses":
            obj = response.json()
            expected = ("queued", "in_progress", "completed") if obj["background"] else ("completed", "incomplete")
            assert obj["object"] == "response" and obj["status"] in expected, where
        elif path == "/v1/responses/input_tokens":
            assert response.json()["object"] == "response.input_tokens", where
        elif path == "/v1/conversations":
            assert response.json()["object"] == "conversation", where
        elif path == "/v1/chat/completions":
            obj = response.json()
            assert obj["object"] == "chat.completion", where
            assert obj["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls"), where

    def _harvest(self, case: Case, path: str, response: httpx.Response) -> None:
        """Remember what the server issued, for later cases to refer to."""
        if response.status_code != 200:
            return
        path = path.partition("?")[0]
        if path.startswith("/v1/conversations"):
            self._harvest_conversation(case, path, response)
            return
        if case.method == "DELETE":
            self.pools.discard(urllib.parse.unquote(path.rsplit("/", 1)[-1]))
            return
        if path != "/v1/responses":
            if path.endswith("/input_items"):
                for item in response.json().get("data", []):
                    self.pools.add("input_item", item["id"])
            return
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            final = [e["response"] for e in response_events(response.text) if "response" in e]
            obj = final[-1] if final else None
        else:
            obj = response.json()
        if not obj:
            return
        if obj.get("background"):
            self.pools.add("background", obj["id"])
        elif not obj.get("store"):
            self.pools.add("unstored", obj["id"])
        elif len(response.content) < 8000:  # keep chains (and what echo repeats of them) small
            self.pools.add("response", obj["id"])
            for item in obj.get("output", []):
                if isinstance(item.get("id"), str):
                    self.pools.add("item", item["id"])

    def _harvest_conversation(self, case: Case, path: str, response: httpx.Response) -> None:
        parts = [urllib.parse.unquote(part) for part in path.split("/")[3:]]  # after /v1/conversations
        if case.method == "DELETE" and len(parts) == 1:
            self.pools.discard(parts[0], "deleted_conversation")
            return
        obj = response.json()
        if not isinstance(obj, dict):
            return
        if obj.get("object") == "conversation" and case.method == "POST":
            self.pools.add("conversation", obj["id"])
        for item in obj.get("data", []) if obj.get("object") == "list" else []:
            if isinstance(item.get("id"), str):
                self.pools.add("conv_item", item["id"])

    def still_serves(self) -> None:
        """After everything: the server answers a normal request, streamed and not."""
        assert self.send("GET", "/health").status_code == 200
        body = json.dumps({"model": "scripted", "input": "hello"}).encode()
        plain = self.send("POST", "/v1/responses", content=body, headers={"content-type": "application/json"})
        assert plain.status_code == 200 and plain.json()["status"] == "completed", plain.text
        body = json.dumps({"model": "scripted", "input": "hello", "stream": True}).encode()
        streamed = self.send("POST", "/v1/responses", content=body, headers={"content-type": "application/json"})
        assert response_events(streamed.text)[-1]["type"] == "response.completed"

    def replenish(self) -> None:
        """Keep a few stored responses to refer to (DELETE cases use them up)."""
        for _ in range(4 - len(self.pools.ids.get("conversation", []))):
            items = [{"role": "user", "content": "remember this"}, {"type": "function_call", "call_id": "call_1",
                                                                     "name": "exec_command", "arguments": "{}"}]
            response = self.send("POST", "/v1/conversations", content=json.dumps({"items": items}).encode(),
                                 headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            self._harvest(Case("POST", "/v1/conversations"), "/v1/conversations", response)
        for n in range(8 - len(self.pools.ids.get("response", []))):
            body = {"model": "scripted" if n % 2 else "echo", "input": "again",
                    "tools": [{"type": "custom", "name": "apply_patch"}]}
            response = self.send("POST", "/v1/responses", content=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            self._harvest(Case("POST", "/v1/responses"), "/v1/responses", response)

    def seed(self) -> None:
        """A few stored objects of every kind, so reference cases have something to point at."""
        for body in (
            {"model": "scripted", "input": "seed"},
            {"model": "echo", "input": [{"role": "user", "content": "seed"}]},
            {"model": "echo", "input": "seed", "store": False},
            {"model": "scripted", "input": "seed", "background": True},
            {"model": "echo", "input": "seed", "background": True, "stream": True},
        ):
            self.run(Case("POST", "/v1/responses", body=body))
        first = self.pools.ids["response"][0]
        self.run(Case("POST", "/v1/responses", body={"model": "echo", "input": "next", "previous_response_id": first}))
        self.run(Case("GET", f"/v1/responses/{first}/input_items"))
        self.logs.clear()

    def close(self) -> None:
        self.executor.shutdown(wait=self.hung is None, cancel_futures=True)


def _quote(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe=safe)


def _clip(data: bytes | None, limit: int = 1500) -> str:
    if data is None:
        return "None"
    return repr(data[:limit]) + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def check_answer(response: httpx.Response, where: str) -> None:
    """Status-independent checks: a non-2xx is the OpenAI error envelope; a 4xx is not typed server_error."""
    status = response.status_code
    if 200 <= status < 300 or response.request.method == "HEAD":  # HEAD: no body to check
        return
    assert response.headers.get("content-type", "").startswith("application/json"), where
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, where
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, where
    assert isinstance(error["message"], str) and error["message"], where
    assert isinstance(error["type"], str), where
    assert error["param"] is None or isinstance(error["param"], str), where
    assert error["code"] is None or isinstance(error["code"], str), where
    if 400 <= status < 500:
        assert error["type"] != "server_error", where


# ----------------------------------------------------------------------------------------------- tests


def _emit(request: pytest.FixtureRequest, line: str) -> None:
    """Print past pytest's capture (CI quotes these lines), with or without `-s`."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(line, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(line, flush=True)


@pytest.fixture(scope="module")
def in_process() -> Iterator[TestClient]:
    with TestClient(app=create_app(make_config(MANIFEST))) as client:
        yield client


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if SUMMARY:
        total = sum(s.cases for s in SUMMARY)
        errors = sum(s.server_errors for s in SUMMARY)
        seconds = sum(s.seconds for s in SUMMARY)
        line = f"fuzz: {total} cases in {seconds:.1f} s over {len(SUMMARY)} tests; unexpected 5xx {errors}"
        _emit(request, f"[{line}]")
        request.config.stash.setdefault(FIGURES, []).append(line)  # printed again at the end of the run


def fuzz(request: pytest.FixtureRequest, client: httpx.Client, name: str, cases: st.SearchStrategy[Case],
         examples: int) -> None:
    stats = Stats(name)
    SUMMARY.append(stats)
    with capture_logs() as logs:
        harness = Harness(client, stats, logs)
        try:
            harness.seed()

            @settings(max_examples=max(1, int(examples * SCALE)), **SETTINGS)  # type: ignore[arg-type]
            @given(case=cases)
            def check(case: Case) -> None:
                harness.run(case)

            check()
            harness.still_serves()
        finally:
            harness.close()
            _emit(request, stats.line())


def test_responses_create(request: pytest.FixtureRequest, in_process: TestClient) -> None:
    fuzz(request, in_process, "POST /v1/responses (in-process)", responses_cases(), 3200)


def test_chat_completions(request: pytest.FixtureRequest, in_process: TestClient) -> None:
    fuzz(request, in_process, "POST /v1/chat/completions (in-process)", chat_cases(), 1600)


def test_stored_routes(request: pytest.FixtureRequest, in_process: TestClient) -> None:
    fuzz(request, in_process, "stored-response routes (in-process)", stored_cases(), 1200)


def test_raw_bodies(request: pytest.FixtureRequest, in_process: TestClient) -> None:
    fuzz(request, in_process, "raw and non-object bodies (in-process)", raw_cases(), 500)


def test_conversation_routes(request: pytest.FixtureRequest, in_process: TestClient) -> None:
    fuzz(request, in_process, "conversation routes (in-process)", conversation_cases(), 900)


def test_real_server(request: pytest.FixtureRequest) -> None:
    with serve(make_config(MANIFEST)) as base_url, httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        fuzz(request, client, f"all kinds against uvicorn at {base_url}", any_cases(), 600)
