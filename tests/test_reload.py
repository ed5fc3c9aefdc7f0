"""Hot reload: atomic swaps, rejected manifests, draining, and the 50-rewrite stress loop."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.adapters.base import Capabilities
from gateway.config import parse_config
from gateway.reload import Reloader, ReloadFailed, restart_only_changes
from gateway.runtime import Runtime
from tests.conftest import make_config, serve

BASE = """
server: {{port: 8080}}
auth: {{admin_key_env: TEST_ADMIN_KEY}}
models:
  - {{name: a, adapter: scripted, script: {{steps: [{{text: "from a {tag}"}}]}}}}
  - {{name: b, adapter: scripted, script: {{steps: [{{text: "from b"}}]}}}}
policies:
  default:
    tools: {{hosted: {hosted}}}
"""


def manifest(tag: str = "v1", hosted: str = "note") -> str:
    return BASE.format(tag=tag, hosted=hosted)


class RecordingAdapter:
    """Stands in for a model backend so the test can see which adapters were closed."""

    capabilities = Capabilities()

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.closed = False

    async def start(self) -> None: ...
    async def capabilities_ready(self) -> Capabilities:
        return self.capabilities

    async def count_input_tokens(self, request: Any) -> int:
        return 0
    async def aclose(self) -> None:
        self.closed = True

    def generate(self, request: Any) -> Any:
        raise NotImplementedError

    async def open(self, request: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}


def test_restart_only_settings_keep_their_running_values() -> None:
    running = parse_config(manifest())
    new = parse_config(manifest().replace("port: 8080", "port: 9090") + "store: {ttl_seconds: 5}\n")
    applied, changed = restart_only_changes(running, new)
    assert changed == ["server.port", "store"]
    assert applied.server.port == 8080 and applied.store == running.store
    assert applied.models == new.models


async def test_apply_keeps_unchanged_adapters_and_drains_replaced_ones() -> None:
    runtime = Runtime(parse_config(manifest()), adapter_factory=RecordingAdapter)
    old = dict(runtime.snapshot.adapters)
    lease = runtime.lease(old["a"])  # a request still streaming from model a
    changed = manifest(tag="v2").replace("  - {name: b, adapter: scripted, script: {steps: [{text: \"from b\"}]}}\n", "")
    result = await runtime.apply(parse_config(changed))
    assert (result.kept, result.started, sorted(result.retired)) == ([], ["a"], ["a", "b"])
    assert runtime.snapshot.version == 2 and set(runtime.snapshot.adapters) == {"a"}
    await asyncio.sleep(0)
    assert old["b"].closed  # nothing in flight: closed at once
    assert not old["a"].closed  # still leased
    lease.release()
    await asyncio.sleep(0.01)
    assert old["a"].closed
    again = await runtime.apply(parse_config(changed))
    assert again.kept == ["a"] and runtime.snapshot.adapters["a"] is not old["a"]


async def test_drain_deadline_closes_stragglers() -> None:
    runtime = Runtime(parse_config(manifest()), adapter_factory=RecordingAdapter, drain_seconds=0.05)
    old_a = runtime.snapshot.adapters["a"]
    runtime.lease(old_a)  # never released
    await runtime.apply(parse_config(manifest(tag="v2")))
    await asyncio.sleep(0.1)
    assert old_a.closed


async def test_invalid_manifest_is_rejected_and_the_running_one_stays(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(manifest())
    runtime = Runtime(parse_config(manifest()), adapter_factory=RecordingAdapter)
    reloader = Reloader(runtime, path)
    path.write_text(manifest() + "bogus: 1\n")
    with pytest.raises(ReloadFailed) as info:
        await reloader.reload("test")
    assert info.value.problems == ["bogus: unknown key (known keys: server, auth, store, models, policies, clients, mlx)"]
    assert reloader.describe()["last_error"] == info.value.problems
    assert runtime.snapshot.version == 1
    path.write_text(manifest(tag="v2"))
    result = await reloader.reload("test")
    assert result["version"] == 2 and reloader.describe()["last_error"] is None


def test_admin_reload_needs_the_admin_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(manifest().replace("server: {port: 8080}", "server: {watch_manifest: false}"))
    with serve(make_config(path.read_text()), manifest_path=path) as base, httpx.Client(base_url=base) as http:
        assert http.post("/admin/reload").json()["error"]["code"] == "admin_disabled"
        monkeypatch.setenv("TEST_ADMIN_KEY", "s3cret")
        assert http.post("/admin/reload").status_code == 401
        assert http.post("/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
        path.write_text(path.read_text().replace("from a v1", "from a v2"))
        ok = http.post("/admin/reload", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["version"] == 2 and ok.json()["started"] == ["a"]
        assert http.post("/v1/responses", json={"model": "a", "input": "x"}).json()["output"][0]["content"][0]["text"] == "from a v2"
        path.write_text("models: [{name: a}]\n")
        bad = http.post("/admin/reload", headers={"authorization": "Bearer s3cret"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_manifest"
        assert "models[0].adapter: required" in bad.json()["error"]["message"]
        assert http.get("/health").json()["manifest"]["last_error"] == ["models[0].adapter: required"]
        assert http.post("/v1/responses", json={"model": "b", "input": "x"}).status_code == 200


def test_fifty_rewrites_under_load_lose_no_request(tmp_path: Path) -> None:
    """A client loop runs while the manifest is rewritten 50 times, valid and invalid in turn."""
    path = tmp_path / "gateway.yaml"
    path.write_text(manifest(hosted="note"))
    body = {"model": "a", "input": "x", "tools": [{"type": "web_search"}]}
    failures: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()

    with serve(make_config(path.read_text()), manifest_path=path) as base:
        def client_loop() -> None:
            with httpx.Client(base_url=base, timeout=10) as http:
                while not stop.is_set():
                    try:
                        response = http.post("/v1/responses", json=body)
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        continue
                    statuses.append(response.status_code)
                    if response.status_code not in (200, 400):
                        failures.append(f"{response.status_code}: {response.text[:200]}")

        threads = [threading.Thread(target=client_loop) for _ in range(2)]
        for thread in threads:
            thread.start()
        effect_delays = []
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                hosted = "note"
                for i in range(50):
                    if i % 2 == 0:
                        hosted = "reject" if hosted == "note" else "note"
                        write_atomically(path, manifest(hosted=hosted))
                        expected = 400 if hosted == "reject" else 200
                        began = time.monotonic()
                        while http.post("/v1/responses", json=body).status_code != expected:
                            assert time.monotonic() - began < 2.0, f"change {i} did not take effect within 2 s"
                            time.sleep(0.01)
                        effect_delays.append(time.monotonic() - began)
                    else:
                        write_atomically(path, manifest(hosted=hosted) + f"models: nope-{i}\n")
                        began = time.monotonic()
                        while not http.get("/health").json()["manifest"]["last_error"]:
                            assert time.monotonic() - began < 2.0, f"invalid write {i} was not noticed"
                            time.sleep(0.01)
                        expected = 400 if hosted == "reject" else 200
                        assert http.post("/v1/responses", json=body).status_code == expected
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
    assert failures == []
    assert len(statuses) > 50 and {200, 400} <= set(statuses)
    assert max(effect_delays) < 2.0


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_sighup_reloads_a_running_gateway(tmp_path: Path) -> None:
    from tests.process import GatewayProcess, free_port

    path = tmp_path / "gateway.yaml"
    port = free_port()
    path.write_text(manifest().replace("server: {port: 8080}", f"server: {{port: {port}, watch_manifest: false}}"))
    gateway = GatewayProcess(path, tmp_path / "gateway.log", port=port)
    with gateway:
        path.write_text(path.read_text().replace("from a v1", "from a sighup"))
        time.sleep(0.3)  # watching is off: nothing changes until the signal
        assert httpx.get(f"{gateway.base}/health").json()["manifest"]["version"] == 1
        gateway.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while httpx.get(f"{gateway.base}/health").json()["manifest"]["version"] != 2:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
        answer = httpx.post(f"{gateway.base}/v1/responses", json={"model": "a", "input": "x"}).json()
        assert answer["output"][0]["content"][0]["text"] == "from a sighup"
    assert '"reason":"sighup"' in gateway.log()


def test_a_command_line_override_is_not_a_restart_request() -> None:
    """Started with --port 9000 from a file saying 8080: the unchanged file needs no restart; a new port does."""
    started_from = parse_config(manifest())
    running = parse_config(manifest().replace("port: 8080", "port: 9000"))  # what --port 9000 made of it
    applied, changed = restart_only_changes(running, parse_config(manifest(tag="v2")), started_from)
    assert changed == [] and applied.server.port == 9000
    applied, changed = restart_only_changes(running, parse_config(manifest().replace("8080", "8081")), started_from)
    assert changed == ["server.port"] and applied.server.port == 9000
    applied, changed = restart_only_changes(running, parse_config(manifest().replace("8080", "9000")), started_from)
    assert changed == []  # the file now asks for what already runs


def test_run_with_host_and_port_reloads_without_a_false_restart_request(tmp_path: Path) -> None:
    """`gateway run --host --port` over a file with other values: neither /admin/reload nor SIGHUP claims a restart."""
    from tests.process import GatewayProcess, environ

    path = tmp_path / "gateway.yaml"
    path.write_text(manifest().replace("server: {port: 8080}", "server: {host: localhost, port: 8080, "
                                       "watch_manifest: false}"))
    admin = {"authorization": "Bearer reload-admin"}
    gateway = GatewayProcess(path, tmp_path / "gateway.log", env=environ(TEST_ADMIN_KEY="reload-admin"),
                             extra_args=("--host", "127.0.0.1"))  # GatewayProcess always passes --port
    with gateway, httpx.Client(base_url=gateway.base, timeout=10) as http:
        path.write_text(path.read_text().replace("from a v1", "from a v2"))
        answer = http.post("/admin/reload", headers=admin)
        assert answer.status_code == 200 and answer.json()["restart_required"] == []
        path.write_text(path.read_text().replace("from a v2", "from a v3"))
        gateway.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while (described := http.get("/health").json()["manifest"])["version"] != 3:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
        assert described["restart_required"] == []
        path.write_text(path.read_text().replace("port: 8080", "port: 8081"))  # a real change is still reported
        assert http.post("/admin/reload", headers=admin).json()["restart_required"] == ["server.port"]
        assert http.post("/v1/responses", json={"model": "a", "input": "x"}).status_code == 200
    assert "manifest_restart_required" in gateway.log()


def test_a_rejected_reload_is_visible_in_health_metrics_and_status(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """While the file holds a manifest that was rejected, /health is degraded, /metrics counts the rejection and
    /status.json carries it; a valid file brings everything back."""
    from tests.test_ops import metric_samples

    monkeypatch.setenv("TEST_ADMIN_KEY", "s3cret")
    admin = {"authorization": "Bearer s3cret"}
    path = tmp_path / "gateway.yaml"
    path.write_text(manifest().replace("server: {port: 8080}", "server: {watch_manifest: false}"))
    started = time.time()
    with serve(make_config(path.read_text()), manifest_path=path) as base, httpx.Client(base_url=base) as http:
        def reloads() -> tuple[float, float, float]:
            got = metric_samples(http.get("/metrics").text)
            return (got[("mlxgw_manifest_reloads_total", frozenset({("result", "ok")}))],
                    got[("mlxgw_manifest_reloads_total", frozenset({("result", "rejected")}))],
                    got[("mlxgw_manifest_last_reload_success_timestamp_seconds", frozenset())])

        ok, rejected, loaded_at = reloads()
        assert (ok, rejected) == (0, 0) and started - 1 <= loaded_at <= time.time()  # start-up counts as a success
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["manifest"]["matches_file"] is True
        path.write_text(path.read_text() + "bogus: 1\n")
        assert http.get("/health").json()["status"] == "degraded"  # edited and not reloaded: not what runs
        assert http.post("/admin/reload", headers=admin).status_code == 400
        health = http.get("/health").json()
        assert health["status"] == "degraded" and health["manifest"]["matches_file"] is False
        assert health["manifest"]["last_error"] == [
            "bogus: unknown key (known keys: server, auth, store, models, policies, clients, mlx)"]
        assert health["manifest"]["reloads"] == {"ok": 0, "rejected": 1}
        assert reloads() == (0, 1, loaded_at)
        document = http.get("/status.json").json()
        assert document["status"] == "degraded"
        assert document["manifest"]["last_error"] == health["manifest"]["last_error"]
        assert document["manifest"]["last_rejected_at"] >= started
        assert http.post("/v1/responses", json={"model": "a", "input": "x"}).status_code == 200  # still serving

        path.write_text(manifest(tag="v2").replace("server: {port: 8080}", "server: {watch_manifest: false}"))
        assert http.post("/admin/reload", headers=admin).status_code == 200
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["manifest"]["matches_file"] is True
        assert health["manifest"]["last_error"] is None
        ok, rejected, reloaded_at = reloads()
        assert (ok, rejected) == (1, 1) and reloaded_at > loaded_at
        assert http.get("/status.json").json()["status"] == "ok"
