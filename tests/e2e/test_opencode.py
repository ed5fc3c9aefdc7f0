"""OpenCode (pinned, real binary) through /v1/responses and /v1/chat/completions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.config import parse_config
from tests.e2e.harness import VERSIONS, gateway, run_opencode


def manifest(project: Path) -> str:
    notes = project / "notes.txt"
    return f"""
models:
  - name: local-coder
    adapter: scripted
    script:
      steps:
        - text: "Creating the notes."
          calls: [{{function: bash, arguments: {{command: "printf 'status: draft\\\\n' > notes.txt", description: "create notes"}}}}]
        - calls: [{{function: read, arguments: {{filePath: "{notes}"}}}}]
        - calls: [{{function: edit, arguments: {{filePath: "{notes}", oldString: "draft", newString: "final"}}}}]
        - text: "notes.txt now says final."
"""


def test_versions_are_pinned(bins: Path) -> None:
    out = subprocess.run([str(bins / "opencode"), "--version"], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == VERSIONS["opencode-ai"]


@pytest.mark.parametrize(("chat", "endpoint"), [(False, "/v1/responses"), (True, "/v1/chat/completions")])
def test_bash_loop_and_file_edit(bins: Path, tmp_path: Path, chat: bool, endpoint: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    config = parse_config(manifest(project))
    with gateway(config, tmp_path) as gw:
        run = run_opencode(bins, gw, config, project, "Create notes.txt, then mark it final", chat=chat)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (project / "notes.txt").read_text() == "status: final\n"
    tools = [(e["part"]["tool"], e["part"]["state"]["status"]) for e in run.events if e.get("type") == "tool_use"]
    assert tools == [("bash", "completed"), ("read", "completed"), ("edit", "completed")]
    finishes = [e["part"]["reason"] for e in run.events if e.get("type") == "step_finish"]
    assert finishes == ["tool-calls", "tool-calls", "tool-calls", "stop"]
    texts = [e["part"]["text"] for e in run.events if e.get("type") == "text"]
    assert texts[-1] == "notes.txt now says final."
    requests = gw.for_model("local-coder")
    assert {r.path for r in requests} == {endpoint}
    assert all(r.status == 200 for r in requests)
    # A title request (no tools) plus four agent turns, each carrying one more tool result back.
    assert sorted(r.fields["tool_outputs"] for r in requests) == [0, 0, 1, 2, 3]
    assert requests[0].fields["client"].startswith("opencode/")
