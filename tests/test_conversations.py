"""Conversations over HTTP with the official openai SDK: the whole life of one, responses run in it
(plain, streaming, background), two turns at once, and a store that stops answering mid-turn."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import make_config, serve
from tests.process import wait_for
from tests.redisproc import RedisProcess, need_redis_server

MANIFEST = """
store: {{url: "{url}", key_prefix: "conv-test", owner_lease_seconds: 1, timeout_seconds: 1}}
models:
  - name: echo
    adapter: scripted
    script: {{mode: echo, chunk_chars: 100000}}
  - name: slow
    adapter: scripted
    script: {{chunk_chars: 1, delay_ms: 20, steps: [{{text: "{text}"}}]}}
"""


def seen_by_model(response: Any) -> list[str]:
    """The user and assistant texts the echo model was shown."""
    messages = json.loads(response.output_text)["messages"]
    return [m["content"] for m in messages if m["role"] in ("user", "assistant")]


def texts(page: Any) -> list[str]:
    out = []
    for item in page.data:
        assert isinstance(item.content, list), item  # listed as parts, whatever short form the item came in
        out.append(item.content[0].text)
    return out


@pytest.fixture
def sdk() -> Any:
    with serve(make_config(MANIFEST.format(url="memory://", text="z" * 60))) as base:
        yield OpenAI(base_url=f"{base}/v1", api_key="dummy", max_retries=0, timeout=20)


def test_the_life_of_a_conversation(sdk: OpenAI) -> None:
    conversation = sdk.conversations.create(items=[{"type": "message", "role": "user", "content": "I am Ada."}],
                                            metadata={"topic": "names"})
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "names"}

    first = sdk.responses.create(model="echo", input="What is my name?", conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert seen_by_model(first) == ["I am Ada.", "What is my name?"]
    second = sdk.responses.create(model="echo", input="And again?", conversation={"id": conversation.id},
                                  stream=False)
    shown = seen_by_model(second)
    assert shown[:2] == ["I am Ada.", "What is my name?"] and shown[-1] == "And again?"
    assert shown[2] == first.output_text  # the first answer is part of the conversation now

    items = sdk.conversations.items.list(conversation.id, order="asc", limit=100)
    assert len(items.data) == 5 and texts(items)[3] == "And again?"
    assert [i.id for i in items.data][1] != [i.id for i in items.data][3]
    newest = sdk.conversations.items.list(conversation.id, limit=2)  # `desc` by default
    assert [i.id for i in newest.data] == [i.id for i in items.data][::-1][:2]

    one = sdk.conversations.items.retrieve(items.data[1].id, conversation_id=conversation.id)
    assert one.id == items.data[1].id
    after_delete = sdk.conversations.items.delete(items.data[1].id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    assert len(sdk.conversations.items.list(conversation.id).data) == 4
    added = sdk.conversations.items.create(conversation.id, items=[{"role": "user", "content": "extra"}])
    assert added.data[0].id.startswith("msg_")

    updated = sdk.conversations.update(conversation.id, metadata={"topic": "other"})
    assert updated.metadata == {"topic": "other"}
    assert sdk.conversations.retrieve(conversation.id).metadata == {"topic": "other"}
    deleted = sdk.conversations.delete(conversation.id)
    assert deleted.deleted and deleted.id == conversation.id
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="echo", input="hi", conversation=conversation.id)


def test_short_form_messages_are_listed_as_parts(sdk: OpenAI) -> None:
    base = str(sdk.base_url).rstrip("/")
    items = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"type": "message", "role": "developer", "content": "be brief"}]
    created = httpx.post(f"{base}/conversations", json={"items": items}, timeout=10).json()
    listed = httpx.get(f"{base}/conversations/{created['id']}/items", params={"order": "asc"}, timeout=10).json()
    assert [item["content"] for item in listed["data"]] == [
        [{"type": "input_text", "text": "hi"}],
        [{"type": "output_text", "text": "hello", "annotations": []}],
        [{"type": "input_text", "text": "be brief"}],
    ]
    response = sdk.responses.create(model="echo", input="plain string input")
    inputs = httpx.get(f"{base}/responses/{response.id}/input_items", timeout=10).json()["data"]
    assert [item["content"] for item in inputs] == [[{"type": "input_text", "text": "plain string input"}]]


def test_streaming_and_background_responses_in_a_conversation(sdk: OpenAI) -> None:
    conversation = sdk.conversations.create()
    events = list(sdk.responses.create(model="echo", input="streamed", conversation=conversation.id, stream=True))
    assert events[-1].type == "response.completed"
    queued = sdk.responses.create(model="echo", input="in the background", conversation=conversation.id,
                                  background=True)
    done = wait_for(lambda: (r := sdk.responses.retrieve(queued.id)).status == "completed" and r, 10, "background")
    assert done.conversation.id == conversation.id
    assert texts(sdk.conversations.items.list(conversation.id, order="asc"))[::2] == ["streamed", "in the background"]


def test_bad_combinations_are_400s(sdk: OpenAI) -> None:
    conversation = sdk.conversations.create()
    first = sdk.responses.create(model="echo", input="x")
    with pytest.raises(openai.BadRequestError) as both:
        sdk.responses.create(model="echo", input="x", conversation=conversation.id, previous_response_id=first.id)
    assert both.value.body["param"] == "conversation"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as unstored:
        sdk.responses.create(model="echo", input="x", conversation=conversation.id, store=False)
    assert unstored.value.body["param"] == "store"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        sdk.conversations.items.list(conversation.id, include=["message.output_text.logprobs"])


def test_two_turns_at_once_never_interleave() -> None:
    with serve(make_config(MANIFEST.format(url="memory://", text="w" * 40))) as base:
        conversation = httpx.post(f"{base}/v1/conversations", json={}).json()["id"]
        body = {"model": "slow", "input": "go", "conversation": conversation}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{base}/v1/responses", json=body, timeout=20), range(2)))
        statuses = sorted(a.status_code for a in answers)
        refused = next(a for a in answers if a.status_code != 200)
        items = httpx.get(f"{base}/v1/conversations/{conversation}/items", params={"order": "asc"}).json()["data"]
    assert statuses == [200, 409]
    assert refused.json()["error"]["code"] == "conversation_locked"
    assert [item["role"] for item in items] == ["user", "assistant"]  # one whole turn, nothing of the other


def test_a_store_that_stops_answering_mid_turn_appends_nothing(tmp_path: Path) -> None:
    need_redis_server()
    server = RedisProcess(tmp_path / "redis").start()
    try:
        with serve(make_config(MANIFEST.format(url=server.url, text="q" * 60))) as base, \
                httpx.Client(base_url=base, timeout=20) as http:
            conversation = http.post("/v1/conversations", json={"items": [{"role": "user", "content": "a"}]}).json()
            assert server.process is not None
            with http.stream("POST", "/v1/responses", json={"model": "slow", "input": "b", "stream": True,
                                                            "conversation": conversation["id"]}) as streamed:
                lines = streamed.iter_lines()
                for line in lines:
                    if "output_text.delta" in line:
                        os.kill(server.process.pid, signal.SIGSTOP)  # the final write will not get through
                        break
                rest = "".join(lines)
            try:
                refused = http.post("/v1/conversations", json={})
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            assert "response.failed" in rest and "response.completed" not in rest
            assert refused.status_code == 503
            time.sleep(1.2)  # the turn's lock lapses with its owner lease
            items = http.get(f"/v1/conversations/{conversation['id']}/items").json()["data"]
            next_turn = http.post("/v1/responses", json={"model": "echo", "input": "c",
                                                          "conversation": conversation["id"]})
    finally:
        server.stop()
    assert [item["content"][0]["text"] if isinstance(item["content"], list) else item["content"]
            for item in items] == ["a"]
    assert next_turn.status_code == 200
