"""Stored responses over HTTP (memory:// store): chains, item references, retrieval, deletion,
input items, store failures, and background mode (poll, stream, replay, cancel)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.errors import StoreUnavailable
from tests.conftest import make_config, serve
from tests.process import wait_for
from tests.sse import iter_response_events, response_events
from tests.test_routes import assert_envelope

MANIFEST = """
server: {keepalive_seconds: 0.3}
models:
  - name: scripted
    adapter: scripted
    script:
      chunk_chars: 5
      steps:
        - reasoning: "I should run a command."
          text: "Running it."
          calls: [{function: exec_command, arguments: {cmd: "echo hi"}}]
        - text: "The command printed hi."
  - name: echo
    adapter: scripted
    script: {mode: echo, chunk_chars: 100000}
  - name: slow
    adapter: scripted
    script: {delay_ms: 30, chunk_chars: 1, steps: [{text: "%s"}]}
""" % ("x" * 400)

TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app=create_app(make_config(MANIFEST))) as test_client:
        yield test_client


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/responses", json={"model": "echo", **body})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def seen_by_model(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages the echo model received."""
    return json.loads(response["output"][0]["content"][0]["text"])["messages"]  # type: ignore[no-any-return]




# ------------------------------------------------------------------ retrieval


def test_a_stored_response_is_retrieved_exactly_as_returned(client: TestClient) -> None:
    created = create(client, model="scripted", input="go", tools=TOOLS)
    fetched = client.get(f"/v1/responses/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created
    streamed = response_events(client.post("/v1/responses", json={"model": "scripted", "input": "go", "stream": True}).text)
    final = streamed[-1]["response"]
    assert client.get(f"/v1/responses/{final['id']}").json() == final


def test_store_false_is_not_kept_and_unknown_ids_are_404(client: TestClient) -> None:
    created = create(client, input="secret", store=False)
    assert_envelope(client.get(f"/v1/responses/{created['id']}"), 404, param="response_id")
    assert_envelope(client.get("/v1/responses/resp_nope"), 404, param="response_id")
    assert_envelope(client.get("/v1/responses/resp_" + "ab" * 24), 404, param="response_id")


def test_store_false_item_ids_are_informational(client: TestClient) -> None:
    body = create(
        client,
        store=False,
        input=[
            {"type": "reasoning", "id": "rs_from_elsewhere", "summary": []},
            {"type": "message", "id": "msg_" + "cd" * 24, "role": "assistant",
             "content": [{"type": "output_text", "text": "hi"}]},
            {"role": "user", "content": "go on"},
        ],
    )
    assert body["status"] == "completed"


# ---------------------------------------------------------------------- chains


def test_previous_response_id_replays_inputs_and_outputs_but_not_instructions(client: TestClient) -> None:
    first = create(client, instructions="Be terse.", input="first question")
    second = create(client, instructions="Be kind.", input="second question", previous_response_id=first["id"])
    messages = seen_by_model(second)
    assert messages[0] == {"role": "system", "content": "Be kind."}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "first question"
    assert messages[2]["content"] == first["output"][0]["content"][0]["text"]
    assert messages[3]["content"] == "second question"
    assert second["previous_response_id"] == first["id"]
    third = create(client, input="third", previous_response_id=second["id"])
    assert [m["content"] for m in seen_by_model(third) if m["role"] == "user"] == [
        "first question", "second question", "third"
    ]
    assert all(m["role"] != "system" for m in seen_by_model(third))


def test_a_tool_loop_continues_through_the_chain(client: TestClient) -> None:
    first = create(client, model="scripted", input="run something", tools=TOOLS)
    call = first["output"][-1]
    assert call["type"] == "function_call"
    second = create(
        client, model="scripted", tools=TOOLS, previous_response_id=first["id"],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "hi"}],
    )
    assert second["output"][0]["content"][0]["text"] == "The command printed hi."


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_previous_response_is_400_before_any_stream(client: TestClient, stream: bool) -> None:
    for bad in ("resp_nope", "resp_" + "ef" * 24):
        response = client.post("/v1/responses", json={"model": "echo", "input": "x", "stream": stream,
                                                      "previous_response_id": bad})
        error = assert_envelope(response, 400, param="previous_response_id", code="previous_response_not_found")
        assert bad in error["message"]


