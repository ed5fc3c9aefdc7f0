"""`RedisStore`: the response store and the background event log over one redis.asyncio client.

Every method is one round trip: a Lua script on one chain's slot, a pipeline, an HMGET
or an XREAD. Failures to reach Redis become `StoreUnavailable` (503) at once; the client
reconnects by itself on the next call. Round trips pass a gate (gate.py): at most
`store.max_connections` at once, the rest wait their turn. `memory://` counts what it holds
and evicts whole chains to stay under `store.memory_max_mb` (budget.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError

from gateway.config import StoreConfig
from gateway.errors import (
    Conflict,
    GatewayError,
    InvalidRequest,
    NotFound,
    PreviousResponseNotFound,
    StoreUnavailable,
)
from gateway.events import Event
from gateway.protocol import InputItem, Response
from gateway.store import scripts
from gateway.store.base import ChainTurn, Finished, LoggedEvent, Signal, StoredItem, StoredResponse, TurnRecord
from gateway.store.budget import KEY_OVERHEAD, MemoryBudget, size_of
from gateway.store.codec import (
    LOST_EVENT_TEMPLATE,
    decode_input,
    decode_item,
    decode_output,
    decode_response,
    encode,
    encode_item,
    event_triples,
    item_id,
    present,
)
from gateway.store.connection import UNAVAILABLE, connect, describe_url
from gateway.store.conversations import Conversations, conversation_busy, conversation_not_found
from gateway.store.gate import Gate, NoSlot
from gateway.store.keys import Keys, tag_of

__all__ = ["RedisStore", "response_not_found"]

log = structlog.get_logger()

# How long a cancel answer waits for a running owner's partial output: an owner that is generating sees the
# cancel at its next append, an idle one at its next heartbeat (every 0.5 s).
CANCEL_WAIT_SECONDS = 2.0

def response_not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


class RedisStore:
    """Implements `ResponseStore` and `EventLog` (see `base.py`)."""

    def __init__(
        self,
        client: Any,
        *,
        kind: str,
        url: str,
        prefix: str,
        ttl_seconds: int,
        max_chain_depth: int,
        timeout_seconds: float,
        max_connections: int = 64,
        memory_max_bytes: int | None = None,
        lease_seconds: float = 10.0,
    ) -> None:
        self.client = client
        self.kind = kind
        self.keys = Keys(prefix)
        self.max_chain_depth = max_chain_depth
        self._url = describe_url(url)
        self.ttl_ms = ttl_seconds * 1000  # every key's life (conversations.py uses it too)
        self.conversations = Conversations(self)
        self.lease_seconds = lease_seconds  # a running response's owner renews it well within this
        self._lease_ms = int(lease_seconds * 1000)
        self._max_wait = max(0.05, timeout_seconds / 2)  # a blocking read must end before the socket timeout
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in ("BEGIN", "FINISH", "CHAIN", "APPEND", "HEARTBEAT", "CANCEL", "DELETE", "REAP", "EVICT")
        }
        self.gate = Gate(max_connections, timeout_seconds)
        self.budget = MemoryBudget(memory_max_bytes, ttl_seconds) if memory_max_bytes is not None else None
        self._stall_logged = 0.0
        self.state = "unknown"
        self.error: str | None = None
        self.errors = 0
        # Set by the app to feed the store latency histogram: (operation, seconds) per successful call.
        self.observe: Callable[[str, float], None] | None = None

    @classmethod
    def from_config(cls, config: StoreConfig, **overrides: Any) -> RedisStore:
        client, kind = connect(config)
        options: dict[str, Any] = {
            "kind": kind,
            "url": config.url,
            "prefix": config.key_prefix,
            "ttl_seconds": config.ttl_seconds,
            "max_chain_depth": config.max_chain_depth,
            "timeout_seconds": config.timeout_seconds,
            "max_connections": config.max_connections,
            "lease_seconds": config.owner_lease_seconds,
            # fakeredis lives in this process and never evicts: the store bounds it itself.
            "memory_max_bytes": config.memory_max_mb * 1024 * 1024 if kind == "memory" else None,
        }
        return cls(client, **{**options, **overrides})

    # ------------------------------------------------------------ plumbing

    @contextlib.asynccontextmanager
    async def _reach(self, operation: str, *, gated: bool = True) -> AsyncIterator[None]:
        """One round trip: a gate slot (unless the caller holds one), errors mapped to 503 / 500.
        The latency observed includes the wait for the slot: it is what the store adds to a request."""
        started = time.perf_counter()
        if gated:
            try:
                await self.gate.enter()
            except NoSlot:
                raise (_unavailable() if self.state == "unavailable" else self._stalled()) from None
        try:
            yield
        except UNAVAILABLE as exc:
            self.errors += 1
            if self.state != "unavailable":
                log.warning("store_unavailable", url=self._url, error=str(exc))
                self.gate.store_down()
            self.state, self.error = "unavailable", f"{type(exc).__name__}: {exc}"
            raise _unavailable() from None
        except RedisError as exc:
            self.errors += 1
            log.error("store_error", url=self._url, exc_info=exc)
            raise GatewayError("The response store failed.", code="store_error") from None
        else:
            if self.state != "ok":
                log.info("store_available", url=self._url)
            self.state, self.error = "ok", None
            if self.observe is not None:
                self.observe(operation, time.perf_counter() - started)
        finally:
            if gated:
                self.gate.leave()

    def _stalled(self) -> StoreUnavailable:
        """No slot was freed for the whole store timeout: every round trip in flight is stuck. Only the
        round trips themselves tell whether the store is down, so `state` stays as it is."""
        now = time.monotonic()
        if now - self._stall_logged > 10:  # at most one line per 10 s however many wait
            self._stall_logged = now
            log.warning("store_stalled", url=self._url, max_connections=self.gate.size, waiting=self.gate.waiting,
                        timeouts=self.gate.timeouts)
        return StoreUnavailable(
            f"The response store is not answering: no request to it finished for {self.gate.timeout:g}s. "
            "Retry shortly."
        )

    async def _run(self, script: str, tag: str, response_id: str, *args: Any) -> Any:
        key = self.keys.record(tag, response_id)
        async with self._reach(script.lower()):
            return await self._scripts[script](keys=[key], args=[self.keys.space(tag), response_id, *args])

    # ------------------------------------------------------------- records

    async def chain(self, response_id: str) -> list[ChainTurn]:
        tag = tag_of(response_id)
        if tag is None:
            raise PreviousResponseNotFound(response_id)
        reply = await self._run("CHAIN", tag, response_id, self.max_chain_depth, self.ttl_ms)
        kind = reply[0]
        if kind == b"missing":
            missing, depth = reply[1].decode(), int(reply[2])
            if depth == 0:
                raise PreviousResponseNotFound(response_id)
            raise PreviousResponseNotFound(
                missing,
                f"It is the ancestor {depth} turn(s) before '{response_id}' in its chain, "
                "and has expired or was deleted.",
            )
        if kind == b"cycle":
            raise InvalidRequest(
                f"The chain of previous responses from '{response_id}' loops back to '{reply[1].decode()}'.",
                param="previous_response_id",
                code="previous_response_chain_invalid",
            )
        if kind == b"depth":
            raise InvalidRequest(
                f"The chain ending at '{response_id}' has more than {self.max_chain_depth} turns "
                "(store.max_chain_depth); start a new chain or send the history as input.",
                param="previous_response_id",
                code="previous_response_chain_too_long",
            )
        turns = [
            ChainTurn(
                status=reply[j].decode(),
                input=decode_input(reply[j + 1]),
                output=decode_output(reply[j + 2]),
                model=reply[j + 3].decode() or (decode_response(reply[j + 4]).model if reply[j + 4] else None),
            )
            for j in range(1, len(reply), 5)
        ]
        turns.reverse()
        if self.budget is not None:
            self.budget.touch(tag)
        return turns

    async def items(self, item_ids: Sequence[str]) -> dict[str, StoredItem]:
        wanted = [(item_id, tag) for item_id in dict.fromkeys(item_ids) if (tag := tag_of(item_id)) is not None]
        if not wanted:
            return {}
        async with self._reach("items"):
            pipe = self.client.pipeline(transaction=False)
            for item_id, tag in wanted:
                pipe.get(self.keys.item(tag, item_id))
            values = await pipe.execute()
        return {item_id: decode_item(blob) for (item_id, _), blob in zip(wanted, values, strict=True) if blob}

    async def begin(self, record: TurnRecord, *, background: bool = False) -> None:
        response = record.response
        tag = _tag(response.id)
        fresh = set(record.new_item_ids)
        pairs: list[Any] = []
        for item in record.input:
            identifier = item_id(item)
            if identifier in fresh:
                pairs += [identifier, encode_item(item, response.model)]
        header, stored_input = encode(msgspec.structs.replace(response, output=[])), encode(record.input)
        new_ids = "\n".join(record.new_item_ids)
        written = await self._run(
            "BEGIN", tag, response.id, self.ttl_ms, response.previous_response_id or "", response.status, header,
            stored_input, new_ids, "1" if background else "0", self._lease_ms, response.model,
            record.conversation or "", record.conversation_version, *pairs,
        )
        if isinstance(written, bytes):  # the conversation refused the turn
            raise _conversation_refusal(written.decode(), record.conversation or "")
        if written:
            keys = 2 + len(pairs) // 2  # the record, its owner's lease, its items
            await self._account(tag, response.id, len(stored_input) + len(new_ids) + size_of(pairs)
                                + keys * KEY_OVERHEAD, r=len(header))

    async def finish(
        self, response: Response, events: Sequence[Event] = (), conversation_items: Sequence[Any] = ()
    ) -> Finished:
        tag = _tag(response.id)
        ids = [item.id for item in response.output if isinstance(item.id, str) and tag_of(item.id) == tag]
        pairs: list[Any] = []
        for item in response.output:
            if item.id in ids:
                pairs += [item.id, encode_item(item, response.model)]
        header, output = encode(msgspec.structs.replace(response, output=[])), encode(response.output)
        logged = event_triples(events)
        reply = await self._run(
            "FINISH", tag, response.id, self.ttl_ms, response.status, header, output, "\n".join(ids), len(ids),
            *pairs, len(conversation_items) // 2, *conversation_items, *logged,
        )
        if reply[0] == b"ok":
            size = size_of(ids) + size_of(pairs) + len(pairs) // 2 * KEY_OVERHEAD + size_of(logged)
            await self._account(tag, response.id, size, r=len(header), o=len(output))
            return Finished(outcome="saved")
        if reply[0] == b"missing":
            return Finished(outcome="missing")
        return Finished(outcome="conflict", status=reply[1].decode())

    async def get(self, response_id: str) -> StoredResponse | None:
        tag = tag_of(response_id)
        if tag is None:
            return None
        async with self._reach("get"):
            status, blob, output, background = await self.client.hmget(
                self.keys.record(tag, response_id), ["s", "r", "o", "b"]
            )
        if status is None:
            return None
        if self.budget is not None:
            self.budget.touch(tag)
        response = present(decode_response(blob), status.decode(), decode_output(output))
        return StoredResponse(response=response, background=background == b"1")

    async def input_items(self, response_id: str) -> list[InputItem] | None:
        tag = tag_of(response_id)
        if tag is None:
            return None
        async with self._reach("input_items"):
            status, blob = await self.client.hmget(self.keys.record(tag, response_id), ["s", "i"])
        return None if status is None else decode_input(blob)

    async def delete(self, response_id: str) -> bool:
        tag = tag_of(response_id)
        if tag is None:
            return False
        deleted = bool(await self._run("DELETE", tag, response_id))
        if self.budget is not None:
            self.budget.remove(tag, [response_id])
        return deleted

    # ----------------------------------------------------------- event log

    async def append(self, response_id: str, events: Sequence[Event], status: str | None = None) -> Signal:
        tag, logged = _tag(response_id), event_triples(events)
        reply = await self._run("APPEND", tag, response_id, self.ttl_ms, status or "", *logged)
        if reply == b"ok" and logged:
            await self._account(tag, response_id, size_of(logged))
        return reply.decode()

    async def heartbeat(self, response_id: str) -> Signal:
        reply = await self._run("HEARTBEAT", _tag(response_id), response_id, self._lease_ms)
        return reply.decode()

    async def read(self, response_id: str, after: int, wait: float) -> list[LoggedEvent]:
        key = self.keys.events(_tag(response_id), response_id)
        block = int(min(wait, self._max_wait) * 1000) if wait > 0 else None  # never 0: that blocks forever
        if block is None:
            async with self._reach("read"):
                reply = await self.client.xread({key: f"0-{after + 1}"}, count=512, block=block)
        else:
            if not await self.gate.enter_blocking(block / 1000):
                return []  # no reader's slot within the wait: to the follower, a wait without events
            try:
                async with self._reach("read", gated=False):
                    reply = await self.client.xread({key: f"0-{after + 1}"}, count=512, block=block)
            finally:
                self.gate.leave_blocking()
        entries = reply[0][1] if reply else []
        return [
            LoggedEvent(sequence_number=int(entry_id.split(b"-")[1]) - 1, type=fields[b"t"].decode(), data=fields[b"d"])
            for entry_id, fields in entries
        ]

    async def cancel(self, response_id: str, *, wait: float = CANCEL_WAIT_SECONDS) -> StoredResponse:
        """Cancel a background response; the answer holds what its owner generated if it writes that within
        `wait` seconds (it sees the cancel at its next append or heartbeat, well within that)."""
        tag = tag_of(response_id)
        if tag is None:
            raise response_not_found(response_id)
        reply = await self._run("CANCEL", tag, response_id, self.ttl_ms)
        if reply[0] == b"missing":
            raise response_not_found(response_id)
        if reply[0] == b"foreground":
            raise InvalidRequest(
                f"Response '{response_id}' was not created with `background: true`; only background responses "
                "can be cancelled.",
                param="response_id",
            )
        status, blob, output = reply[1:4]
        if reply[4] == b"1":
            status, blob, output = await self._owner_ends(tag, response_id, wait) or (status, blob, output)
        response = present(decode_response(blob), status.decode(), decode_output(output))
        return StoredResponse(response=response, background=True)

    async def _owner_ends(self, tag: str, response_id: str, wait: float) -> list[bytes] | None:
        """The record once the running owner has written what it generated before the cancel; None if it has
        not within `wait` (a stalled or dead owner: its lease lapses and a reader ends the response later)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            async with self._reach("cancel"):
                if not await self.client.exists(self.keys.owner(tag, response_id)):
                    fields: list[bytes] = await self.client.hmget(self.keys.record(tag, response_id), ["s", "r", "o"])
                    return fields if fields[0] is not None else None
        return None

    async def reap(self, response_id: str) -> str:
        reply = await self._run("REAP", _tag(response_id), response_id, self.ttl_ms, LOST_EVENT_TEMPLATE)
        return reply.decode()

    # -------------------------------------------------------------- state

    async def health(self) -> dict[str, Any]:
        with contextlib.suppress(GatewayError):  # busy is not down: a ping that waited in vain changes nothing
            async with self._reach("ping"):
                await self.client.ping()
        health = {"backend": self.kind, "url": self._url, "state": self.state, "error": self.error,
                  "errors": self.errors, "pool": self.gate.describe()}
        if self.budget is not None:
            health["memory"] = self.budget.describe()
        return health

    # ------------------------------------------------------------- memory://

    async def _account(self, tag: str, response_id: str, size: int, **replacing: int) -> None:
        """memory://: count what a write added, and evict if that went over the bound."""
        if self.budget is None:
            return
        with contextlib.suppress(GatewayError):  # the write itself is stored; the next one evicts if this cannot
            if self.budget.add(tag, response_id, size, replacing):
                async with self._reach("sweep"):
                    await self.client.dbsize()  # fakeredis drops expired keys only when it counts or scans them
            await self.budget.shrink(self._evict_chain)

    async def _evict_chain(self, tag: str, response_ids: list[str]) -> bool:
        """Delete these responses whole (False, and nothing deleted, if one is still running)."""
        async with self._reach("evict"):
            reply = await self._scripts["EVICT"](keys=[self.keys.record(tag, response_ids[0])],
                                                 args=[self.keys.space(tag), *response_ids])
        return reply[0] == b"ok"

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):  # closing a client whose server is gone must not fail shutdown
            await self.client.aclose()


def _unavailable() -> StoreUnavailable:
    return StoreUnavailable(
        "The response store is unavailable. Retry shortly, or send `store: false` without "
        "`previous_response_id` or `item_reference` inputs."
    )


def _conversation_refusal(reason: str, conversation_id: str) -> GatewayError:
    if reason == "conversation_missing":
        return conversation_not_found(conversation_id, param="conversation")
    if reason == "conversation_locked":
        return conversation_busy(conversation_id)
    return Conflict(
        f"Conversation '{conversation_id}' changed while this response was prepared; send the request again.",
        param="conversation", code="conversation_changed",
    )


def _tag(response_id: str) -> str:
    tag = tag_of(response_id)
    if tag is None:  # ids reaching writes were issued by this gateway
        raise ValueError(f"not a store id: {response_id!r}")
    return tag
