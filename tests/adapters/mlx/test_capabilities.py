"""A model's capabilities are known before its first request is planned, so the first request gets the same
tool plan as every later one; when only loading the model can tell, planning waits for the load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from gateway.adapters.mlx import MlxAdapter, WorkerPool
from gateway.adapters.mlx.dummy import dummy_dir
from gateway.config import DummyArch, parse_config
from gateway.normalize import decode_request
from gateway.service import prepare_response, settle_plan
from tests.conftest import serve

pytestmark = pytest.mark.mlx

# ChatML without any tool-call markup: mlx-lm infers no tool parser, so the model cannot call tools.
NO_TOOLS_TEMPLATE = (
    "{%- for message in messages -%}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
TOOL = {"type": "function", "name": "exec_command", "description": "Runs a command.",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}


def no_tools_model(mlx_cache: Path, folder: Path) -> Path:
    """The session's dummy model with a chat template that has no tool calls."""
    shutil.copytree(dummy_dir(DummyArch(), mlx_cache), folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = NO_TOOLS_TEMPLATE
    config_path.write_text(json.dumps(config))
    return folder


def manifest(mlx_cache: Path, source: Path) -> str:
    return (f"mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}\n"
            f"models: [{{name: plain, adapter: mlx, source: {json.dumps(str(source))}, testing: {{force: last_user}}}}]\n")


def test_the_first_request_gets_the_same_tool_plan_as_later_ones(mlx_cache: Path, tmp_path: Path) -> None:
    source = no_tools_model(mlx_cache, tmp_path / "no-tools")
    with serve(parse_config(manifest(mlx_cache, source))) as url:
        before = httpx.get(f"{url}/health", timeout=10).json()["models"]["plain"]
        assert before["state"] == "unloaded" and before["tool_parser"] is None  # known from the files alone
        plans = []
        for turn in range(2):  # the first request loads the model, the second finds it loaded
            body = {"model": "plain", "input": f"turn {turn}", "tools": [TOOL]}
            answer = httpx.post(f"{url}/v1/responses", json=body, timeout=60)
            assert answer.status_code == 200 and answer.json()["status"] == "completed"
            plans.append(answer.headers.get("x-gateway-degraded"))
        after = httpx.get(f"{url}/health", timeout=10).json()["models"]["plain"]
    assert after["state"] == "ready" and after["loads"] == 1 and after["tool_parser"] is None
    assert plans == ["tool:exec_command:note"] * 2  # no tool parser: the tool is noted, never shown as callable


async def test_when_only_the_load_can_tell_planning_waits_for_it(
    mlx_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(manifest(mlx_cache, no_tools_model(mlx_cache, tmp_path / "no-tools")))
    monkeypatch.setattr("gateway.adapters.mlx.adapter.probe", lambda spec, allowed: None)  # as for an uncached hf:
    pool = WorkerPool(config.mlx)
    adapter = MlxAdapter(config.models[0], pool)  # type: ignore[arg-type]
    try:
        await adapter.start()
        assumed = adapter.capabilities
        assert assumed.tool_calling and adapter.describe()["state"] == "unloaded"
        request = decode_request(json.dumps({"model": "plain", "input": "hi", "tools": [TOOL]}).encode())

        def plan() -> object:
            return prepare_response(config, {"plain": adapter}, request, {})

        first = plan()
        assert [spec.name for spec in first.generation.tools] == ["exec_command"]  # planned on the assumption
        settled = await settle_plan(first, plan)
        assert adapter.describe()["state"] == "ready" and adapter.describe()["loads"] == 1
        assert not adapter.capabilities.tool_calling
        assert settled is not first and settled.generation.tools == []
        assert settled.plan.degradations == ["tool:exec_command:note"]
        assert await settle_plan(settled, plan) is settled  # known now: nothing to redo
    finally:
        await adapter.aclose()
        await pool.aclose()