def test_a_missing_ancestor_is_named(client: TestClient) -> None:
    ids = [create(client, input="one")["id"]]
    for text in ("two", "three", "four"):
        ids.append(create(client, input=text, previous_response_id=ids[-1])["id"])
    assert client.delete(f"/v1/responses/{ids[1]}").status_code == 200
    response = client.post("/v1/responses", json={"model": "echo", "input": "x", "previous_response_id": ids[3]})
    error = assert_envelope(response, 400, param="previous_response_id", code="previous_response_not_found")
    assert f"'{ids[1]}'" in error["message"] and ids[3] in error["message"] and "2 turn(s)" in error["message"]


def test_a_chain_deeper_than_the_limit_is_refused() -> None:
    config = make_config("store: {max_chain_depth: 2}\n" + MANIFEST)
    with TestClient(app=create_app(config)) as client:
        one = create(client, input="1")
        two = create(client, input="2", previous_response_id=one["id"])
        three = create(client, input="3", previous_response_id=two["id"])  # two turns of history: allowed
        response = client.post("/v1/responses", json={"model": "echo", "input": "4",
                                                      "previous_response_id": three["id"]})
        error = assert_envelope(response, 400, param="previous_response_id", code="previous_response_chain_too_long")
        assert "max_chain_depth" in error["message"]


# ------------------------------------------------------------- item references


def test_item_references_resolve_to_stored_output_and_input_items(client: TestClient) -> None:
    first = create(client, input=[{"role": "user", "content": "remember the word teal"}])
    said = first["output"][0]
    asked = client.get(f"/v1/responses/{first['id']}/input_items").json()["data"][0]
    second = create(client, input=[
        {"type": "item_reference", "id": asked["id"]},
        {"type": "item_reference", "id": said["id"]},
        {"role": "user", "content": "which word?"},
    ])
    messages = seen_by_model(second)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "remember the word teal"
    assert messages[1]["content"] == said["content"][0]["text"]
    # The stored input of the second turn holds the resolved items, not the references.
    stored = client.get(f"/v1/responses/{second['id']}/input_items", params={"order": "asc"}).json()["data"]
    assert [item["type"] for item in stored] == ["message", "message", "message"]
    assert stored[1]["id"] == said["id"]


@pytest.mark.parametrize("store", [True, False])
def test_an_unknown_item_reference_is_400_naming_it(client: TestClient, store: bool) -> None:
    missing = "msg_" + "12" * 24
    response = client.post("/v1/responses", json={"model": "echo", "store": store, "stream": True, "input": [
        {"role": "user", "content": "hi"}, {"type": "item_reference", "id": missing}]})
    error = assert_envelope(response, 400, param="input[1].id")
    assert missing in error["message"]


# -------------------------------------------------------------------- delete


def test_delete_removes_the_response_and_its_items(client: TestClient) -> None:
    first = create(client, input="to be forgotten")
    item = first["output"][0]["id"]
    deleted = client.delete(f"/v1/responses/{first['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": first["id"], "object": "response.deleted", "deleted": True}
    assert_envelope(client.get(f"/v1/responses/{first['id']}"), 404, param="response_id")
    assert_envelope(client.get(f"/v1/responses/{first['id']}/input_items"), 404, param="response_id")
    assert_envelope(client.delete(f"/v1/responses/{first['id']}"), 404, param="response_id")
    response = client.post("/v1/responses", json={"model": "echo", "input": [{"type": "item_reference", "id": item}]})
    assert item in assert_envelope(response, 400, param="input[0].id")["message"]
    response = client.post("/v1/responses", json={"model": "echo", "input": "x", "previous_response_id": first["id"]})
    assert_envelope(response, 400, param="previous_response_id", code="previous_response_not_found")


