"""Which constraints a request states, and what happens on a model that cannot enforce them (the scripted
adapter): answered and said so (`constraints: enforce`, the default), refused naming the parameter (`strict`)."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from tests.conftest import make_config
from tests.test_routes import assert_envelope

MANIFEST = """
models:
  - {name: plain, adapter: scripted, script: {mode: echo}}
  - {name: picky, adapter: scripted, script: {mode: echo}, constraints: strict}
"""
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
TOOL = {"type": "function", "name": "f", "parameters": SCHEMA}


@pytest.fixture
def http() -> TestClient:
    with TestClient(app=create_app(make_config(MANIFEST))) as client:
        yield client


def test_an_unenforced_schema_is_answered_and_said_so(http: TestClient) -> None:
    response = http.post("/v1/responses", json={"model": "plain", "input": "hi", "text": {
        "format": {"type": "json_schema", "name": "x", "schema": SCHEMA}}})
    assert response.status_code == 200
    assert response.headers["x-gateway-degraded"] == "constraint:text.format:ignore"


def test_an_unenforced_tool_choice_is_answered_and_said_so(http: TestClient) -> None:
    response = http.post("/v1/responses", json={"model": "plain", "input": "hi", "tools": [TOOL],
                                                "tool_choice": "required"})
    assert response.status_code == 200
    assert response.headers["x-gateway-degraded"] == "constraint:tool_choice:ignore"


def test_no_constraint_no_header(http: TestClient) -> None:
    response = http.post("/v1/responses", json={"model": "plain", "input": "hi", "tools": [TOOL]})
    assert "x-gateway-degraded" not in response.headers


@pytest.mark.parametrize(("body", "param"), [
    ({"text": {"format": {"type": "json_object"}}}, "text.format"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "name": "f"}}, "tool_choice"),
])
def test_strict_models_refuse_what_they_cannot_enforce(http: TestClient, body: dict[str, object], param: str) -> None:
    assert_envelope(http.post("/v1/responses", json={"model": "picky", "input": "hi", **body}), 400, param=param)


def test_chat_response_format_reaches_the_policy(http: TestClient) -> None:
    body = {"model": "picky", "messages": [{"role": "user", "content": "hi"}]}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    assert_envelope(http.post("/v1/chat/completions", json={**body, "response_format": fmt}), 400,
                    param="text.format")
    assert http.post("/v1/chat/completions", json={**body, "response_format": {"type": "text"}}).status_code == 200
    assert_envelope(http.post("/v1/chat/completions", json={**body, "response_format": {"type": "yaml"}}), 400,
                    param="response_format")


def test_a_bad_schema_is_a_400_even_where_nothing_is_enforced(http: TestClient) -> None:
    response = http.post("/v1/responses", json={"model": "plain", "input": "hi", "text": {
        "format": {"type": "json_schema", "name": "x", "schema": {"type": "bogus"}}}})
    assert_envelope(response, 400, param="text.format.schema")


def test_the_manifest_setting_is_checked() -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match=r"constraints"):
        make_config("models: [{name: m, adapter: scripted, constraints: sometimes}]")


def test_engine_verdicts_are_computed_once_per_app_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Codex declares the same apply_patch grammar on every request: the engine checks it once."""
    import gateway.constraints as constraints

    calls: list[str] = []
    real = constraints.grammar_problem

    def counted(syntax: str, definition: str) -> str:
        calls.append(definition)
        return real(syntax, definition)

    monkeypatch.setattr(constraints, "grammar_problem", counted)
    checks = constraints.EngineChecks(size=2)
    good, bad = 'start: "a"+', "start: ("
    assert [checks.grammar("lark", good) for _ in range(3)] == ["", "", ""]
    assert checks.grammar("lark", bad) != "" and checks.grammar("lark", bad) == real("lark", bad)
    assert calls == [good, bad]
    checks.grammar("regex", "a+")  # a third verdict: the least recently used one (good) goes
    checks.grammar("lark", good)
    assert calls == [good, bad, "a+", good]


def test_one_app_checks_a_repeated_tool_grammar_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.constraints as constraints

    calls: list[str] = []
    real = constraints.grammar_problem
    monkeypatch.setattr(constraints, "grammar_problem", lambda s, d: calls.append(d) or real(s, d))
    tool = {"type": "custom", "name": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "x"'}}
    with TestClient(create_app(make_config())) as client:
        for _ in range(3):
            answer = client.post("/v1/responses", json={"model": "scripted", "input": "hi", "tools": [tool]})
            assert answer.status_code == 200, answer.text
    assert calls == ['start: "x"']


def test_guarded_calls_under_auto_are_said_unenforced_where_the_model_cannot(http: TestClient) -> None:
    """tool_choice auto with a strict function on a model that cannot hold calls: answered, never a 400 (nothing is
    forced), and said so."""
    strict = {"type": "function", "name": "f", "strict": True,
              "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}
    loose = {**strict, "strict": False}
    for model in ("plain", "picky"):
        answer = http.post("/v1/responses", json={"model": model, "input": "hi", "tools": [strict]})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gateway-degraded"] == "constraint:tools:ignore"
    answer = http.post("/v1/responses", json={"model": "plain", "input": "hi", "tools": [loose]})
    assert "x-gateway-degraded" not in answer.headers  # nothing asked to be held
