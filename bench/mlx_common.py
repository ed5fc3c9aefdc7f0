"""Shared pieces of the MLX benchmarks: models, servers, streaming clients, baselines, tables.

Every server listens on 127.0.0.1 and every request goes there; every loop is bounded.
Peers run from their own venvs in a directory you name (`--peers DIR`, or `$MLXGW_PEERS`),
installed there by `bench/install_peers.sh DIR`; a peer that is not there is reported as
missing, never dropped silently. Raw results go to `bench/results/` as JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RESULTS = ROOT / "bench" / "results"

# fp32 qwen2 dummies shaped like the peer measurements' tiny, small and pc models. The vocabulary is cut to
# what the locally trained tokenizer really has (~2,000): ids beyond it decode to nothing, and a server that
# drops empty or whitespace-only pieces would stream less than it generated. The seeds give greedy outputs of
# printable text for the benchmark prompts.
ARCHS = {
    "tiny": {"vocab_size": 2048, "intermediate_size": 160, "seed": 1},
    "small": {"hidden_size": 256, "layers": 6, "heads": 4, "kv_heads": 2, "intermediate_size": 640,
              "vocab_size": 2048},
    "pc": {"hidden_size": 512, "layers": 8, "heads": 8, "kv_heads": 2, "intermediate_size": 1280,
           "vocab_size": 2048},
}

FILLER = (
    "Our build broke after the last merge: the gateway starts, but every streaming request to the small model ends "
    "early and the logs show a cancelled generation. Read the worker module, find where the cancel comes from and "
    "propose the smallest fix, with a test that fails today and passes after the change."
)


def prompt_text(index: int, salt: str = "") -> str:
    """A unique first line per request, so no server can answer from a cached prompt."""
    return f"Request {index:03d}{salt}. {FILLER}"


def user_messages(index: int) -> list[dict[str, str]]:
    """Prompt `index` as a one-message conversation (its own first line, so no server answers from a cached prompt)."""
    return [{"role": "user", "content": prompt_text(index)}]


def requester(http: httpx.AsyncClient, kind: str, base: str, model: str, tokens: int, *, failures: bool = False
              ) -> Callable[[int], Awaitable[Run]]:
    """Greedy streaming requests for prompt `index`, `tokens` long: /v1/responses (`kind` "responses", unstored) or
    /v1/chat/completions. One keep-alive client for all of a system's runs, as an agent's would be. With `failures`,
    a dropped stream comes back as a failed Run (counted like a refused request) instead of raising."""

    async def request(index: int) -> Run:
        try:
            if kind == "responses":
                body = {"model": model, "input": prompt_text(index), "temperature": 0, "max_output_tokens": tokens,
                        "store": False}
                return await stream_responses(http, base, body)
            body = {"model": model, "messages": user_messages(index), "temperature": 0, "max_tokens": tokens}
            return await stream_chat(http, base, body)
        except httpx.HTTPError as exc:
            if not failures:
                raise
            return Run(time.perf_counter(), error=f"{type(exc).__name__}: {exc}")

    return request


# ---------------------------------------------------------------- machine and models


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        memory = f", {int(total.split()[1]) / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    if platform.system() == "Darwin":  # no /proc: ask sysctl (the chip, e.g. "Apple M3 Max", and the memory)
        def sysctl(name: str) -> str:
            out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, check=False, timeout=10)
            return out.stdout.strip()

        cpu = sysctl("machdep.cpu.brand_string") or cpu
        if sysctl("hw.memsize").isdigit():
            memory = f", {int(sysctl('hw.memsize')) / 2**30:.0f} GiB"
    versions = subprocess.run(
        [PYTHON, "-c", "import importlib.metadata as m; print(m.version('mlx'), m.version('mlx-lm'))"],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    mlx = f"mlx {versions[0]}, mlx-lm {versions[1]}" if len(versions) == 2 else "mlx ?"
    return (f"{platform.system()} {platform.release()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{memory}, "
            f"Python {platform.python_version()}, {mlx}")


def build_model(name: str, cache: Path) -> Path:
    out = subprocess.run(
        [PYTHON, "-m", "gateway.adapters.mlx.dummy", "--cache-dir", str(cache), json.dumps(ARCHS[name])],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=300,
    )
    return Path(out.stdout.strip())


def eos_id(model: Path) -> int:
    return int(json.loads((model / "config.json").read_text())["eos_token_id"])


# ---------------------------------------------------------------- BLAS setups


@dataclass
class Blas:
    """`bundled`: the mlx-cpu wheel's reference BLAS. `openblas`: libraries preloaded before MLX loads."""

    name: str
    libraries: str = ""  # colon-separated paths

    def server_env(self) -> dict[str, str]:
        env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        if self.libraries:
            env |= {"LD_PRELOAD": self.libraries, "OPENBLAS_NUM_THREADS": str(os.cpu_count() or 1)}
        return env

    def gateway_env(self) -> dict[str, str]:
        env = {"HF_HUB_OFFLINE": "1"}
        if self.libraries:
            env["MLXGW_WORKER_PRELOAD"] = self.libraries  # the worker sets OPENBLAS_NUM_THREADS itself
        return env


