"""The error hierarchy's envelopes: every 4xx an invalid request with a precise code, whoever raised it."""

from __future__ import annotations

import pytest
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.testing import TestClient

from gateway.app import create_app, to_gateway_error
from gateway.errors import ContextLengthExceeded, GatewayError, StoreUnavailable, error_type, validation_code
from tests.conftest import make_config
from tests.test_routes import assert_envelope

MANIFEST = "models:\n  - {name: echo, adapter: scripted, script: {mode: echo}}\n"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (ValidationException("Invalid path parameter"), 400, "invalid_value"),
        (NotAuthorizedException("no"), 401, "invalid_api_key"),
        (HTTPException(status_code=415, detail="Unsupported media type"), 415, "unsupported_media_type"),
        (HTTPException(status_code=418, detail="teapot"), 418, "http_418"),
    ],
)
def test_litestar_4xx_are_invalid_requests_with_a_code(exc: HTTPException, status: int, code: str) -> None:
    error = to_gateway_error(exc)
    assert (error.status, error.type, error.code) == (status, "invalid_request_error", code)
    assert error.message == exc.detail


def test_an_unexpected_exception_is_a_500_server_error() -> None:
    error = to_gateway_error(RuntimeError("boom"))
    assert (error.status, error.type, error.code) == (500, "server_error", "server_error")
    assert "boom" not in error.message  # internals stay in the log


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Object missing required field `model`", "missing_required_parameter"),
        ("Object contains unknown field `x`", "unknown_parameter"),
        ("Expected `int`, got `str`", "invalid_type"),
        ("Invalid enum value 'loud'", "invalid_value"),
    ],
)
def test_validation_messages_map_to_openai_codes(text: str, code: str) -> None:
    assert validation_code(text) == code


def test_error_type_follows_the_hierarchy() -> None:
    assert error_type(ContextLengthExceeded.code) == "invalid_request_error"
    assert error_type(StoreUnavailable.code) == "server_error"
    assert error_type("something_new") == "server_error"
    assert error_type(GatewayError.code) == "server_error"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{", None, "invalid_json"),
        (b"[1]", None, "invalid_type"),
        (b'{"model": "echo", "input": [{"content": "x"}]}', "input[0].type", "missing_required_parameter"),
        (b'{"model": "echo", "input": "x", "temperature": "hot"}', "temperature", "invalid_type"),
        (b'{"input": "x"}', "model", "missing_required_parameter"),
        (b'{"model": "echo", "input": "x", "truncation": "sideways"}', "truncation", "invalid_value"),
    ],
)
def test_request_errors_over_http_carry_a_precise_code(body: bytes, param: str | None, code: str) -> None:
    with TestClient(app=create_app(make_config(MANIFEST))) as client:
        for path in ("/v1/responses", "/v1/chat/completions"):
            if path.endswith("completions") and param not in (None, "model", "temperature"):
                continue  # chat bodies have their own shape
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            error = assert_envelope(response, 400, param=param, code=code)
            assert error["type"] == "invalid_request_error"


def test_unknown_routes_and_methods_keep_their_codes() -> None:
    with TestClient(app=create_app(make_config(MANIFEST))) as client:
        assert_envelope(client.get("/v1/nothing"), 404, code="not_found")
        assert_envelope(client.put("/v1/responses"), 405, code="method_not_allowed")
