"""`Run`: the order of its closing work, its store writes, and what it leaves in the log line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from gateway.errors import StoreUnavailable
from gateway.log import RequestRecord
from gateway.normalize import decode_request
from gateway.protocol import Response
from gateway.run import DEGRADED_HEADER, Run
from gateway.runtime import Runtime
from gateway.service import prepare_response
from gateway.store import Finished, TurnRecord, new_tag, tagged_id
from gateway.turn import Turn
from tests.conftest import make_config

MANIFEST = """
models:
  - {name: m, adapter: scripted, script: {chunk_chars: 2, steps: [{text: "hello there"}]}}
  - {name: slow, adapter: scripted, script: {chunk_chars: 1, delay_ms: 20, steps: [{text: "0123456789"}]}}
"""


class RecordingStore:
    """The store calls a run makes, in order; `fail_finish` makes the final write fail."""

    def __init__(self, log: list[str], *, fail_finish: bool = False, lease_seconds: float = 10.0) -> None:
        self.log = log
        self.fail_finish = fail_finish
        self.lease_seconds = lease_seconds
        self.finished: list[Response] = []
        self.heartbeats = 0

    async def heartbeat(self, response_id: str) -> str:
        self.heartbeats += 1
        return "ok"

    async def begin(self, record: TurnRecord, *, background: bool = False) -> None:
        self.log.append(f"begin:{record.response.status}")

    async def finish(self, response: Response, events: Any = (), conversation_items: Any = ()) -> Finished:
        if self.fail_finish:
            raise StoreUnavailable("down for the test")
        self.log.append(f"finish:{response.status}")
        self.finished.append(response)
        return Finished(outcome="saved")


class Gauge:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


@pytest.fixture
async def runtime() -> Iterator[Runtime]:
    runtime = Runtime(make_config(MANIFEST))
    await runtime.start()
    yield runtime  # type: ignore[misc]
    await runtime.aclose()


def make_run(runtime: Runtime, body: dict[str, Any], store: RecordingStore | None,
             gauge: Gauge | None = None) -> tuple[Run, RequestRecord]:
    tag = new_tag()
    request = decode_request(msgspec.json.encode(body))
    prepared = prepare_response(runtime.config, runtime.snapshot.adapters, request, {},
                                ids=lambda prefix: tagged_id(prefix, tag))
    turn = Turn(request=request, history=None, tag=tag, stored_input=list(request.input), new_item_ids=[])
    record = RequestRecord("req_1", "POST", "/v1/responses")
    run = Run(prepared, runtime=runtime, record=record, active_streams=gauge or Gauge(), store=store,  # type: ignore[arg-type]
              turn=turn if store is not None else None)
    return run, record


async def test_the_final_state_is_stored_before_the_terminal_event_leaves(runtime: Runtime) -> None:
    order: list[str] = []
    run, record = make_run(runtime, {"model": "m", "input": "hi"}, RecordingStore(order))
    await run.begin()
    async for batch in run.events():
        order += [e.__struct_config__.tag for e in batch if e.__struct_config__.tag in ("response.created",
                                                                                      "response.completed")]
    assert order == ["begin:in_progress", "response.created", "finish:completed", "response.completed"]
    assert record.fields["response_status"] == "completed" and record.fields["output_tokens"] > 0
    assert runtime.in_flight(run.prepared.adapter) == 0  # the lease is back


async def test_a_failed_final_write_turns_the_ending_into_response_failed(runtime: Runtime) -> None:
    run, record = make_run(runtime, {"model": "m", "input": "hi"}, RecordingStore([], fail_finish=True))
    await run.begin()
    types = [e.__struct_config__.tag async for batch in run.events() for e in batch]
    assert types[-1] == "response.failed" and "response.completed" not in types
    assert record.fields["error_code"] == "store_unavailable"
    run, _ = make_run(runtime, {"model": "m", "input": "hi"}, RecordingStore([], fail_finish=True))
    await run.begin()
    with pytest.raises(StoreUnavailable):
        await run.collect()  # without streaming: the 503 itself


async def test_a_consumer_that_leaves_early_gets_the_run_stored_cancelled(runtime: Runtime) -> None:
    order: list[str] = []
    store = RecordingStore(order)
    gauge = Gauge()
    run, record = make_run(runtime, {"model": "slow", "input": "hi"}, store, gauge)
    await run.begin()
    events = run.events()
    async for batch in events:
        if any(e.__struct_config__.tag == "response.output_text.delta" for e in batch):
            assert gauge.value == 1
            break
    await events.aclose()  # what a client disconnect does to the SSE generator
    assert order == ["begin:in_progress", "finish:cancelled"]
    assert store.finished[0].output  # what was generated so far is kept
    assert record.fields["response_status"] == "cancelled"
    assert gauge.value == 0 and runtime.in_flight(run.prepared.adapter) == 0


async def test_unstored_and_background_runs_make_no_foreground_writes(runtime: Runtime) -> None:
    run, _ = make_run(runtime, {"model": "m", "input": "hi", "store": False}, RecordingStore([]))
    await run.begin()
    assert (await run.collect()).status == "completed"
    order: list[str] = []
    run, _ = make_run(runtime, {"model": "m", "input": "hi", "background": True}, RecordingStore(order))
    await run.begin()
    types = [e.__struct_config__.tag async for batch in run.events() for e in batch]
    assert types[:2] == ["response.created", "response.queued"]
    assert order == ["begin:queued"]  # the background owner logs and stores the end, not the run


async def test_events_before_begin_is_a_programming_error(runtime: Runtime) -> None:
    run, _ = make_run(runtime, {"model": "m", "input": "hi"}, None)
    with pytest.raises(RuntimeError):
        await run.events().__anext__()


async def test_degradations_reach_the_header_and_the_log_line(runtime: Runtime) -> None:
    run, record = make_run(runtime, {"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}, None)
    assert run.headers[DEGRADED_HEADER] == ", ".join(record.fields["degradations"])
    assert record.fields["degradations"]


@pytest.mark.parametrize("stream", [False, True])
def test_control_characters_in_tool_labels_never_break_the_answer(stream: bool) -> None:
    import httpx

    from tests.conftest import serve

    label = "evil\r\nx-injected: 1\x00\u2603"
    body = {"model": "m", "input": "hi", "stream": stream, "tools": [{"type": "mcp", "server_label": label}]}
    with serve(make_config(MANIFEST)) as base, httpx.Client(base_url=base, timeout=10) as http:
        response = http.post("/v1/responses", json=body)
    assert response.status_code == 200
    assert "x-injected" not in response.headers
    header = response.headers[DEGRADED_HEADER]
    assert "evil??x-injected: 1??" in header and all(" " <= c <= "~" for c in header)
    assert response.text.rstrip().endswith("}")  # the whole answer arrived


async def test_a_stored_foreground_run_renews_its_lease_while_it_runs(runtime: Runtime) -> None:
    store = RecordingStore([], lease_seconds=0.06)  # a renewal every 20 ms; the slow script runs ~200 ms
    run, _ = make_run(runtime, {"model": "slow", "input": "hi"}, store)
    await run.begin()
    await run.collect()
    assert store.heartbeats >= 3
    beats = store.heartbeats
    await asyncio.sleep(0.1)
    assert store.heartbeats == beats  # and stops renewing once it ended
