"""HTTP surface: status codes, the error envelope, stream selection, headers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from tests.conftest import make_config
from tests.sse import response_events

# Still imported under this name by tests/test_store_outage.py and tests/test_replicas.py.
sse_events = response_events


def assert_envelope(response: Any, status: int, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


def test_non_stream_response_object(client: TestClient) -> None:
    response = client.post("/v1/responses", json={"model": "demo", "input": "hi", "metadata": {"k": "v"},
                                                   "instructions": "Be brief.", "temperature": 0.5})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "response" and body["id"].startswith("resp_")
    assert body["status"] == "completed" and body["model"] == "scripted"
    assert body["instructions"] == "Be brief." and body["metadata"] == {"k": "v"} and body["temperature"] == 0.5
    assert [item["type"] for item in body["output"]] == ["reasoning", "message", "function_call"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert all(isinstance(v, int) for v in (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]))
    assert body["output"][2]["arguments"] == '{"cmd":"echo hi"}'
    assert response.headers["x-request-id"].startswith("req_")


def test_stream_is_decided_by_the_body_not_accept(client: TestClient) -> None:
    streamed = client.post("/v1/responses", json={"model": "demo", "input": "hi", "stream": True},
                           headers={"accept": "application/json"})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = response_events(streamed.text)
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "[DONE]" not in streamed.text
    plain = client.post("/v1/responses", json={"model": "demo", "input": "hi"}, headers={"accept": "text/event-stream"})
    assert plain.headers["content-type"].startswith("application/json") and plain.json()["object"] == "response"


def test_stream_and_non_stream_agree(client: TestClient) -> None:
    body = {"model": "demo", "input": "hi"}
    plain = client.post("/v1/responses", json=body).json()
    final = response_events(client.post("/v1/responses", json={**body, "stream": True}).text)[-1]["response"]

    def strip(response: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in item.items() if k not in ("id", "call_id")} for item in response["output"]]

    assert strip(plain) == strip(final)
    assert plain["usage"] == final["usage"]


def test_no_event_has_a_top_level_error_key(client: TestClient) -> None:
    events = response_events(client.post("/v1/responses", json={"model": "demo", "input": "hi", "stream": True}).text)
    assert events and events[-1]["type"] == "response.completed"
    for event in events:
        assert event.get("error") is None


def test_unknown_route_and_wrong_method_use_the_envelope(client: TestClient) -> None:
    assert_envelope(client.get("/v1/nothing"), 404, code="not_found")
    assert_envelope(client.get("/v1/responses"), 405)
    assert_envelope(client.delete("/v1/models"), 405)


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (b"{not json", 400, None, None),
        (b"[]", 400, None, None),
        (json.dumps({"model": "demo", "input": [{"role": "user", "content": 5}]}).encode(), 400, "input[0].content", None),
        (json.dumps({"model": "demo", "temperature": "x"}).encode(), 400, "temperature", None),
        (json.dumps({"model": "demo", "max_output_tokens": 0}).encode(), 400, "max_output_tokens", None),
        (json.dumps({"model": "demo", "max_output_tokens": -1, "stream": True}).encode(), 400, "max_output_tokens", None),
        (json.dumps({"model": "gpt-9"}).encode(), 404, "model", "model_not_found"),
        (json.dumps({"model": "demo", "input": [{"type": "item_reference", "id": "msg_x"}]}).encode(), 400, "input[0].id", None),
        (json.dumps({"model": "demo", "stream": True, "tool_choice": {"type": "function", "name": "nope"}}).encode(),
         400, "tool_choice", None),
    ],
)
def test_bad_requests_get_4xx_before_any_stream(client: TestClient, body: bytes, status: int, param: str | None,
                                                code: str | None) -> None:
    response = client.post("/v1/responses", content=body, headers={"content-type": "application/json"})
    error = assert_envelope(response, status, param=param, code=code)
    assert error["type"] == "invalid_request_error"


def test_body_over_the_limit_is_413() -> None:
    config = make_config("server: {max_body_bytes: 1000}\nmodels: [{name: e, adapter: scripted, script: {mode: echo}}]")
    with TestClient(app=create_app(config)) as client:
        response = client.post("/v1/responses", json={"model": "e", "input": "x" * 5000})
        assert_envelope(response, 413, code="request_too_large")
        assert client.post("/v1/responses", json={"model": "e", "input": "small"}).status_code == 200


def test_degradations_are_listed_in_a_header(client: TestClient) -> None:
    response = client.post(
        "/v1/responses",
        json={"model": "demo", "input": "hi", "tools": [{"type": "web_search"}, {"type": "custom", "name": "apply_patch"}]},
    )
    assert response.headers["x-gateway-degraded"] == "tool:web_search:note, tool:apply_patch:wrap"


def test_request_id_is_echoed_when_sane(client: TestClient) -> None:
    assert client.get("/health", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/health", headers={"x-request-id": "bad id\x01"}).headers["x-request-id"].startswith("req_")


def test_models_and_health(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["scripted", "demo", "echo"]
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in models["data"])
    # each listed entry, an alias included, is retrieved exactly as it is listed
    assert [client.get(f"/v1/models/{m['id']}").json() for m in models["data"]] == models["data"]
    assert_envelope(client.get("/v1/models/nope"), 404, param="model", code="model_not_found")
    health = client.get("/health").json()
    assert health["status"] == "ok" and set(health["models"]) == {"scripted", "echo"}


def test_adapter_failure_non_stream_is_a_5xx_envelope_and_stream_is_response_failed() -> None:
    config = make_config("models: [{name: f, adapter: scripted, script: {steps: [{text: partial, error: model exploded}]}}]")
    with TestClient(app=create_app(config)) as client:
        assert_envelope(client.post("/v1/responses", json={"model": "f", "input": "x"}), 500, code="model_error")
        streamed = client.post("/v1/responses", json={"model": "f", "input": "x", "stream": True})
        assert streamed.status_code == 200
        events = response_events(streamed.text)
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"] == {"code": "model_error", "message": "model exploded"}


def test_max_output_tokens_gives_incomplete_over_http(client: TestClient) -> None:
    body = client.post("/v1/responses", json={"model": "demo", "input": "hi", "max_output_tokens": 2}).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 2
    events = response_events(client.post("/v1/responses", json={"model": "demo", "input": "hi", "max_output_tokens": 2,
                                                                "stream": True}).text)
    assert events[-1]["type"] == "response.incomplete"


def test_instructions_and_history_reach_the_model(client: TestClient) -> None:
    body = client.post(
        "/v1/responses",
        json={
            "model": "echo",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "sandbox rules"},
                {"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}", "id": "fc_9"},
                {"type": "function_call_output", "call_id": "c1", "output": "done", "id": "fco_9"},
            ],
            "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}],
            "store": False,
        },
    ).json()
    seen = json.loads(body["output"][0]["content"][0]["text"])
    assert [m["role"] for m in seen["messages"]] == ["system", "developer", "user", "assistant", "tool"]
    assert seen["messages"][0]["content"] == "Be brief."
    assert seen["tools"] == [{"name": "exec_command", "parameters": {"type": "object"}}]
