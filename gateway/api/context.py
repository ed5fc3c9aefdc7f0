"""What a route takes from the request: the runtime, the store, the log record, the caller;
and the two steps every generating route shares (authorize the model, start a `Run`)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from gateway.access import caller_of
from gateway.errors import PermissionDenied
from gateway.log import RequestRecord
from gateway.run import Run
from gateway.runtime import Runtime
from gateway.service import Prepared
from gateway.store import RedisStore
from gateway.turn import Turn

__all__ = ["authorize", "new_run", "record_of", "runtime_of", "store_of"]

AnyRequest = Request[Any, Any, Any]


def runtime_of(request: AnyRequest) -> Runtime:
    return request.app.state.runtime


def store_of(request: AnyRequest) -> RedisStore:
    return request.app.state.store


def record_of(request: AnyRequest) -> RequestRecord:
    return request.scope["state"]["record"]


def authorize(request: AnyRequest, prepared: Prepared) -> None:
    """The caller must be allowed the model: 403 before any work."""
    caller = caller_of(request)
    if not caller.may_use(prepared.model):
        name = caller.key.name if caller.key is not None else ""
        raise PermissionDenied(f"The API key '{name}' may not use the model '{prepared.model.name}'.",
                               param="model", code="model_not_allowed")


def new_run(request: AnyRequest, prepared: Prepared, turn: Turn | None = None) -> Run:
    """A `Run` for this request (stored when `turn` is given and the request says `store`)."""
    record = record_of(request)
    record.fields["client"] = request.headers.get("user-agent", "")[:80]
    return Run(
        prepared,
        runtime=runtime_of(request),
        record=record,
        active_streams=request.app.state.metrics.active_streams.labels(prepared.model.name),
        store=store_of(request) if turn is not None else None,
        turn=turn,
    )
