"""Explicit regression tests for the defects tests/test_fuzz.py found (each one a 5xx, or a server error inside a
200 stream, caused by client input)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.errors import InvalidRequest
from gateway.normalize import decode_request
from gateway.policies.tools import ToolRules, plan_tools, resolve_tool_choice
from tests.conftest import make_config
from tests.sse import response_events
from tests.test_routes import assert_envelope

MANIFEST = """
models:
  - name: scripted
    adapter: scripted
    script: {steps: [{text: "ok"}]}
  - name: echo
    adapter: scripted
    script: {mode: echo, chunk_chars: 100000}
"""

TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
         {"type": "custom", "name": "apply_patch"}]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app=create_app(make_config(MANIFEST))) as test_client:
        yield test_client


def offered(client: TestClient, tool_choice: Any) -> list[str]:
    """The tool names the echo model was shown for `tool_choice`."""
    response = client.post("/v1/responses", json={"model": "echo", "input": "x", "tools": TOOLS,
                                                  "tool_choice": tool_choice})
    assert response.status_code == 200, response.text
    seen = json.loads(response.json()["output"][0]["content"][0]["text"])
    return [tool["name"] for tool in seen["tools"]]


# --- defect 1: `tool_choice: {"type": "allowed_tools", ...}` with a `tools` that is not a list of
# {type, name} strings was a 500 (TypeError in gateway/policies/tools.py resolve_tool_choice).


@pytest.mark.parametrize("listed", [5, "exec_command", {"type": "function", "name": "exec_command"}, True, 1.5])
def test_allowed_tools_that_is_not_a_list_is_400(client: TestClient, listed: Any) -> None:
    response = client.post("/v1/responses", json={
        "model": "echo", "input": "x", "tools": TOOLS,
        "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": listed},
    })
    assert_envelope(response, 400, param="tool_choice.tools")


def test_allowed_tools_null_or_missing_allows_nothing(client: TestClient) -> None:
    assert offered(client, {"type": "allowed_tools", "mode": "auto", "tools": None}) == []
    assert offered(client, {"type": "allowed_tools", "mode": "auto"}) == []


@pytest.mark.parametrize("entry", [
    {"type": [], "name": "exec_command"},
    {"type": "function", "name": ["exec_command"]},
    {"type": {"a": 1}, "name": {"b": 2}},
    {"type": "function", "name": None},
])
def test_allowed_tools_entries_with_non_string_type_or_name_match_nothing(client: TestClient, entry: Any) -> None:
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [entry, {"type": "custom", "name": "apply_patch"}]}
    assert offered(client, choice) == ["apply_patch"]


@pytest.mark.parametrize("stream", [False, True])
def test_the_fuzzers_minimal_case_is_not_a_5xx(client: TestClient, stream: bool) -> None:
    """The shrunk example from the fuzzer, as it was sent."""
    body = {"model": "scripted", "stream": stream, "store": False,
            "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": [], "name": "exec_command"}]}}
    response = client.post("/v1/responses", content=json.dumps(body).encode(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    if stream:
        assert response_events(response.text)[-1]["type"] == "response.completed"


def test_resolve_tool_choice_rejects_or_ignores_malformed_allowed_tools() -> None:
    request = decode_request(json.dumps({"model": "m", "tools": TOOLS}).encode())
    for listed in (7, "x", {"a": 1}):
        with pytest.raises(InvalidRequest) as info:
            resolve_tool_choice({"type": "allowed_tools", "tools": listed}, plan_tools(request.tools, ToolRules()))
        assert info.value.param == "tool_choice.tools"
    plan = plan_tools(request.tools, ToolRules())
    mode = resolve_tool_choice({"type": "allowed_tools", "mode": ["required"], "tools": [{"type": [1], "name": {}}]},
                               plan)
    assert mode == "auto" and plan.specs == []


# --- defect 2. `starting_after` >= 2**64 - 1 on a background response's replay made the store read the Redis
# stream from entry `0-<N+1>`, which is no valid stream id: the 200 stream ended with an `error` event
# `store_error`. Now the route bounds it (400 naming `starting_after`).


@pytest.mark.parametrize("after", [str(2**64 - 1), str(2**64), str(10**30)])
def test_replay_starting_after_beyond_64_bits_is_a_client_error(client: TestClient, after: str) -> None:
    created = client.post("/v1/responses", json={"model": "scripted", "input": "x", "background": True}).json()
    deadline = time.monotonic() + 10
    while client.get(f"/v1/responses/{created['id']}").json()["status"] in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    response = client.get(f"/v1/responses/{created['id']}", params={"stream": "true", "starting_after": after})
    if response.status_code == 200:  # an empty replay is fine too; a store error is not
        assert "store_error" not in response.text, response.text
    else:
        assert_envelope(response, 400, param="starting_after")


# --- defect 3. `item_reference` items sent to `POST /v1/conversations` or `.../items` were stored as references;
# every later response in that conversation raised ValueError in conversation.build_messages: a 500 on every turn.
# Now the route resolves them as POST /v1/responses does (unknown or unreadable → 400 naming `items[i].id`).


@pytest.mark.parametrize("route", ["create", "add"])
@pytest.mark.parametrize("target", ["stored", "unknown"])
def test_a_conversation_never_holds_an_unresolved_item_reference(client: TestClient, route: str, target: str) -> None:
    stored = client.post("/v1/responses", json={"model": "scripted", "input": "x"}).json()
    referenced = stored["output"][0]["id"] if target == "stored" else "msg_" + "ab" * 24
    items = [{"type": "item_reference", "id": referenced}, {"role": "user", "content": "hi"}]
    if route == "create":
        answer = client.post("/v1/conversations", json={"items": items})
        conversation = answer.json().get("id")
    else:
        conversation = client.post("/v1/conversations", json={}).json()["id"]
        answer = client.post(f"/v1/conversations/{conversation}/items", json={"items": items})
    if answer.status_code == 400:  # refusing a reference it cannot resolve is fine
        assert_envelope(answer, 400, param="items[0].id")
        return
    assert answer.status_code == 200, answer.text
    listed = client.get(f"/v1/conversations/{conversation}/items", params={"order": "asc"}).json()["data"]
    assert all(item["type"] != "item_reference" for item in listed), listed
    turn = client.post("/v1/responses", json={"model": "echo", "input": "x", "conversation": conversation})
    assert turn.status_code == 200, turn.text
