"""The status page rendered by real headless Chromium (Debian's `chromium`), which runs in a network
namespace with only `lo`, relayed to the gateway's Unix socket. Keeps a screenshot as a test artifact."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, make_config, serve
from tests.e2e.harness import NETNS_RUN, isolation_works

ARTIFACTS = ROOT / "test-artifacts"
PORT = 18090  # inside the namespace only

MANIFEST = """
models:
  - {name: coder, aliases: [demo], adapter: scripted, script: {steps: [{text: "hello from the coder"}]}}
  - {name: echo, adapter: scripted, script: {mode: echo}}
"""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None if path else "Debian's chromium is not installed"
    problem = problem or isolation_works()
    if problem:
        if os.environ.get("MLXGW_E2E") == "required":
            pytest.fail(f"browser test required but unavailable: {problem}")
        pytest.skip(problem)
    return path  # type: ignore[return-value]


def chromium(binary: str, socket_path: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        "unshare", "-n", sys.executable, str(NETNS_RUN), "--port", str(PORT), "--socket", str(socket_path),
        "--timeout", "60", "--", binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args,
        f"http://127.0.0.1:{PORT}/",
    ]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=90)


def test_status_page_shows_models_requests_and_degradations(tmp_path: Path) -> None:
    binary = chromium_path()
    socket_path = tmp_path / "gateway.sock"
    with serve(make_config(MANIFEST), uds=socket_path) as base:
        with httpx.Client(base_url=base) as http:
            http.post("/v1/responses", json={"model": "demo", "input": "hi", "tools": [{"type": "web_search"}]})
            http.post("/v1/responses", json={"model": "echo", "input": "hi"})
        dom = chromium(binary, socket_path, tmp_path / "profile", "--dump-dom")
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "status-page.png"
        screenshot.unlink(missing_ok=True)
        shot = chromium(binary, socket_path, tmp_path / "profile2", f"--screenshot={screenshot}",
                        "--window-size=1280,900", "--hide-scrollbars")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "2 model(s) · manifest version" in page  # the script ran and fetched status.json
    models_table = page.split('id="models"', 1)[1].split("</table>", 1)[0]
    assert "<b>coder</b>" in models_table and "<b>echo</b>" in models_table
    assert models_table.count('class="pill ready"') == 2
    recent = page.split('id="recent"', 1)[1].split("</table>", 1)[0]
    assert recent.count("<code>POST /v1/responses</code>") == 2
    assert recent.count('class="completed"') == 2
    degradations = page.split('id="degradations"', 1)[1].split("</table>", 1)[0]
    assert "tool:web_search:note" in degradations
    assert 'class="pill ok"' in page.split('id="store"', 1)[1][:200]
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000


def test_status_page_shows_a_rejected_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page an operator looks at says the last reload was rejected, why, and that the gateway is degraded."""
    binary = chromium_path()
    monkeypatch.setenv("STATUS_ADMIN_KEY", "page-admin")
    path = tmp_path / "gateway.yaml"
    path.write_text("server: {watch_manifest: false}\nauth: {admin_key_env: STATUS_ADMIN_KEY}\n" + MANIFEST)
    socket_path = tmp_path / "gateway.sock"
    with serve(make_config(path.read_text()), manifest_path=path, uds=socket_path) as base:
        path.write_text(path.read_text() + "bogus: 1\n")
        with httpx.Client(base_url=base) as http:
            assert http.post("/admin/reload", headers={"authorization": "Bearer page-admin"}).status_code == 400
        dom = chromium(binary, socket_path, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert page.split('id="summary"', 1)[1].split("</div>", 1)[0].endswith("· degraded")
    manifest = page.split('id="manifest"', 1)[1].split("</div>", 1)[0]
    assert 'class="pill rejected"' in manifest and "last reload rejected" in manifest
    assert "bogus: unknown key" in manifest
    assert "1 rejected" in manifest and "0 applied" in manifest
