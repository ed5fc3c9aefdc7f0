"""Codex CLI (pinned, real binary) against the gateway, asserting what happened on disk and in the gateway."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gateway.config import GatewayConfig, parse_config
from tests.e2e.harness import REPO, VERSIONS, codex_turn

PATCH = "*** Begin Patch\\n*** Add File: hello.txt\\n+patched by a local model\\n*** End Patch\\n"


def test_versions_are_pinned(bins: Path) -> None:
    import subprocess

    out = subprocess.run([str(bins / "codex"), "--version"], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == f"codex-cli {VERSIONS['@openai/codex']}"


def test_shell_tool_loop(bins: Path, tmp_path: Path) -> None:
    config = parse_config("""
models:
  - name: local-coder
    adapter: scripted
    script:
      steps:
        - reasoning: "I will write the proof file."
          text: "Writing the proof file."
          calls: [{function: exec_command, arguments: {cmd: "printf hello > proof.txt && cat proof.txt"}}]
        - text: "proof.txt now says hello."
""")
    run, gw, project = codex_turn(bins, config, tmp_path, "Create proof.txt containing hello")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (project / "proof.txt").read_text() == "hello"
    (command,) = run.items("command_execution")
    assert command["exit_code"] == 0 and "hello" in command["aggregated_output"]
    assert run.items("agent_message")[-1]["text"] == "proof.txt now says hello."
    assert any(e["type"] == "turn.completed" for e in run.events)
    turns = gw.for_model("local-coder")
    assert [r.status for r in turns] == [200, 200]
    assert [r.fields["tool_outputs"] for r in turns] == [0, 1]  # the command's output came back
    assert turns[0].fields["client"].startswith("codex_exec/")


def test_freeform_apply_patch_through_the_wrap_policy(bins: Path, tmp_path: Path) -> None:
    # The model calls the *wrapped* function; the gateway turns it back into Codex's custom tool call.
    config = parse_config(f"""
models:
  - name: local-coder
    adapter: scripted
    script:
      steps:
        - calls: [{{function: apply_patch, arguments: {{input: "{PATCH}"}}}}]
        - text: "Added hello.txt."
""")
    run, gw, project = codex_turn(bins, config, tmp_path, "Add hello.txt")
    assert run.returncode == 0, run.stderr[-2000:]
    # The grammar tests (tests/adapters/mlx/test_constrain_grammar.py) use Codex's own apply_patch declaration:
    # this pinned Codex must still send exactly the committed fixture (refresh it from here on an upgrade).
    sent = json.loads(gw.for_model("local-coder")[0].body)
    (declared,) = [t for t in sent["tools"] if t.get("name") == "apply_patch"]
    assert declared == json.loads((REPO / "tests" / "fixtures" / "codex_apply_patch_tool.json").read_text()), \
        json.dumps(declared, indent=2)
    assert (project / "hello.txt").read_text() == "patched by a local model\n"
    (change,) = run.items("file_change")
    assert change["status"] == "completed" and change["changes"][0]["kind"] == "add"
    first, second = gw.for_model("local-coder")
    assert "tool:apply_patch:wrap" in first.fields["degradations"]  # Codex declared the freeform tool
    assert second.fields["tool_outputs"] == 1


def test_mcp_namespace_call_is_mapped_back(bins: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    config = parse_config("""
models:
  - name: local-coder
    adapter: scripted
    script:
      steps:
        - calls: [{function: mcp__marker__write_marker, arguments: {text: "called through the namespace"}}]
        - text: "The marker is written."
""")
    server = f'{{command = "{sys.executable}", args = ["{REPO / "tests" / "e2e" / "mcp_server.py"}"], ' \
             f'env = {{MARKER_FILE = "{marker}"}}, default_tools_approval_mode = "approve"}}'
    run, gw, _ = codex_turn(bins, config, tmp_path, "Write the marker", extra_toml=f"mcp_servers.marker = {server}\n")
    assert run.returncode == 0, run.stderr[-2000:]
    assert marker.read_text() == "called through the namespace\n"
    (call,) = run.items("mcp_tool_call")
    assert (call["server"], call["tool"], call["status"]) == ("marker", "write_marker", "completed")
    first, second = gw.for_model("local-coder")
    assert "tool:mcp__marker:expand" in first.fields["degradations"]
    assert second.fields["tool_outputs"] == 1


def mlx_dummy(tmp_path: Path, extra: str = "") -> GatewayConfig:
    """One small dummy model served by the real MLX adapter (a worker process), cached under `tmp_path`."""
    return parse_config(f"""
mlx: {{cache_dir: "{tmp_path / 'mlx-cache'}"}}
models:
  - name: local-mlx
    adapter: mlx
    source: dummy
    dummy: {{hidden_size: 64, layers: 2, heads: 2, kv_heads: 1, intermediate_size: 128, vocab_size: 1024}}
    context_length: 32768
    {extra}
""")


def test_a_turn_on_the_real_mlx_adapter(bins: Path, tmp_path: Path) -> None:
    """A dummy model through mlx-lm in a worker process. Random weights never stop by themselves, so the
    test hook forces the answer (the last user message, then EOS) through real generation."""
    prompt = "Reply with this sentence, word for word."
    config = mlx_dummy(tmp_path, "testing: {force: last_user}")
    run, gw, _ = codex_turn(bins, config, tmp_path, prompt)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.items("agent_message")[-1]["text"] == prompt
    (turn,) = [e for e in run.events if e["type"] == "turn.completed"]
    assert turn["usage"]["input_tokens"] > 100 and turn["usage"]["output_tokens"] > 5
    (request,) = gw.for_model("local-mlx")
    assert request.status == 200 and request.fields["response_status"] == "completed"
    assert request.fields["output_tokens"] == turn["usage"]["output_tokens"]


def test_output_schema_on_the_real_mlx_adapter(bins: Path, tmp_path: Path) -> None:
    """`codex exec --output-schema`: the random dummy model (gibberish when free) answers JSON that validates,
    because the gateway enforces the schema Codex sends as text.format while the model decodes."""
    import jsonschema

    schema = {"type": "object", "properties": {"status": {"enum": ["ok", "fail"]},
                                               "count": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["status", "count"], "additionalProperties": False}
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(schema))
    config = mlx_dummy(tmp_path)
    run, gw, _ = codex_turn(bins, config, tmp_path, "Report the status.",
                            extra_args=("--output-schema", str(schema_file)))
    assert run.returncode == 0, run.stderr[-2000:]
    jsonschema.validate(json.loads(run.items("agent_message")[-1]["text"]), schema)
    (request,) = gw.for_model("local-mlx")
    sent = json.loads(request.body)
    assert sent["text"]["format"]["type"] == "json_schema"  # Codex asked for it; the gateway enforced it
    assert request.fields["response_status"] == "completed"
    assert not any(d.startswith("constraint:") for d in request.fields.get("degradations", []))
