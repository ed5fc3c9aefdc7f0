"""`redis+sentinel://` URLs: the store finds the primary through sentinels the test starts itself."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_config, serve
from tests.redisproc import RedisProcess, free_port, need_redis_server

pytestmark = pytest.mark.redis


def start_sentinel(directory: Path, primary_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = directory / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor gwprimary 127.0.0.1 {primary_port} 1\n"
        "sentinel down-after-milliseconds gwprimary 5000\n"
    )
    process = subprocess.Popen([need_redis_server(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    return process, port


def test_store_through_a_sentinel_url(tmp_path: Path) -> None:
    primary = RedisProcess(tmp_path / "primary").start()
    sentinel, port = start_sentinel(tmp_path, primary.port)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "sentinel", "get-master-addr-by-name", "gwprimary"],
                             capture_output=True, text=True).stdout.split() != ["127.0.0.1", str(primary.port)]:
            assert time.monotonic() < deadline, "the sentinel did not come up"
            time.sleep(0.1)
        prefix = f"mlxgw-test-{os.urandom(4).hex()}"
        config = make_config(f"""
store: {{url: "redis+sentinel://127.0.0.1:{port}/gwprimary/0", key_prefix: {prefix}}}
models: [{{name: echo, adapter: scripted, script: {{mode: echo}}}}]
""")
        with serve(config) as base, httpx.Client(base_url=base) as http:
            first = http.post("/v1/responses", json={"model": "echo", "input": "remember me"}).json()
            second = http.post("/v1/responses", json={"model": "echo", "input": "and now?",
                                                      "previous_response_id": first["id"]})
            assert second.status_code == 200
            assert '"remember me"' in second.json()["output"][0]["content"][0]["text"]  # the chain was replayed
            assert http.get("/health").json()["store"]["state"] == "ok"
        keys = subprocess.run(["redis-cli", "-p", str(primary.port), "--scan", "--pattern", f"{prefix}:*"],
                              capture_output=True, text=True).stdout.split()
        assert keys  # written to the primary the sentinel named
    finally:
        sentinel.terminate()
        sentinel.wait(timeout=10)
        primary.stop()


def test_a_sentinel_url_must_name_its_service() -> None:
    from gateway.config import StoreConfig
    from gateway.store.connection import connect

    with pytest.raises(ValueError, match="names the monitored service"):
        connect(StoreConfig(url="redis+sentinel://127.0.0.1:26379"))
