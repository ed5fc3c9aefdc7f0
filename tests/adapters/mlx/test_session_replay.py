"""A Codex-shaped session replayed against a real worker: every turn after the first reuses at least 90 % of its
prompt from the prefix cache, the turn after a mid-session developer message included."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from tests.conftest import ROOT, serve

pytestmark = pytest.mark.mlx

SESSION = json.loads((ROOT / "tests" / "fixtures" / "codex_session.json").read_text())


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: agent, adapter: mlx, source: dummy, testing: {{distinct: true}}}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


def replay(base: str) -> list[dict[str, int]]:
    """Codex's way: store false, the whole history resent every turn with the model's own output items."""
    items: list[dict[str, Any]] = copy.deepcopy(SESSION["start"])
    usages = []
    with httpx.Client(base_url=base, timeout=120) as http:
        for added in [[], *SESSION["turns"]]:
            items += copy.deepcopy(added)
            # Greedy, so every run replays the same session: sampled, the random model's answer now and then
            # re-renders so that the last token of the previous prompt differs (one token short of it), and the
            # check below would pass or fail by the run.
            body = {"model": "agent", "input": items, "tools": SESSION["tools"], "store": False, "stream": False,
                    "temperature": 0,
                    "parallel_tool_calls": True, "reasoning": {"summary": "auto"}, "max_output_tokens": 16,
                    "prompt_cache_key": "thread-replay", "include": ["reasoning.encrypted_content"]}
            response = http.post("/v1/responses", json=body)
            assert response.status_code == 200, response.text
            result = response.json()
            items += result["output"]
            usages.append({"input": result["usage"]["input_tokens"],
                           "cached": result["usage"]["input_tokens_details"]["cached_tokens"]})
    return usages


def test_every_turn_after_the_first_reuses_nine_tenths_of_its_prompt(base: str) -> None:
    usages = replay(base)
    assert usages[0]["cached"] == 0 and len(usages) == 1 + len(SESSION["turns"])
    # Each turn reuses all of the previous turn's prompt (and what of its answer re-renders the same) ...
    assert all(now["cached"] >= before["input"] for before, now in itertools.pairwise(usages)), usages
    # ... which, with a Codex-sized history, is at least nine tenths of the new prompt.
    ratios = [u["cached"] / u["input"] for u in usages[1:]]
    # Turn 2 follows the mid-session developer message: merged into the leading system message it changed the
    # prompt from its first tokens and reused next to nothing; rendered in place it reuses the whole history.
    assert all(r >= 0.9 for r in ratios), usages
