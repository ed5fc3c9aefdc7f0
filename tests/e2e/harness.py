"""Drive the real Codex CLI and OpenCode against an in-process gateway, each in its own network namespace.

The gateway listens on a Unix socket as well as loopback; a client runs under
`unshare -n` in a namespace that has only `lo`, where `netns_run.py` relays
127.0.0.1:CLIENT_PORT to that socket. Nothing a client sends can leave the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.clients import codex_catalog, codex_config_toml, opencode_config
from gateway.config import GatewayConfig
from gateway.log import RequestRecord

CLIENT_PORT = 18080  # inside each namespace; never bound on the host
VERSIONS = {"@openai/codex": "0.169.0", "opencode-ai": "1.18.33"}
NETNS_RUN = Path(__file__).with_name("netns_run.py")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Logged:
    """One request as the gateway logged it, with wall-clock bounds."""

    path: str
    status: int
    fields: dict[str, Any]
    started: float
    ended: float
    body: bytes = b""  # the request body as the client sent it


@dataclass
class Gateway:
    socket: Path
    requests: list[Logged] = field(default_factory=list)

    def for_model(self, model: str) -> list[Logged]:
        return [r for r in self.requests if r.fields.get("model") == model]


class _Recorder:
    """ASGI wrapper keeping every request's canonical log fields and body for the test to assert on."""

    def __init__(self, app: Any, sink: list[Logged]) -> None:
        self.app, self.sink = app, sink

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.monotonic()
        body: list[bytes] = []

        async def receiving() -> Any:
            message = await receive()
            if message.get("type") == "http.request":
                body.append(message.get("body", b""))
            return message

        await self.app(scope, receiving, send)
        record = scope.get("state", {}).get("record")
        if scope["type"] == "http" and isinstance(record, RequestRecord):
            self.sink.append(Logged(scope["path"], record.status, dict(record.fields), started, time.monotonic(),
                                    b"".join(body)))


@contextmanager
def gateway(config: GatewayConfig, directory: Path) -> Iterator[Gateway]:
    import socket
    import threading

    state = Gateway(socket=directory / "gateway.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(state.socket))
    server = uvicorn.Server(uvicorn.Config(_Recorder(create_app(config), state.requests), log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [unix]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.01)
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class Run:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def items(self, kind: str) -> list[dict[str, Any]]:
        """Codex `item.completed` items of one type."""
        return [e["item"] for e in self.events if e.get("type") == "item.completed" and e["item"].get("type") == kind]


def _isolated(command: list[str], socket_path: Path, cwd: Path, env: dict[str, str], timeout: float) -> Run:
    wrapped = ["unshare", "-n", sys.executable, str(NETNS_RUN), "--port", str(CLIENT_PORT), "--socket",
               str(socket_path), "--timeout", str(timeout), "--", *command]
    result = subprocess.run(wrapped, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout + 30)
    events = []
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return Run(result.returncode, events, result.stderr)


def _base_env(home: Path, bins: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "PATH": f"{bins}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LANG": "C.UTF-8",
        "TMPDIR": str(home),
    }


def run_codex(bins: Path, gw: Gateway, config: GatewayConfig, workdir: Path, prompt: str, *,
              extra_toml: str = "", extra_args: tuple[str, ...] = (), timeout: float = 120) -> Run:
    """`codex exec` with the config `gateway clients codex` generates, retries off, in a namespace."""
    home = workdir.parent / f"{workdir.name}-codex-home"
    codex_home = home / "codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    catalog = codex_home / "mlx-gateway-models.json"
    catalog.write_text(json.dumps(codex_catalog(config)))
    generated = codex_config_toml(config, f"http://127.0.0.1:{CLIENT_PORT}/v1", str(catalog))
    prelude = ('approval_policy = "never"\nsandbox_mode = "workspace-write"\ncheck_for_update_on_startup = false\n'
               + extra_toml)
    (codex_home / "config.toml").write_text(prelude + generated + "\n[analytics]\nenabled = false\n[feedback]\nenabled = false\n")
    env = {**_base_env(home, bins), "CODEX_HOME": str(codex_home), "MLXGW_API_KEY": "e2e"}
    command = ["codex", "exec", "--strict-config", "--skip-git-repo-check", "--json", "--color", "never",
               "-c", "model_providers.mlxgw.request_max_retries=0", "-c", "model_providers.mlxgw.stream_max_retries=0",
               "-C", str(workdir), *extra_args, prompt]
    return _isolated(command, gw.socket, workdir, env, timeout)


def codex_turn(bins: Path, config: GatewayConfig, tmp_path: Path, prompt: str, *,
               extra_toml: str = "", extra_args: tuple[str, ...] = ()) -> tuple[Run, Gateway, Path]:
    """One `codex exec` against a fresh gateway for `config`, in `tmp_path/project`: (run, gateway, project)."""
    project = tmp_path / "project"
    project.mkdir()
    with gateway(config, tmp_path) as gw:
        run = run_codex(bins, gw, config, project, prompt, extra_toml=extra_toml, extra_args=extra_args)
    return run, gw, project


def run_opencode(bins: Path, gw: Gateway, config: GatewayConfig, workdir: Path, prompt: str, *, chat: bool = False,
                 max_steps: int = 6, timeout: float = 120) -> Run:
    """`opencode run` with the provider block `gateway clients opencode` generates, in a namespace."""
    home = workdir.parent / f"{workdir.name}-opencode-home"
    generated = opencode_config(config, f"http://127.0.0.1:{CLIENT_PORT}/v1", chat=chat)
    generated.update({
        "autoupdate": False, "share": "disabled", "permission": {"*": "allow"},
        "enabled_providers": ["mlxgw"], "agent": {"build": {"steps": max_steps}},
    })
    config_path = home / "opencode.json"
    home.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(generated))
    env = {
        **_base_env(home, bins),
        "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"), "XDG_STATE_HOME": str(home / "state"),
        "OPENCODE_CONFIG": str(config_path), "MLXGW_API_KEY": "e2e",
        "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1", "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
    }
    command = ["opencode", "run", "--pure", "--auto", "--format", "json", prompt]
    return _isolated(command, gw.socket, workdir, env, timeout)


# ------------------------------------------------------------------ set-up


def clients_dir() -> Path:
    tag = "-".join(f"{name.split('/')[-1]}{version}" for name, version in VERSIONS.items())
    base = os.environ.get("MLXGW_CLIENTS_DIR") or str(Path.home() / ".cache" / "mlx-gateway" / "clients")
    return Path(base) / tag


def install_clients() -> Path:
    """Pinned Codex and OpenCode from npm into a cache; returns their bin directory."""
    target = clients_dir()
    bins = target / "node_modules" / ".bin"
    if (bins / "codex").exists() and (bins / "opencode").exists():
        return bins
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    target.mkdir(parents=True, exist_ok=True)
    packages = [f"{name}@{version}" for name, version in VERSIONS.items()]
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(target), *packages],
                   check=True, capture_output=True, text=True, timeout=900)
    return bins


def isolation_works() -> str | None:
    """None if `unshare -n` works here, else why not."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip are not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n failed: {probe.stderr.strip()}"
