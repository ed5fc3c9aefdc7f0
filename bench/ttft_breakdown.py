"""Where the time before the first token goes: the gateway's TTFT on the tiny model taken apart, in one run.

Per pair (order random, seeded), on prompts of the same shape, each with its own first line (no prefix reuse):
- raw: `mlx_lm.stream_generate` in-process (bench/mlx_raw.py), request start → first text; the chat template is
  rendered and tokenized before the clock starts;
- client: a streamed /v1/responses through the gateway (two models loaded), request start → first text event;
- server: the gateway's own time to the first output for that request (its `mlxgw_time_to_first_token_seconds`
  histogram, read before and after the request: one observation, so its sum moves by exactly that TTFT);
- prepare: POST /v1/responses/input_tokens on another prompt of the same shape: HTTP, decoding, policies, the
  worker's template rendering and tokenization, and the frame round trip, with no generation;
- http: GET /health (the HTTP round trip alone, for scale).
Differences per pair: client − raw (the TTFT overhead a client sees), client − server (the SSE hop to the client and the HTTP request in), server − raw (what the
gateway and its worker add before the first token, rendering included). Median (min–max) over pairs.

    .venv/bin/python bench/ttft_breakdown.py [--pairs 15] [--model tiny] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import httpx
import mlx_common as common
from prometheus_client.parser import text_string_to_metric_families

HEADERS = ["measure", "ms, median (min–max)"]


def ttft_sum(http: httpx.Client) -> tuple[float, float]:
    """(sum, count) of the bench model's server-side TTFT histogram."""
    total = count = 0.0
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.labels.get("model") == "bench" and sample.name == "mlxgw_time_to_first_token_seconds_sum":
                total = sample.value
            if sample.labels.get("model") == "bench" and sample.name == "mlxgw_time_to_first_token_seconds_count":
                count = sample.value
    return total, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    results = common.Results("ttft_breakdown", common.public_settings(vars(args)), tee=True)
    try:
        print(f"machine: {common.machine()}")
        print(f"model {args.model}, two models loaded; {args.pairs} pairs after a warm-up, order random per pair; "
              "8 new tokens per request; median (min–max) over pairs.\n", flush=True)
        path = common.build_model(args.model, Path(args.cache))
        order = random.Random(args.seed)
        blas = common.blas_setups(None)[0]
        rows: dict[str, list[float]] = {k: [] for k in ("raw", "client", "server", "prepare", "http",
                                                        "client − raw", "client − server", "server − raw")}
        with common.RawWorker(blas) as raw, common.gateway({"bench": path, "idle": path}, blas) as base, \
                httpx.Client(base_url=base, timeout=60) as http:
            body = {"model": "bench", "temperature": 0, "max_output_tokens": 8, "store": False}
            for pair in range(-1, args.pairs):  # -1: the warm-up
                index = 1000 + 4 * (pair + 1)
                job = {"mode": "stream", "model": str(path), "tokens": 8, "prompts": [common.user_messages(index)]}
                raw_first = order.random() < 0.5
                measured: dict[str, float] = {}
                if raw_first:
                    measured["raw"] = raw(job)["runs"][0]["ttft"]
                before = ttft_sum(http)
                started = time.perf_counter()
                first = None
                with http.stream("POST", "/v1/responses",
                                 json={**body, "input": common.prompt_text(index + 1), "stream": True}) as answer:
                    for line in answer.iter_lines():
                        if first is None and line.startswith("data: ") and "output_text.delta" in line:
                            first = time.perf_counter() - started
                after = ttft_sum(http)
                assert first is not None and after[1] == before[1] + 1, "one streamed answer with text"
                measured["client"], measured["server"] = first, after[0] - before[0]
                if not raw_first:
                    measured["raw"] = raw(job)["runs"][0]["ttft"]
                started = time.perf_counter()
                counted = http.post("/v1/responses/input_tokens",
                                    json={"model": "bench", "input": common.prompt_text(index + 2)})
                measured["prepare"] = time.perf_counter() - started
                assert counted.status_code == 200, counted.text
                started = time.perf_counter()
                http.get("/health")
                measured["http"] = time.perf_counter() - started
                measured["client − raw"] = measured["client"] - measured["raw"]  # the TTFT overhead
                measured["client − server"] = measured["client"] - measured["server"]
                measured["server − raw"] = measured["server"] - measured["raw"]
                if pair < 0:
                    continue
                results.write(kind="pair", pair=pair, raw_first=raw_first, **measured)
                for key, value in measured.items():
                    rows[key].append(value)
        table = [[key, common.fmt_spread(values, 1000, 1)] for key, values in rows.items()]
        results.write(kind="summary", **{key: common.spread([v * 1000 for v in values])
                                         for key, values in rows.items()})
        print(common.table(HEADERS, table))
        print(f"\nraw results: {results.path.relative_to(common.ROOT)}")
    finally:
        results.close()


if __name__ == "__main__":
    main()