def blas_setups(openblas: str | None) -> list[Blas]:
    return [Blas("bundled")] + ([Blas("openblas", openblas)] if openblas else [])


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(command: list[str], env: dict[str, str], ready: str, timeout: float = 180) -> Iterator[None]:
    """Run `command` in its own process group until the block ends; `ready` is a URL that answers when up."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                               cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{command[:3]} exited:\n{log.read().decode(errors='replace')[-3000:]}")
            try:
                if httpx.get(ready, timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:3]} did not start within {timeout} s")
            time.sleep(0.2)
        yield
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def gateway_manifest(models: dict[str, Path], mlx: dict[str, Any] | None = None, **fields: Any) -> str:
    """Manifest text: one mlx model per entry, sharing `fields` (e.g. prefix_cache_mb); `mlx` the top-level
    mlx settings (e.g. first_token_priority)."""
    extra = "".join(f", {key}: {json.dumps(value)}" for key, value in fields.items())
    lines = [f"  - {{name: {name}, adapter: mlx, source: {json.dumps(str(path))}, preload: true{extra}}}"
             for name, path in models.items()]
    settings = f"mlx: {json.dumps(mlx)}\n" if mlx else ""
    return "server: {keepalive_seconds: 5}\n" + settings + "models:\n" + "\n".join(lines) + "\n"


@contextmanager
def gateway(models: dict[str, Path], blas: Blas, mlx: dict[str, Any] | None = None, **fields: Any) -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "gateway.yaml"
        manifest.write_text(gateway_manifest(models, mlx, **fields))
        command = [PYTHON, "-m", "gateway", "run", "--config", str(manifest), "--port", str(port),
                   "--log-level", "warning"]
        base = f"http://127.0.0.1:{port}"
        with server(command, blas.gateway_env(), f"{base}/health"):
            deadline = time.monotonic() + 120
            while not all(httpx.get(f"{base}/health", timeout=5).json()["models"][name]["state"] == "ready"
                          for name in models):
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway's models did not load")
                time.sleep(0.2)
            yield base


@contextmanager
def mlx_lm_server(model: Path, blas: Blas, *extra: str) -> Iterator[str]:
    port = free_port()
    command = [PYTHON, "-m", "mlx_lm", "server", "--model", str(model), "--port", str(port), "--log-level",
               "WARNING", *extra]
    with server(command, blas.server_env(), f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"


def peers_dir(given: str | None) -> Path | None:
    """Where bench/install_peers.sh put the peers: `--peers DIR`, else `$MLXGW_PEERS`, else none."""
    folder = given or os.environ.get("MLXGW_PEERS")
    return Path(folder).expanduser().resolve() if folder else None


def vllm_mlx_binary(peers: Path | None) -> Path | None:
    """vllm-mlx's entry point in the peers directory, or None (the caller reports it missing)."""
    if peers is None:
        return None
    binary = peers / "venv-vmlx" / "bin" / "vllm-mlx"
    return binary if binary.exists() else None


def missing_peer(name: str, peers: Path | None) -> str:
    where = f"not installed in {peers}" if peers else "no peers directory given (--peers DIR or $MLXGW_PEERS)"
    return f"{name}: MISSING, {where}; install it with bench/install_peers.sh DIR"


@contextmanager
def vllm_mlx_server(binary: Path, model: Path, blas: Blas, *extra: str) -> Iterator[str]:
    port = free_port()
    command = [str(binary), "serve", str(model), "--host", "127.0.0.1", "--port", str(port), *extra]
    with server(command, blas.server_env(), f"http://127.0.0.1:{port}/health", timeout=300):
        yield f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- raw results and statistics


