"""Codex and OpenCode at the same time, each on its own model of one gateway."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import msgspec

from gateway.config import GatewayConfig, parse_config
from tests.e2e.harness import gateway, run_codex, run_opencode

MANIFEST = """
models:
  - name: codex-model
    adapter: scripted
    script:
      first_delay_ms: 3000    # each answer takes 3 s, so the two clients are sure to overlap
      chunk_chars: 4
      steps:
        - text: "Writing the codex proof."
          calls: [{function: exec_command, arguments: {cmd: "printf codex > codex.txt"}}]
        - text: "codex.txt is written."
  - name: opencode-model
    adapter: scripted
    script:
      first_delay_ms: 3000
      chunk_chars: 4
      steps:
        - text: "Writing the opencode proof."
          calls: [{function: bash, arguments: {command: "printf opencode > opencode.txt", description: "proof"}}]
        - text: "opencode.txt is written."
"""


def listed_first(config: GatewayConfig, name: str) -> GatewayConfig:
    """The same manifest with `name` first: the generated client configs default to the first model."""
    return msgspec.structs.replace(config, models=sorted(config.models, key=lambda m: m.name != name))


def test_codex_and_opencode_at_once(bins: Path, tmp_path: Path) -> None:
    config = parse_config(MANIFEST)
    codex_project, opencode_project = tmp_path / "codex", tmp_path / "opencode"
    codex_project.mkdir()
    opencode_project.mkdir()
    with gateway(config, tmp_path) as gw, concurrent.futures.ThreadPoolExecutor(2) as pool:
        codex_job = pool.submit(run_codex, bins, gw, listed_first(config, "codex-model"), codex_project, "codex proof")
        opencode_job = pool.submit(
            run_opencode, bins, gw, listed_first(config, "opencode-model"), opencode_project, "opencode proof"
        )
        codex_run, opencode_run = codex_job.result(timeout=300), opencode_job.result(timeout=300)
    assert codex_run.returncode == 0, codex_run.stderr[-2000:]
    assert opencode_run.returncode == 0, opencode_run.stderr[-2000:]
    assert (codex_project / "codex.txt").read_text() == "codex"
    assert (opencode_project / "opencode.txt").read_text() == "opencode"
    codex_requests, opencode_requests = gw.for_model("codex-model"), gw.for_model("opencode-model")
    assert {r.fields["client"].split("/")[0] for r in codex_requests} == {"codex_exec"}
    assert {r.fields["client"].split("/")[0] for r in opencode_requests} == {"opencode"}
    assert all(r.status == 200 for r in codex_requests + opencode_requests)
    overlapping = [(a, b) for a in codex_requests for b in opencode_requests if a.started < b.ended and b.started < a.ended]
    assert overlapping, "the two clients' requests never ran at the same time"
