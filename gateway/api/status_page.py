"""The status page at `/`: one HTML file, no build step, refreshing itself from `/status.json`."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["PAGE", "RecentRequests", "status_document"]


class RecentRequests:
    """The last few finished requests (bounded), for the status page."""

    def __init__(self, size: int = 50) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, line: dict[str, Any]) -> None:
        keep = ("request_id", "method", "path", "status", "duration_ms", "model", "response_status", "ttft_ms",
                "input_tokens", "output_tokens", "cached_tokens", "tokens_per_second", "degradations", "error_code")
        self.entries.append({"at": round(time.time(), 3), **{k: line[k] for k in keep if k in line}})

    def visible(self, shows: Callable[[str | None], bool]) -> list[dict[str, Any]]:
        """The entries of the models `shows` accepts, newest first."""
        return [entry for entry in reversed(self.entries) if shows(entry.get("model"))]

    def tokens_per_second(self, model: str) -> float | None:
        rates = [e["tokens_per_second"] for e in self.entries
                 if e.get("model") == model and isinstance(e.get("tokens_per_second"), (int, float))]
        return round(sum(rates[-5:]) / len(rates[-5:]), 1) if rates else None

    def degradations(self, shows: Callable[[str | None], bool]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.visible(shows):
            for item in entry.get("degradations", ()):
                counts[item] = counts.get(item, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def status_document(
    health: dict[str, Any], recent: RecentRequests, shows: Callable[[str | None], bool]
) -> dict[str, Any]:
    """The status page's data; `shows(model)` filters recent requests to what the caller may see."""
    models = {
        name: {**info, "recent_tokens_per_second": recent.tokens_per_second(name)}
        for name, info in health.get("models", {}).items()
    }
    return {
        "generated_at": round(time.time(), 3),
        "status": health.get("status"),
        "manifest": health.get("manifest"),
        "manifest_version": health.get("manifest_version"),
        "store": health.get("store"),
        "models": models,
        "recent": recent.visible(shows),
        "degradations": recent.degradations(shows),
    }


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mlx-gateway</title>
<style>
  :root { --fg: #1c2024; --muted: #6b7280; --line: #e5e7eb; --ok: #15803d; --warn: #b45309; --bad: #b91c1c; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 24px; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 24px 0 8px; }
  .muted { color: var(--muted); } table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
  .pill { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; background: #f3f4f6; }
  .ready, .loaded, .ok, .completed { color: var(--ok); } .loading, .queued, .incomplete { color: var(--warn); }
  .failed, .dead, .down, .error, .cancelled, .rejected, .unreachable { color: var(--bad); } .degraded, .changed { color: var(--warn); }
  .problems { margin: 6px 0 0; padding-left: 18px; color: var(--bad); }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
</style>
</head>
<body>
<h1>mlx-gateway</h1>
<div class="muted" id="summary">loading…</div>
<h2>Models</h2>
<table id="models"><thead><tr><th>Model</th><th>Adapter</th><th>State</th><th>In flight</th><th>Queued</th>
<th>Memory</th><th>Recent tok/s</th></tr></thead><tbody></tbody></table>
<h2>Store</h2><div id="store" class="muted">–</div>
<h2>Manifest</h2><div id="manifest" class="muted">–</div>
<h2>Degradations (recent requests)</h2><table id="degradations"><thead><tr><th>Degradation</th><th>Count</th></tr>
</thead><tbody></tbody></table>
<h2>Recent requests</h2>
<table id="recent"><thead><tr><th>Time</th><th>Request</th><th>Model</th><th>Status</th><th>Response</th>
<th>TTFT ms</th><th>Tokens in/out</th><th>Duration ms</th></tr></thead><tbody></tbody></table>
<script>
const esc = (v) => String(v ?? "–").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const mb = (b) => (typeof b === "number" ? (b / 1048576).toFixed(0) + " MB" : "–");
function rows(id, items) { document.querySelector(`#${id} tbody`).innerHTML = items.join(""); }
const keyForm = () => `<form onsubmit="localStorage.setItem('mlxgw-key', this.key.value); refresh(); return false">
  This gateway needs a key: <input name="key" type="password" size="32"> <button>Use it</button></form>`;
const when = (t) => (typeof t === "number" ? new Date(t * 1000).toLocaleTimeString() : "–");
function manifest(m) {
  if (!m) return "–";
  const [cls, label] = m.last_error ? ["rejected", "last reload rejected: the running manifest is older than the file"]
    : m.matches_file ? ["ok", "running the file as it is"] : ["changed", "the file changed since it was loaded"];
  const problems = (m.last_error ?? []).map((p) => `<li><code>${esc(p)}</code></li>`).join("");
  const restart = m.restart_required?.length ? `<div>restart required for: <code>${esc(m.restart_required.join(", "))}</code></div>` : "";
  return `<span class="pill ${cls}">${esc(label)}</span> <code>${esc(m.path)}</code> · version ${esc(m.version)}
    · reloads ${esc(m.reloads?.ok)} applied, ${esc(m.reloads?.rejected)} rejected (last rejected ${when(m.last_rejected_at)})
    · last success ${when(m.last_success_at)}${problems ? `<ul class="problems">${problems}</ul>` : ""}${restart}`;
}
async function refresh() {
  try {
    const key = localStorage.getItem("mlxgw-key");
    const response = await fetch("status.json", {cache: "no-store", headers: key ? {Authorization: `Bearer ${key}`} : {}});
    if (response.status === 401 || response.status === 403) {
      document.getElementById("summary").innerHTML = keyForm();
      return;
    }
    const s = await response.json();
    const models = Object.entries(s.models);
    document.getElementById("summary").textContent =
      `${models.length} model(s) · manifest version ${s.manifest_version ?? "–"} · updated ${new Date(s.generated_at * 1000).toLocaleTimeString()} · ${s.status ?? "–"}`;
    document.getElementById("manifest").innerHTML = manifest(s.manifest);
    rows("models", models.map(([name, m]) => `<tr><td><b>${esc(name)}</b></td><td>${esc(m.adapter)}</td>
      <td><span class="pill ${esc(m.state)}">${esc(m.state)}</span></td><td>${esc(m.active ?? 0)}</td>
      <td>${esc(m.queued ?? 0)}</td><td>${mb(m.memory_bytes)}</td><td>${esc(m.recent_tokens_per_second)}</td></tr>`));
    const store = s.store;
    document.getElementById("store").innerHTML = store
      ? `<span class="pill ${store.state === "ok" ? "ok" : "down"}">${esc(store.state)}</span> ${esc(store.url ?? store.backend)}`
      : "not configured";
    rows("degradations", Object.entries(s.degradations).map(([d, n]) => `<tr><td><code>${esc(d)}</code></td><td>${n}</td></tr>`));
    rows("recent", s.recent.map((r) => `<tr><td>${new Date(r.at * 1000).toLocaleTimeString()}</td>
      <td><code>${esc(r.method)} ${esc(r.path)}</code></td><td>${esc(r.model)}</td><td>${esc(r.status)}</td>
      <td><span class="${esc(r.response_status)}">${esc(r.response_status)}</span></td><td>${esc(r.ttft_ms)}</td>
      <td>${esc(r.input_tokens)} / ${esc(r.output_tokens)}</td><td>${esc(r.duration_ms)}</td></tr>`));
  } catch (error) {
    document.getElementById("summary").textContent = "cannot reach the gateway: " + error;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
