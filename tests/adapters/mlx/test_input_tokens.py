"""`POST /v1/responses/input_tokens` on a real mlx model: the count is the prompt the model is given."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from gateway.config import parse_config
from tests.conftest import serve

pytestmark = pytest.mark.mlx

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def test_the_count_equals_the_usage_of_the_same_request(mlx_cache: Path) -> None:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0}}
"""
    with serve(parse_config(manifest)) as base:
        sdk = OpenAI(base_url=f"{base}/v1", api_key="dummy", max_retries=0, timeout=60)
        bodies = [
            {"input": "What is the weather like in Paris today?"},
            {"input": "Same, with tools.", "tools": TOOLS, "instructions": "Be brief."},
        ]
        counts, used = [], []
        for body in bodies:
            counts.append(sdk.responses.input_tokens.count(model="tiny", **body).input_tokens)  # type: ignore[arg-type]
            used.append(sdk.responses.create(model="tiny", max_output_tokens=2, **body).usage.input_tokens)  # type: ignore[arg-type,union-attr]
        first = sdk.responses.create(model="tiny", input="A first turn.", max_output_tokens=3)
        chained = {"model": "tiny", "input": "And a second.", "previous_response_id": first.id}
        counts.append(httpx.post(f"{base}/v1/responses/input_tokens", json=chained, timeout=60).json()["input_tokens"])
        used.append(sdk.responses.create(**chained, max_output_tokens=2).usage.input_tokens)  # type: ignore[arg-type,union-attr]
    assert counts == used
    assert counts[1] > counts[0]  # tools and instructions are part of the prompt
