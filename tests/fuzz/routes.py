"""What one example sends (`Case`s), per route: create bodies with headers, the stored-response routes (GET,
`?stream=true` replays, DELETE, `input_items`, cancel, odd methods and paths), raw bodies that are not JSON or not
objects, and the Conversations API, with ids of live, deleted, unknown and malformed objects and hostile query
parameters."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.bodies import chat_bodies, conversation_bodies, responses_bodies
from tests.fuzz.runner import Case
from tests.fuzz.values import ANY_JSON, DEPTHS, MALFORMED_IDS, SHORT_TEXTS, ref

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