class Results:
    """One JSON line per measured run, in bench/results/<script>-<UTC time>.jsonl (committed with the docs).

    With `tee`, everything the script prints from here on also goes to the .txt next to it."""

    def __init__(self, script: str, settings: dict[str, Any], tee: bool = False) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = RESULTS / f"{script}-{stamp}.jsonl"
        self.text_path = self.path.with_suffix(".txt") if tee else None
        self._file = self.path.open("w")
        self._tee: _Tee | None = None
        if self.text_path is not None:
            self._tee = _Tee(sys.stdout, self.text_path.open("w"))
            sys.stdout = self._tee
        self.write(kind="run", script=script, machine=machine(), settings=settings)

    def write(self, **fields: Any) -> None:
        self._file.write(json.dumps(fields, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._tee is not None:
            sys.stdout = self._tee.out
            self._tee.copy.close()
            self._tee = None


class _Tee:
    """A stdout that also writes to `copy`."""

    def __init__(self, out: Any, copy: Any) -> None:
        self.out, self.copy = out, copy

    def write(self, text: str) -> int:
        self.copy.write(text)
        return int(self.out.write(text))

    def flush(self) -> None:
        self.copy.flush()
        self.out.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.out, name)


def public_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A script's options as recorded: no path of this machine (directories and libraries by their last name)."""
    out = dict(settings)
    for key in ("cache", "peers", "tokenizer"):
        if out.get(key):
            out[key] = Path(out[key]).name
    if out.get("openblas"):
        out["openblas"] = ":".join(Path(library).name for library in out["openblas"].split(":"))
    return out


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return (min(values), statistics.median(values), max(values)) if values else (float("nan"),) * 3


def fmt_spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    low, mid, high = spread([v * scale for v in values])
    return f"{mid:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


# ---------------------------------------------------------------- clients


@dataclass
class Run:
    started: float
    first: float | None = None
    last: float | None = None
    tokens: int = 0
    prompt_tokens: int = 0
    cached: int = 0
    error: str | None = None
    deltas: int = 0  # content events received (servers may send several tokens in one)
    output: list[Any] = field(default_factory=list)  # output items (responses) or text (chat)

    @property
    def ttft(self) -> float:
        return (self.first or self.started) - self.started

    @property
    def decode_tps(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first or self.tokens < 2:
            return 0.0
        return (self.tokens - 1) / (self.last - self.first)

    @property
    def e2e_tps(self) -> float:
        end = self.last or self.started
        return self.tokens / (end - self.started) if end > self.started else 0.0


async def stream_responses(client: httpx.AsyncClient, base: str, body: dict[str, Any]) -> Run:
    run = Run(time.perf_counter())
    async with client.stream("POST", f"{base}/v1/responses", json={**body, "stream": True}) as response:
        if response.status_code != 200:
            run.error = f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
            return run
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            kind = event.get("type", "")
            if kind.endswith(".delta") and ("output_text" in kind or "reasoning" in kind):
                run.deltas += 1
                run.last = time.perf_counter()
                run.first = run.first or run.last
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                final = event["response"]
                usage = final.get("usage") or {}
                run.tokens = usage.get("output_tokens", 0)
                run.prompt_tokens = usage.get("input_tokens", 0)
                run.cached = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0) or 0
                run.output = final.get("output") or []
                if kind == "response.failed":
                    run.error = json.dumps(final.get("error"))
    return run


async def stream_chat(client: httpx.AsyncClient, base: str, body: dict[str, Any]) -> Run:
    run = Run(time.perf_counter())
    text: list[str] = []
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", f"{base}/v1/chat/completions", json=payload) as response:
        if response.status_code != 200:
            run.error = f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
            return run
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                run.error = json.dumps(chunk["error"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                piece = delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content")
                if piece:
                    text.append(piece)
                    run.deltas += 1
                    run.last = time.perf_counter()
                    run.first = run.first or run.last
            usage = chunk.get("usage")
            if usage:
                run.tokens = usage.get("completion_tokens", 0)
                run.prompt_tokens = usage.get("prompt_tokens", 0)
                run.cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) or 0
    run.output = ["".join(text)]
    return run


def client(limit: int = 16) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(600), limits=httpx.Limits(max_connections=limit))


# ---------------------------------------------------------------- baselines and tables


def raw(job: dict[str, Any], blas: Blas, python: str = PYTHON) -> dict[str, Any]:
    """Run bench/mlx_raw.py with `python` (our venv, or a peer's)."""
    out = subprocess.run([python, str(ROOT / "bench" / "mlx_raw.py")], input=json.dumps(job), capture_output=True,
                         text=True, env={**os.environ, **blas.server_env()}, check=False, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"mlx_raw.py failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_async(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class RawWorker:
    """bench/mlx_raw.py kept running (`--serve`), so in-process runs can alternate with a server's."""

    def __init__(self, blas: Blas, python: str = PYTHON) -> None:
        self._process = subprocess.Popen(
            [python, str(ROOT / "bench" / "mlx_raw.py"), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env={**os.environ, **blas.server_env()},
        )

    def __call__(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(job) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("mlx_raw.py --serve exited")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)

    def __enter__(self) -> RawWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
