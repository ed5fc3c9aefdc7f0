"""Operations over HTTP: metrics after real requests, API keys, limits, readiness."""

from __future__ import annotations

import subprocess
import sys

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from tests.conftest import make_config
from tests.test_routes import assert_envelope

KEYED = """
server: {max_input_items: 3, max_tools: 2}
auth:
  admin_key_env: OPS_ADMIN
  keys:
    - {name: all, env: OPS_ALL}
    - {name: demo-only, env: OPS_DEMO, models: [demo]}
models:
  - {name: scripted, aliases: [demo], adapter: scripted, script: {steps: [{text: hello}]}}
  - {name: echo, adapter: scripted, script: {mode: echo}}
"""


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPS_ALL", "all-key")
    monkeypatch.setenv("OPS_DEMO", "demo-key")
    monkeypatch.setenv("OPS_ADMIN", "admin-key")
    with TestClient(app=create_app(make_config(KEYED))) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_after_real_requests(client: TestClient) -> None:
    client.post("/v1/responses", json={"model": "demo", "input": "hi", "tools": [{"type": "web_search"}]})
    client.post("/v1/responses", json={"model": "demo", "input": "hi", "stream": True})
    client.post("/v1/responses", json={"model": "nope", "input": "hi"})
    client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    got = metric_samples(response.text)
    ok = frozenset({("endpoint", "/v1/responses"), ("model", "scripted"), ("status", "200")})
    assert got[("mlxgw_requests_total", ok)] == 2
    missing = frozenset({("endpoint", "/v1/responses"), ("model", ""), ("status", "404")})
    assert got[("mlxgw_requests_total", missing)] == 1
    chat = frozenset({("endpoint", "/v1/chat/completions"), ("model", "echo"), ("status", "200")})
    assert got[("mlxgw_requests_total", chat)] == 1
    assert got[("mlxgw_responses_total", frozenset({("model", "scripted"), ("status", "completed")}))] == 2
    assert got[("mlxgw_tokens_total", frozenset({("model", "scripted"), ("kind", "output")}))] > 0
    assert got[("mlxgw_time_to_first_token_seconds_count", frozenset({("model", "scripted")}))] == 2
    assert got[("mlxgw_degradations_total", frozenset({("kind", "tool"), ("action", "note")}))] == 1
    assert got[("mlxgw_model_state", frozenset({("model", "scripted"), ("state", "ready")}))] == 1
    assert got[("mlxgw_active_streams", frozenset({("model", "scripted")}))] == 0
    assert got[("mlxgw_store_up", frozenset({("backend", "memory")}))] == 1
    assert got[("mlxgw_store_errors_total", frozenset())] == 0
    # the two stored responses were written when they began and when they finished, each write timed
    assert got[("mlxgw_store_latency_seconds_count", frozenset({("operation", "begin")}))] == 2
    assert got[("mlxgw_store_latency_seconds_count", frozenset({("operation", "finish")}))] == 2


def test_api_keys(keyed: TestClient) -> None:
    body = {"model": "echo", "input": "hi"}
    assert_envelope(keyed.post("/v1/responses", json=body), 401, code="invalid_api_key")
    assert_envelope(keyed.post("/v1/responses", json=body, headers=auth("wrong")), 401, code="invalid_api_key")
    denied = assert_envelope(keyed.post("/v1/responses", json=body, headers=auth("demo-key")), 403, param="model",
                             code="model_not_allowed")
    assert "'demo-only'" in denied["message"]
    assert keyed.post("/v1/responses", json=body, headers=auth("all-key")).status_code == 200
    assert keyed.post("/v1/responses", json={"model": "demo", "input": "x"}, headers=auth("demo-key")).status_code == 200
    chat = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
    assert_envelope(keyed.post("/v1/chat/completions", json=chat, headers=auth("demo-key")), 403, param="model")
    assert [m["id"] for m in keyed.get("/v1/models", headers=auth("demo-key")).json()["data"]] == ["scripted", "demo"]
    assert [m["id"] for m in keyed.get("/v1/models", headers=auth("all-key")).json()["data"]] == ["scripted", "demo", "echo"]
    assert_envelope(keyed.get("/v1/models"), 401)