# --------------------------------------------------------------- input items


def test_input_items_pages_in_both_orders_and_every_item_has_an_id(client: TestClient) -> None:
    inputs = [
        {"role": "developer", "content": "rules"},
        {"type": "message", "id": "msg_client_kept", "role": "user", "content": "a"},
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
        {"type": "compaction", "encrypted_content": "zz"},
    ]
    created = create(client, input=inputs)
    url = f"/v1/responses/{created['id']}/input_items"
    everything = client.get(url, params={"order": "asc", "limit": 100}).json()
    assert everything["object"] == "list" and everything["has_more"] is False
    items = everything["data"]
    assert [i["type"] for i in items] == ["message", "message", "function_call", "function_call_output", "compaction"]
    assert all(isinstance(i["id"], str) and i["id"] for i in items)
    assert len({i["id"] for i in items}) == 5
    assert items[1]["id"] == "msg_client_kept" and items[4]["encrypted_content"] == "zz"
    default = client.get(url).json()
    assert [i["id"] for i in default["data"]] == [i["id"] for i in reversed(items)]  # desc by default
    page = client.get(url, params={"limit": 2}).json()
    assert [i["id"] for i in page["data"]] == [items[4]["id"], items[3]["id"]]
    assert page["first_id"] == items[4]["id"] and page["last_id"] == items[3]["id"] and page["has_more"] is True
    rest = client.get(url, params={"limit": 2, "after": page["last_id"]}).json()
    assert [i["id"] for i in rest["data"]] == [items[2]["id"], items[1]["id"]] and rest["has_more"] is True
    last = client.get(url, params={"limit": 2, "after": rest["last_id"]}).json()
    assert [i["id"] for i in last["data"]] == [items[0]["id"]] and last["has_more"] is False
    asc = client.get(url, params={"order": "asc", "limit": 1, "after": items[0]["id"]}).json()
    assert [i["id"] for i in asc["data"]] == [items[1]["id"]]


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"),
     ({"order": "sideways"}, "order"), ({"after": "msg_unknown"}, "after")],
)
def test_input_items_rejects_bad_parameters(client: TestClient, params: dict[str, str], param: str) -> None:
    created = create(client, input="x")
    assert_envelope(client.get(f"/v1/responses/{created['id']}/input_items", params=params), 400, param=param)


# ------------------------------------------------------------ store failures


def test_a_response_that_could_not_be_stored_is_never_reported_completed(client: TestClient) -> None:
    store = client.app.state.store

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("Redis went away.")

    original = store.finish
    store.finish = broken
    try:
        failed = client.post("/v1/responses", json={"model": "echo", "input": "x"})
        assert_envelope(failed, 503, code="store_unavailable")
        events = response_events(client.post("/v1/responses", json={"model": "echo", "input": "x", "stream": True}).text)
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"]["code"] == "store_unavailable"
        assert all(e["type"] != "response.completed" for e in events)
        assert create(client, input="x", store=False)["status"] == "completed"  # store: false does not care
    finally:
        store.finish = original


