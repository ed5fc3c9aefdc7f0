"""One error hierarchy, rendered as the OpenAI error envelope.

    GatewayError                      500 server_error
    ├── InvalidRequest                400 invalid_request_error, code invalid_value unless more precise
    │   │                                 (invalid_json, invalid_type, missing_required_parameter, unknown_parameter, ...)
    │   ├── PreviousResponseNotFound  400 code previous_response_not_found
    │   └── ContextLengthExceeded     400 code context_length_exceeded
    ├── AuthenticationFailed          401
    ├── PermissionDenied              403
    ├── NotFound                      404 (routes, responses, items)
    │   └── ModelNotFound             404 code model_not_found
    ├── MethodNotAllowed              405
    ├── Conflict                      409 (two turns in one conversation)
    ├── RequestTimeout                408 (the body stalled)
    ├── PayloadTooLarge               413
    ├── ClientDisconnected            499 (logged only: nobody is left to read it)
    ├── RateLimited                   429
    ├── UpstreamRejected              the upstream's own 4xx, passed through with its message
    ├── BadGateway                    502 code upstream_error (an upstream 5xx, refused, cut or garbled)
    ├── GatewayTimeout                504 code upstream_timeout
    └── ServiceUnavailable            503
        ├── ModelUnavailable          503 code model_unavailable
        └── StoreUnavailable          503 code store_unavailable

Raise these anywhere; one handler in `app.py` turns them into responses before
the first SSE byte, and `assemble.py` turns them into `response.failed` after it.
"""

from __future__ import annotations

import re

import msgspec

__all__ = [
    "AuthenticationFailed",
    "BadGateway",
    "ClientDisconnected",
    "Conflict",
    "ContextLengthExceeded",
    "ErrorBody",
    "ErrorEnvelope",
    "GatewayError",
    "GatewayTimeout",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "ModelUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PreviousResponseNotFound",
    "RateLimited",
    "RequestTimeout",
    "ServiceUnavailable",
    "StoreUnavailable",
    "UpstreamRejected",
    "envelope",
    "error_type",
    "param_from_validation",
    "retry_after",
    "validation_code",
]


class ErrorBody(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> ErrorBody:
        return ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code)


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code: str | None = "invalid_value"


class PreviousResponseNotFound(InvalidRequest):
    code = "previous_response_not_found"

    def __init__(self, response_id: str, detail: str | None = None) -> None:
        message = f"Previous response with id '{response_id}' not found."
        if detail:
            message = f"{message} {detail}"
        super().__init__(message, param="previous_response_id")


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code: str | None = None


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code: str | None = None


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or is not served here.", param="model")


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(GatewayError):
    """The request collides with another in progress (e.g. two turns in one conversation)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class ClientDisconnected(GatewayError):
    """The client went away while sending its request (nginx's 499): not a server error."""

    status = 499
    type = "invalid_request_error"
    code = "client_disconnected"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamRejected(GatewayError):
    """A 4xx an upstream model server answered: its status, type, param and code as it gave them."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self, message: str, *, status: int, type: str | None = None, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status
        if type:
            self.type = type


class BadGateway(GatewayError):
    status = 502
    type = "server_error"
    code = "upstream_error"


class GatewayTimeout(GatewayError):
    status = 504
    type = "server_error"
    code = "upstream_timeout"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"


class StoreUnavailable(ServiceUnavailable):
    code = "store_unavailable"


_ENVELOPE_ENCODER = msgspec.json.Encoder()


def envelope(error: GatewayError) -> bytes:
    """The JSON body of an error response."""
    return _ENVELOPE_ENCODER.encode(ErrorEnvelope(error=error.body()))


def error_type(code: str | None) -> str:
    """The envelope `type` that goes with a `code` (a `response.failed` event carries only the code)."""
    classes: list[type[GatewayError]] = [GatewayError]
    while classes:
        cls = classes.pop()
        if cls.code == code:
            return cls.type
        classes.extend(cls.__subclasses__())
    return GatewayError.type


def retry_after(error: GatewayError) -> str | None:
    """The `Retry-After` an error response carries: overload and unavailability are worth retrying soon."""
    return "1" if error.status in (429, 502, 503, 504) else None


_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")


def validation_code(text: str) -> str:
    """OpenAI's code for a msgspec validation message (its text, without the path)."""
    if _MISSING.match(text):
        return "missing_required_parameter"
    if text.startswith("Object contains unknown field"):
        return "unknown_parameter"
    if text.startswith("Expected `"):
        return "invalid_type"
    return "invalid_value"


def param_from_validation(message: str) -> tuple[str | None, str]:
    """Split a msgspec validation message into (param, text).

    `Expected int, got str - at $.input[2].content` → ("input[2].content", "Expected int, got str").
    A missing field is reported at the field itself, not at its parent object.
    """
    match = _PATH.search(message)
    path = match.group("path") if match else ""
    text = message[: match.start()] if match else message
    missing = _MISSING.match(text)
    if missing:
        path = f"{path}.{missing.group('field')}"
    param = path.lstrip(".") or None
    return param, text
