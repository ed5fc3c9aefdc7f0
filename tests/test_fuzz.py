"""Property-based fuzzing: client input never produces a 5xx.

Hypothesis generates request bodies for `POST /v1/responses` (and `/v1/responses/input_tokens`) and
`POST /v1/chat/completions`, requests to the stored-response routes (GET, `?stream=true` replays, DELETE,
`input_items`, cancel) and to the Conversations API with random ids and query parameters, and raw bodies that are
not JSON or not objects. Every field the wire types accept is covered
(`gateway/protocol.py` `ResponsesRequest`, every item, content part and tool type, `gateway/chat/protocol.py`),
with plausible values and hostile ones: wrong types, nulls, huge/negative/float/bool numbers, integers beyond
64 bits, nesting around and far beyond `normalize.MAX_JSON_DEPTH`, control characters, NUL and lone surrogates
(as JSON escapes and as raw bytes), unknown item/part/tool types, empty lists, long strings, tool names with
CR/LF, every `tool_choice` shape, ids of stored, deleted, unknown and malformed responses, items and
conversations, streaming and background variants (a slow model keeps background runs going while later cases
poll, replay, cancel and chain on them).

Every case must satisfy: status < 500; every non-2xx body is the OpenAI error envelope, and a 4xx is never typed
`server_error`; a streamed response ends with exactly one terminal event (chat: one `data: [DONE]`) and never
fails; nothing is logged at error level; and afterwards the server still answers a normal request. Most cases run
in-process (a litestar `TestClient`); the last test replays a few hundred against a real uvicorn server on
127.0.0.1, where header problems would show.

Runs are reproducible for a given commit (`derandomize=True`, no example database; Hypothesis also mixes constants
it finds in the project's source into what it draws, so a change to the code changes the sample). About 8,000
cases in ~45 s. Each test prints a one-line summary (cases, statuses, 5xx count) whatever pytest's capture mode,
so CI output shows what was run. `MLXGW_FUZZ_RANDOM=1` (fresh examples) and `MLXGW_FUZZ_SCALE=N` (N times as
many) hunt further.

Defects this suite found are pinned by tests/test_fuzz_regressions.py; none is tolerated here.

The strategies, the gateway manifest and the harness live in tests/fuzz/ (see its `__init__`); this module holds the
fixtures, the settings and the tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from structlog.testing import capture_logs

from gateway.app import create_app
from tests.conftest import FIGURES, make_config, serve
from tests.fuzz.manifest import MANIFEST
from tests.fuzz.routes import any_cases, chat_cases, conversation_cases, raw_cases, responses_cases, stored_cases
from tests.fuzz.runner import REQUEST_TIMEOUT, Case, Harness, Stats, emit, summary_line

pytestmark = pytest.mark.timeout(600)

# CI runs the fixed seed; to hunt further, MLXGW_FUZZ_RANDOM=1 draws fresh examples and MLXGW_FUZZ_SCALE=N runs
# N times as many.
SCALE = float(os.environ.get("MLXGW_FUZZ_SCALE", "1"))
SETTINGS: dict[str, Any] = {
    "derandomize": os.environ.get("MLXGW_FUZZ_RANDOM", "") in ("", "0"),
    "database": None,  # nothing written into the repository
    "deadline": None,
    "print_blob": False,
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
    "suppress_health_check": list(HealthCheck),  # big composite examples are slow on purpose
}


@pytest.fixture(scope="module")
def in_process() -> Iterator[TestClient]:
    with TestClient(app=create_app(make_config(MANIFEST))) as client:
        yield client


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[list[Stats]]:
    """The module's tests add their Stats here; after the last one, the total is printed and kept among the run's
    figures."""
    stats: list[Stats] = []
    yield stats
    if stats:
        line = summary_line(stats)
        emit(request, f"[{line}]")
        request.config.stash.setdefault(FIGURES, []).append(line)  # printed again at the end of the run


def fuzz(request: pytest.FixtureRequest, summary: list[Stats], client: httpx.Client, name: str,
         cases: st.SearchStrategy[Case], examples: int) -> None:
    stats = Stats(name)
    summary.append(stats)
    with capture_logs() as logs:
        harness = Harness(client, stats, logs)
        try:
            harness.seed()

            @settings(max_examples=max(1, int(examples * SCALE)), **SETTINGS)  # type: ignore[arg-type]
            @given(case=cases)
            def check(case: Case) -> None:
                harness.run(case)

            check()
            harness.still_serves()
        finally:
            harness.close()
            emit(request, stats.line())


def test_responses_create(request: pytest.FixtureRequest, summary: list[Stats], in_process: TestClient) -> None:
    fuzz(request, summary, in_process, "POST /v1/responses (in-process)", responses_cases(), 3200)


def test_chat_completions(request: pytest.FixtureRequest, summary: list[Stats], in_process: TestClient) -> None:
    fuzz(request, summary, in_process, "POST /v1/chat/completions (in-process)", chat_cases(), 1600)


def test_stored_routes(request: pytest.FixtureRequest, summary: list[Stats], in_process: TestClient) -> None:
    fuzz(request, summary, in_process, "stored-response routes (in-process)", stored_cases(), 1200)


def test_raw_bodies(request: pytest.FixtureRequest, summary: list[Stats], in_process: TestClient) -> None:
    fuzz(request, summary, in_process, "raw and non-object bodies (in-process)", raw_cases(), 500)


def test_conversation_routes(request: pytest.FixtureRequest, summary: list[Stats], in_process: TestClient) -> None:
    fuzz(request, summary, in_process, "conversation routes (in-process)", conversation_cases(), 900)


def test_real_server(request: pytest.FixtureRequest, summary: list[Stats]) -> None:
    with serve(make_config(MANIFEST)) as base_url, httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        fuzz(request, summary, client, f"all kinds against uvicorn at {base_url}", any_cases(), 600)