def test_health_reports_the_store(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    store = health["store"]
    assert {k: v for k, v in store.items() if k not in ("pool", "memory")} == {
        "backend": "memory", "url": "memory://", "state": "ok", "error": None, "errors": 0
    }
    assert store["pool"] == {"size": 64, "in_use": 0, "idle": 64, "waiting": 0, "timeouts": 0}
    assert store["memory"]["max_bytes"] == 512 * 2**20 and store["memory"]["evicted_responses"] == 0


def test_a_client_that_disconnects_leaves_a_cancelled_response() -> None:
    with serve(make_config(MANIFEST)) as base, httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("POST", "/v1/responses", json={"model": "slow", "input": "x", "stream": True}) as response:
            events: list[dict[str, Any]] = []
            for _, event in iter_response_events(response):
                events.append(event)
                if event["type"] == "response.output_text.delta":
                    break
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.output_text.delta"
        response_id = events[0]["response"]["id"]
        stored = wait_for(lambda: (r := http.get(f"/v1/responses/{response_id}").json())["status"] == "cancelled" and r)
        text = stored["output"][0]["content"][0]["text"]
        assert 0 < len(text) < 400 and stored["output"][0]["status"] == "incomplete"


# ------------------------------------------------------------------ background


def test_background_returns_at_once_and_is_polled_to_completion(client: TestClient) -> None:
    started = create(client, model="scripted", input="go", tools=TOOLS, background=True)
    assert started["status"] == "queued" and started["background"] is True and started["output"] == []
    done = wait_for(lambda: (r := client.get(f"/v1/responses/{started['id']}").json())["status"] == "completed" and r)
    assert [item["type"] for item in done["output"]] == ["reasoning", "message", "function_call"]
    assert done["background"] is True and done["usage"]["output_tokens"] > 0
    output = {"type": "function_call_output", "call_id": done["output"][2]["call_id"], "output": "hi"}
    follow_up = create(client, model="scripted", tools=TOOLS, previous_response_id=started["id"], input=[output])
    assert follow_up["output"][0]["content"][0]["text"] == "The command printed hi."


def test_background_stream_then_replay_from_any_point(client: TestClient) -> None:
    streamed = client.post("/v1/responses", json={"model": "scripted", "input": "go", "tools": TOOLS,
                                                  "background": True, "stream": True})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = response_events(streamed.text)
    assert [e["type"] for e in events[:3]] == ["response.created", "response.queued", "response.in_progress"]
    assert events[0]["response"]["status"] == "queued" and events[2]["response"]["status"] == "in_progress"
    assert events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    response_id = events[0]["response"]["id"]
    replay = client.get(f"/v1/responses/{response_id}", params={"stream": "true", "starting_after": 3})
    assert response_events(replay.text) == events[4:]
    whole = client.get(f"/v1/responses/{response_id}", params={"stream": "true"})
    assert response_events(whole.text) == events
    assert client.get(f"/v1/responses/{response_id}").json() == events[-1]["response"]


def test_background_cancel_is_idempotent_and_ends_the_log(client: TestClient) -> None:
    started = create(client, model="slow", input="x", background=True)
    url = f"/v1/responses/{started['id']}"
    wait_for(lambda: client.get(url).json()["status"] == "in_progress")
    wait_for(lambda: client.get("/health").json()["models"]["slow"]["active"] == 1)
    cancelled = client.post(f"{url}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"{url}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    events = response_events(client.get(url, params={"stream": "true"}).text)
    assert events[-1]["type"] == "error" and events[-1]["code"] == "response_cancelled"
    assert all(e["type"] != "response.completed" for e in events)
    final = wait_for(lambda: (r := client.get(url).json())["output"] and r)
    assert final["status"] == "cancelled" and final["output"][0]["status"] == "incomplete"
    assert wait_for(lambda: client.get("/health").json()["models"]["slow"]["active"] == 0)


def test_a_running_background_response_cannot_be_continued_yet(client: TestClient) -> None:
    started = create(client, model="slow", input="x", background=True)
    response = client.post("/v1/responses", json={"model": "echo", "input": "x", "previous_response_id": started["id"]})
    assert_envelope(response, 400, param="previous_response_id", code="previous_response_in_progress")
    client.post(f"/v1/responses/{started['id']}/cancel")


def test_cancel_and_stream_replay_need_a_background_response(client: TestClient) -> None:
    created = create(client, input="x")
    assert_envelope(client.post(f"/v1/responses/{created['id']}/cancel"), 400, param="response_id")
    assert_envelope(client.get(f"/v1/responses/{created['id']}", params={"stream": "true"}), 400, param="stream")
    assert_envelope(client.post("/v1/responses/resp_nope/cancel"), 404, param="response_id")
    assert_envelope(client.get(f"/v1/responses/{created['id']}", params={"starting_after": "x"}), 400,
                    param="starting_after")
    assert_envelope(client.get(f"/v1/responses/{created['id']}", params={"stream": "maybe"}), 400, param="stream")
