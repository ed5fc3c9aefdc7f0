"""Golden SSE transcripts, checked event by event. Regenerate with UPDATE_GOLDEN=1 after a deliberate change."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from tests.conftest import make_config
from tests.sse import response_events

GOLDEN = Path(__file__).parent / "fixtures" / "sse"

MANIFEST = """
models:
  - name: text
    adapter: scripted
    script: {chunk_chars: 6, steps: [{text: "Hello there, agent."}]}
  - name: calls
    adapter: scripted
    script:
      chunk_chars: 8
      steps:
        - calls:
            - {function: exec_command, arguments: {cmd: "ls -la"}}
            - {function: read_file, arguments: {path: "README.md"}}
  - name: custom
    adapter: scripted
    script:
      chunk_chars: 16
      steps: [{calls: [{custom: apply_patch, input: "*** Begin Patch\\n*** Add File: a.txt\\n+hi\\n*** End Patch\\n"}]}]
  - name: reasoning
    adapter: scripted
    script: {chunk_chars: 10, steps: [{reasoning: "The user greets me.", text: "Hi!"}]}
  - name: failing
    adapter: scripted
    script: {chunk_chars: 4, steps: [{text: "partial", error: "the model crashed"}]}
"""

CASES = {
    "text": {"model": "text", "input": "hi"},
    "function_calls": {"model": "calls", "input": "look", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "function", "name": "read_file", "parameters": {"type": "object"}}]},
    "custom_tool": {"model": "custom", "input": "patch", "tools": [{"type": "custom", "name": "apply_patch"}]},
    "reasoning_text": {"model": "reasoning", "input": "hello"},
    "incomplete": {"model": "text", "input": "hi", "max_output_tokens": 2},
    "failed": {"model": "failing", "input": "x"},
}

_ID = re.compile(r"\b(resp|msg|fc|ctc|rs|call)_[0-9a-f]{48}\b")


def normalize(transcript: str) -> list[dict[str, Any]]:
    """Random ids become stable placeholders in order of appearance; clocks become 0."""
    names: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        return names.setdefault(match.group(0), f"{match.group(1)}_{len([n for n in names if n.startswith(match.group(1) + '_')]) + 1}")

    events = []
    for event in response_events(_ID.sub(rename, transcript)):
        if "response" in event:
            event["response"]["created_at"] = 0
            if event["response"].get("completed_at"):
                event["response"]["completed_at"] = 0
        events.append(event)
    return events


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    with TestClient(app=create_app(make_config(MANIFEST))) as test_client:
        yield test_client


@pytest.mark.parametrize("case", sorted(CASES))
def test_transcript_matches_golden(client: TestClient, case: str) -> None:
    response = client.post("/v1/responses", json={**CASES[case], "stream": True})
    assert response.status_code == 200
    events = normalize(response.text)
    path = GOLDEN / f"{case}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(events, indent=1) + "\n")
    golden = json.loads(path.read_text())
    assert [e["type"] for e in events] == [g["type"] for g in golden]
    for index, (event, expected) in enumerate(zip(events, golden, strict=True)):
        assert event == expected, f"event {index} ({expected['type']}) differs"
