"""Stored responses over HTTP: retrieve (or replay a background stream), delete, input items, cancel."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post
from litestar import Response as HttpResponse
from litestar.params import FromPath
from litestar.response import Stream

from gateway.access import ACCESS, Access, caller_of
from gateway.api.bodies import json_response
from gateway.api.context import runtime_of, store_of
from gateway.background import follow
from gateway.errors import InvalidRequest
from gateway.normalize import item_to_wire
from gateway.sse import SSE_HEADERS
from gateway.store import response_not_found

__all__ = ["STORED_ROUTES", "integer_param", "order_param", "page_items"]

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise InvalidRequest(f"Invalid value for '{name}': expected true or false.", param=name)


def integer_param(value: str | None, name: str, *, default: int, low: int, high: int | None = None) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"Invalid value for '{name}': expected an integer.", param=name) from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidRequest(f"Invalid value for '{name}': must be {bounds}.", param=name)
    return number


def order_param(value: str | None) -> str:
    """`order` of a list: `desc` (newest first, the API's default) or `asc`."""
    if value is None:
        return "desc"
    if value not in ("asc", "desc"):
        raise InvalidRequest("Invalid value for 'order': expected 'asc' or 'desc'.", param="order")
    return value


def page_items(items: list[dict[str, Any]], *, after: str | None, limit: int, order: str) -> dict[str, Any]:
    """A `ResponseItemList` page: `order` desc lists the newest item first; `after` is an item id cursor."""
    ordered = items[::-1] if order == "desc" else items
    start = 0
    if after is not None:
        position = next((i for i, item in enumerate(ordered) if item.get("id") == after), None)
        if position is None:
            raise InvalidRequest(f"No input item with id '{after}' in this response.", param="after")
        start = position + 1
    data = ordered[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(ordered),
    }


async def _check_key(request: Request[Any, Any, Any], response_id: str, model: str | None = None) -> None:
    """A key limited to some models sees only responses of those models (others look absent: 404)."""
    caller = caller_of(request)
    if caller.sees_everything:
        return
    if model is None:
        stored = await store_of(request).get(response_id)
        if stored is None:
            raise response_not_found(response_id)
        model = stored.response.model
    if not caller.may_read(model, runtime_of(request).config):
        raise response_not_found(response_id)


@get("/v1/responses/{response_id:str}", opt={ACCESS: Access.CLIENT})
async def retrieve_response(request: Request[Any, Any, Any], response_id: FromPath[str]) -> HttpResponse[Any]:
    store = store_of(request)
    query = request.query_params
    stream = _flag(query.get("stream"), "stream")
    # A Redis stream entry id is 64 bits: event N is entry 0-(N+1).
    after = integer_param(query.get("starting_after"), "starting_after", default=-1, low=-1, high=2**63 - 2)
    stored = await store.get(response_id)
    if stored is None:
        raise response_not_found(response_id)
    await _check_key(request, response_id, stored.response.model)
    if stored.response.status in ("queued", "in_progress"):
        if await store.reap(response_id) == "reaped":  # its owner died: it is failed now
            stored = await store.get(response_id) or stored
    if not stream:
        return json_response(stored.response)
    if not stored.background:
        raise InvalidRequest(
            f"Response '{response_id}' was not created with `background: true`; only background responses "
            "can be streamed again.",
            param="stream",
        )
    return Stream(follow(store, response_id, after), media_type="text/event-stream", headers=SSE_HEADERS)


@delete("/v1/responses/{response_id:str}", status_code=200, opt={ACCESS: Access.CLIENT})
async def delete_response(request: Request[Any, Any, Any], response_id: FromPath[str]) -> HttpResponse[Any]:
    await _check_key(request, response_id)
    if not await store_of(request).delete(response_id):
        raise response_not_found(response_id)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


@get("/v1/responses/{response_id:str}/input_items", opt={ACCESS: Access.CLIENT})
async def list_input_items(request: Request[Any, Any, Any], response_id: FromPath[str]) -> HttpResponse[Any]:
    query = request.query_params
    limit = integer_param(query.get("limit"), "limit", default=20, low=1, high=100)
    order = order_param(query.get("order"))
    await _check_key(request, response_id)
    items = await store_of(request).input_items(response_id)
    if items is None:
        raise response_not_found(response_id)
    return json_response(page_items([item_to_wire(item) for item in items], after=query.get("after"), limit=limit, order=order))


@post("/v1/responses/{response_id:str}/cancel", status_code=200, opt={ACCESS: Access.CLIENT})
async def cancel_response(request: Request[Any, Any, Any], response_id: FromPath[str]) -> HttpResponse[Any]:
    await _check_key(request, response_id)
    stored = await store_of(request).cancel(response_id)
    return json_response(stored.response)


STORED_ROUTES = [retrieve_response, delete_response, list_input_items, cancel_response]