def test_admin_and_operational_endpoints_with_keys(keyed: TestClient) -> None:
    assert_envelope(keyed.post("/admin/reload", headers=auth("all-key")), 401)  # an API key is not the admin key
    assert keyed.get("/health").status_code == 200  # liveness stays open for load balancers
    assert keyed.get("/").status_code == 200  # the page itself holds no data
    assert_envelope(keyed.get("/status.json"), 401)
    assert keyed.get("/status.json", headers=auth("all-key")).status_code == 200
    assert keyed.get("/metrics", headers=auth("admin-key")).status_code == 200
    assert_envelope(keyed.get("/metrics"), 401)


def test_key_values_never_reach_the_logs(keyed: TestClient) -> None:
    import structlog

    with structlog.testing.capture_logs() as logs:
        keyed.post("/v1/responses", json={"model": "echo", "input": "x"}, headers=auth("all-key"))
        keyed.post("/v1/responses", json={"model": "echo", "input": "x"}, headers=auth("not-a-key"))
    text = repr(logs)
    assert "all-key" not in text and "not-a-key" not in text
    assert [entry.get("key") for entry in logs if entry["event"] == "request"] == ["all", None]


def test_limits_on_items_and_tools(keyed: TestClient) -> None:
    items = [{"role": "user", "content": "x"}] * 4
    assert_envelope(keyed.post("/v1/responses", json={"model": "echo", "input": items}, headers=auth("all-key")),
                    400, param="input")
    tools = [{"type": "function", "name": f"f{i}"} for i in range(3)]
    assert_envelope(keyed.post("/v1/responses", json={"model": "echo", "input": "x", "tools": tools},
                               headers=auth("all-key")), 400, param="tools")


def test_ready_reports_store_and_models(client: TestClient) -> None:
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "problems": [], "manifest_version": 1, "store": "ok",
                            "models": {"scripted": "ready", "echo": "ready"}, "unavailable": []}


def test_status_document(client: TestClient) -> None:
    client.post("/v1/responses", json={"model": "demo", "input": "hi", "tools": [{"type": "web_search"}]})
    document = client.get("/status.json").json()
    assert set(document["models"]) == {"scripted", "echo"}
    assert document["models"]["scripted"]["state"] == "ready"
    (recent,) = document["recent"]
    assert recent["model"] == "scripted" and recent["response_status"] == "completed"
    assert document["degradations"] == {"tool:web_search:note": 1}
    assert document["store"]["state"] == "ok"


def test_run_refuses_a_public_address_without_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    manifest = tmp_path / "gateway.yaml"
    manifest.write_text("models: [{name: m, adapter: scripted, script: {mode: echo}}]\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(manifest), "--host", "0.0.0.0",
                             "--port", "0"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "Uvicorn running" not in result.stderr


def test_stored_responses_are_scoped_to_the_key_models(keyed: TestClient) -> None:
    created = keyed.post("/v1/responses", json={"model": "echo", "input": "x"}, headers=auth("all-key")).json()
    path = f"/v1/responses/{created['id']}"
    assert keyed.get(path, headers=auth("all-key")).json()["id"] == created["id"]
    for method, suffix in (("GET", ""), ("GET", "/input_items"), ("POST", "/cancel"), ("DELETE", "")):
        assert_envelope(keyed.request(method, path + suffix, headers=auth("demo-key")), 404, param="response_id")
    assert keyed.get(path, headers=auth("all-key")).status_code == 200  # nothing was deleted by the other key
    demo = keyed.post("/v1/responses", json={"model": "demo", "input": "x"}, headers=auth("demo-key")).json()
    assert keyed.get(f"/v1/responses/{demo['id']}", headers=auth("demo-key")).json()["model"] == "scripted"
