"""Following a background response's event log: every way the log can end ends the stream."""

from __future__ import annotations

import json
from typing import Any

from gateway.background import follow
from gateway.config import StoreConfig
from gateway.errors import StoreUnavailable
from gateway.events import ResponseInProgress
from gateway.protocol import Response
from gateway.store import LoggedEvent, RedisStore, TurnRecord, new_tag, tagged_id
from tests.sse import response_events


class ScriptedLog:
    """Plays read results and record statuses in order; records what follow() asked."""

    def __init__(self, reads: list[Any], statuses: list[str]) -> None:
        self.reads = reads
        self.statuses = statuses
        self.calls: list[tuple[str, Any]] = []

    async def read(self, response_id: str, after: int, wait: float) -> list[LoggedEvent]:
        self.calls.append(("read", (after, wait)))
        result = self.reads.pop(0) if self.reads else []
        if isinstance(result, Exception):
            raise result
        return result  # type: ignore[no-any-return]

    async def reap(self, response_id: str) -> str:
        self.calls.append(("reap", None))
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


def event(seq: int, kind: str = "response.output_text.delta") -> LoggedEvent:
    return LoggedEvent(sequence_number=seq, type=kind, data=json.dumps({"type": kind, "sequence_number": seq}).encode())


async def collect(log: ScriptedLog, after: int = -1) -> list[dict[str, Any]]:
    chunks = [chunk async for chunk in follow(log, "resp_x", after, wait=0.5)]  # type: ignore[arg-type]
    return response_events(b"".join(chunks))


async def test_a_run_that_ends_between_read_and_status_check_is_still_delivered() -> None:
    log = ScriptedLog(reads=[[], [event(0), event(1, "response.completed")]], statuses=["completed"])
    assert [e["sequence_number"] for e in await collect(log)] == [0, 1]
    assert log.calls[0] == ("read", (-1, 0.0))  # the first read does not wait


async def test_live_events_then_the_terminal_one() -> None:
    log = ScriptedLog(reads=[[event(0)], [], [event(1), event(2, "response.failed")]], statuses=["in_progress"])
    assert [e["sequence_number"] for e in await collect(log)] == [0, 1, 2]
    assert [c for c in log.calls if c[0] == "read"][1] == ("read", (0, 0.5))


async def test_nothing_after_the_end_ends_at_once() -> None:
    log = ScriptedLog(reads=[], statuses=["completed"])
    assert await collect(log, after=40) == []
    assert len(log.calls) == 4  # read, status, one more read, status


async def test_a_cancel_waits_one_heartbeat_for_its_owner_then_gives_up() -> None:
    arrives = ScriptedLog(reads=[[], [], [event(5, "error")]], statuses=["cancelled"])
    assert [e["type"] for e in await collect(arrives, after=4)] == ["error"]
    never = ScriptedLog(reads=[], statuses=["cancelled"])
    assert await collect(never, after=4) == []
    assert sum(1 for c in never.calls if c[0] == "read") == 3


async def test_a_deleted_response_ends_and_a_store_failure_is_an_error_event() -> None:
    assert await collect(ScriptedLog(reads=[], statuses=["missing"])) == []
    failing = ScriptedLog(reads=[[event(0)], StoreUnavailable("down")], statuses=["in_progress"])
    events = await collect(failing)
    assert events[-1] == {"type": "error", "sequence_number": 1, "code": "store_unavailable", "message": "down",
                          "param": None}


async def test_an_orphaned_run_is_failed_and_its_followers_released() -> None:
    store = RedisStore.from_config(StoreConfig(url="memory://"))
    tag = new_tag()
    response = Response(id=tagged_id("resp", tag), created_at=0, status="queued", model="m", background=True)
    await store.begin(TurnRecord(response=response, input=[]), background=True)
    await store.append(response.id, [ResponseInProgress(sequence_number=0, response=response)], status="in_progress")
    await store.client.delete(f"{store.keys.space(tag)}:o:{response.id}")  # the owning process died
    events = response_events(b"".join([chunk async for chunk in follow(store, response.id, -1, wait=0.2)]))
    assert [e["type"] for e in events] == ["response.in_progress", "error"]
    assert events[-1]["code"] == "response_lost" and events[-1]["sequence_number"] == 1
    await store.aclose()


async def test_a_cancel_that_races_the_end_keeps_the_output_and_ends_the_log_cancelled() -> None:
    import asyncio
    from collections.abc import AsyncIterator
    from types import SimpleNamespace

    from gateway.adapters.base import Finish, TextDelta
    from gateway.adapters.scripted import ScriptedAdapter
    from gateway.background import BackgroundRuns
    from gateway.events import Event
    from gateway.normalize import decode_request
    from gateway.service import prepare_response
    from tests.conftest import make_config

    config = make_config("models: [{name: m, adapter: scripted, script: {steps: [{text: hi}]}}]")
    store = RedisStore.from_config(config.store)
    tag = new_tag()
    prepared = prepare_response(
        config, {"m": ScriptedAdapter(config.models[0])},
        decode_request(b'{"model": "m", "input": "x", "background": true}'), {},
        ids=lambda prefix: tagged_id(prefix, tag),
    )
    await store.begin(TurnRecord(response=prepared.response, input=[]), background=True)
    assembler = prepared.assembler()
    cancels: list[asyncio.Task[Any]] = []

    async def batches() -> AsyncIterator[list[Event]]:
        yield assembler.start(queued=True)
        yield assembler.feed(TextDelta(text="partial answer"))
        # The cancel lands between the last append and the final write (its answer then waits for that write).
        cancels.append(asyncio.create_task(store.cancel(prepared.response.id)))
        for _ in range(100):
            if await store.client.exists(f"{store.keys.space(tag)}:c:{prepared.response.id}"):
                break
            await asyncio.sleep(0.005)
        yield assembler.feed(Finish())

    runs = BackgroundRuns(store)
    # A run whose events are scripted here, so the cancel lands exactly between two batches.
    scripted_run = SimpleNamespace(prepared=prepared, assembler=assembler, events=batches,
                                   conversation_items=lambda response: [])
    runs.launch(scripted_run)  # type: ignore[arg-type]
    for _ in range(200):
        if runs.active == 0:
            break
        await asyncio.sleep(0.01)
    stored = await store.get(prepared.response.id)
    assert stored is not None and stored.response.status == "cancelled"
    assert stored.response.output[0].content[0].text == "partial answer"  # type: ignore[union-attr]
    logged = await store.read(prepared.response.id, after=-1, wait=0)
    assert logged[-1].type == "error" and json.loads(logged[-1].data)["code"] == "response_cancelled"
    assert "response.completed" not in {e.type for e in logged}
    assert "response.output_item.done" in {e.type for e in logged}
    assert [e.sequence_number for e in logged] == sorted({e.sequence_number for e in logged})
    answer = await cancels[0]
    assert answer.response == stored.response
    await store.aclose()


async def test_the_cancel_answer_carries_what_was_generated() -> None:
    import asyncio
    from collections.abc import AsyncIterator
    from types import SimpleNamespace

    from gateway.adapters.base import TextDelta
    from gateway.adapters.scripted import ScriptedAdapter
    from gateway.background import BackgroundRuns
    from gateway.events import Event
    from gateway.normalize import decode_request
    from gateway.service import prepare_response
    from tests.conftest import make_config

    config = make_config("models: [{name: m, adapter: scripted, script: {steps: [{text: hi}]}}]")
    store = RedisStore.from_config(config.store)
    tag = new_tag()
    prepared = prepare_response(
        config, {"m": ScriptedAdapter(config.models[0])},
        decode_request(b'{"model": "m", "input": "x", "background": true}'), {},
        ids=lambda prefix: tagged_id(prefix, tag),
    )
    await store.begin(TurnRecord(response=prepared.response, input=[]), background=True)
    assembler = prepared.assembler()
    generated = asyncio.Event()

    async def batches() -> AsyncIterator[list[Event]]:
        yield assembler.start(queued=True)
        yield assembler.feed(TextDelta(text="partial answer"))
        generated.set()
        for _ in range(100):  # a model still generating, slowly: the owner sees the cancel at its next append
            await asyncio.sleep(0.05)
            yield assembler.feed(TextDelta(text="."))

    runs = BackgroundRuns(store)
    runs.launch(SimpleNamespace(prepared=prepared, assembler=assembler, events=batches,  # type: ignore[arg-type]
                                conversation_items=lambda response: []))
    await asyncio.wait_for(generated.wait(), 5)
    answer = await store.cancel(prepared.response.id)
    assert answer.response.status == "cancelled"
    text = answer.response.output[0].content[0].text  # type: ignore[union-attr]
    assert text.startswith("partial answer")
    stored = await store.get(prepared.response.id)
    assert stored is not None and stored.response == answer.response  # a later GET shows the same
    await store.aclose()
