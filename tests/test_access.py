"""Who reaches what: the README's security table checked cell by cell against a running gateway,
and every registered route walked with path spellings that must not change the answer."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.app import create_app
from tests.conftest import ROOT, make_config, serve

MANIFEST = """
auth:
  admin_key_env: ACC_ADMIN
  keys:
    - {name: full, env: ACC_FULL}
    - {name: only-a, env: ACC_A, models: [alpha]}
models:
  - {name: a, aliases: [alpha], adapter: scripted, script: {mode: echo}}
  - {name: b, adapter: scripted, script: {mode: echo}}
"""
KEYS = {"none": None, "limited": "key-a", "full": "key-full", "admin": "key-admin"}
COLUMNS = ["none", "limited", "full", "admin"]  # the README table's column order


class Client:
    """Raw HTTP on loopback: paths are sent exactly as written (no normalisation by the client)."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Client]:
    monkeypatch.setenv("ACC_FULL", "key-full")
    monkeypatch.setenv("ACC_A", "key-a")
    monkeypatch.setenv("ACC_ADMIN", "key-admin")
    manifest = tmp_path / "gateway.yaml"
    manifest.write_text(MANIFEST)
    with serve(make_config(MANIFEST), manifest_path=manifest) as base_url:
        yield Client(base_url)


def create(client: Client, model: str, key: str = "key-full", **extra: Any) -> dict[str, Any]:
    status, body = client.call("POST", "/v1/responses", {"model": model, "input": f"hello {model}", **extra}, key)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def both(statuses: tuple[int, int], *, visible: int, hidden: int) -> str:
    """Classify answers for (model a, model b): the limited key may use a, not b."""
    a, b = statuses
    if a == b and a in (401, 403):
        return str(a)
    if (a, b) == (visible, visible):
        return "all"
    if (a, b) == (visible, hidden):
        return "own"
    return f"unexpected {statuses}"


def models_seen(names: set[str]) -> str:
    return {frozenset({"a"}): "own", frozenset({"a", "b"}): "all"}.get(frozenset(names), f"unexpected {names}")


def probes(client: Client) -> dict[str, Callable[[str | None], str]]:
    """One classifier per README row: what a caller holding `key` gets."""
    seeded = {model: create(client, model) for model in ("a", "b")}

    def responses_create(key: str | None) -> str:
        return both(tuple(client.call("POST", "/v1/responses", {"model": m, "input": "x"}, key)[0]  # type: ignore[arg-type]
                          for m in ("a", "b")), visible=200, hidden=403)

    def chat(key: str | None) -> str:
        return both(tuple(client.call("POST", "/v1/chat/completions",  # type: ignore[arg-type]
                                      {"model": m, "messages": [{"role": "user", "content": "x"}]}, key)[0]
                          for m in ("a", "b")), visible=200, hidden=403)

    def input_tokens(key: str | None) -> str:
        return both(tuple(client.call("POST", "/v1/responses/input_tokens", {"model": m, "input": "x"}, key)[0]  # type: ignore[arg-type]
                          for m in ("a", "b")), visible=200, hidden=403)

    def models_list(key: str | None) -> str:
        status, body = client.call("GET", "/v1/models", key=key)
        ids = tuple(m["id"] for m in body["data"]) if status == 200 else ()
        listed = {("a", "alpha"): "own", ("a", "alpha", "b"): "all"}  # aliases are listed after their model
        return str(status) if status != 200 else listed.get(ids, f"unexpected {ids}")

    def model_by_id(key: str | None) -> str:
        return both(tuple(client.call("GET", f"/v1/models/{m}", key=key)[0] for m in ("a", "b")),  # type: ignore[arg-type]
                    visible=200, hidden=404)

    def stored(suffix: str) -> Callable[[str | None], str]:
        return lambda key: both(tuple(client.call("GET", f"/v1/responses/{seeded[m]['id']}{suffix}", key=key)[0]  # type: ignore[arg-type]
                                      for m in ("a", "b")), visible=200, hidden=404)

    def delete(key: str | None) -> str:
        fresh = {m: create(client, m)["id"] for m in ("a", "b")}
        answer = both(tuple(client.call("DELETE", f"/v1/responses/{fresh[m]}", key=key)[0]  # type: ignore[arg-type]
                            for m in ("a", "b")), visible=200, hidden=404)
        if answer != "all":  # a refused delete deleted nothing
            assert client.call("GET", f"/v1/responses/{fresh['b']}", key="key-full")[0] == 200
        return answer

    def cancel(key: str | None) -> str:
        # Foreground responses cannot be cancelled: 400 shows the route reached the response, 404 that it did not.
        return both(tuple(client.call("POST", f"/v1/responses/{seeded[m]['id']}/cancel", key=key)[0]  # type: ignore[arg-type]
                          for m in ("a", "b")), visible=400, hidden=404)

    def previous(key: str | None) -> str:
        statuses = []
        for m in ("a", "b"):
            status, body = client.call("POST", "/v1/responses", {"model": "a", "input": "more",
                                                                  "previous_response_id": seeded[m]["id"]}, key)
            if status == 400:
                assert body["error"]["code"] == "previous_response_not_found", body
            statuses.append(status)
        return both(tuple(statuses), visible=200, hidden=400)  # type: ignore[arg-type]

    def item_reference(key: str | None) -> str:
        statuses = []
        for m in ("a", "b"):
            reference = {"type": "item_reference", "id": seeded[m]["output"][0]["id"]}
            status, body = client.call("POST", "/v1/responses", {"model": "a", "input": [reference]}, key)
            if status == 400:
                assert "not found" in body["error"]["message"], body
            statuses.append(status)
        return both(tuple(statuses), visible=200, hidden=400)  # type: ignore[arg-type]

    def health(key: str | None) -> str:
        status, body = client.call("GET", "/health", key=key)
        assert status == 200
        if set(body) == {"status"}:
            return "liveness"
        answer = models_seen(set(body["models"]))
        return answer if answer == "all" or "manifest" not in body else "unexpected: manifest shown"

    def ready(key: str | None) -> str:
        status, body = client.call("GET", "/ready", key=key)
        assert status == 200
        return "liveness" if set(body) == {"ready"} else models_seen(set(body["models"]))

    def head(path: str) -> Callable[[str | None], str]:
        """HEAD /health and /ready: the status code only, for anyone (no body, so nothing to limit)."""
        def probe(key: str | None) -> str:
            status, body = client.call("HEAD", path, key=key)
            return "all" if (status, body) == (200, "") else f"unexpected {status} {body!r}"
        return probe

    def status_json(key: str | None) -> str:
        for model in ("a", "b"):  # recent requests of both models (the list keeps the last 50)
            create(client, model, store=False)
        status, body = client.call("GET", "/status.json", key=key)
        if status != 200:
            return str(status)
        answer = models_seen(set(body["models"]))
        recent = {entry.get("model") for entry in body["recent"]}
        if answer == "own" and (recent - {"a"} or body["manifest"] is not None):
            return f"unexpected: recent {recent}, manifest {body['manifest']}"
        return answer if answer == "own" or "b" in recent else f"unexpected: recent {recent}"

    def metrics(key: str | None) -> str:
        status, body = client.call("GET", "/metrics", key=key)
        return "all" if status == 200 and "mlxgw_requests_total" in body else str(status)

    def page(key: str | None) -> str:
        status, body = client.call("GET", "/", key=key)
        return "all" if status == 200 and "<html" in body else str(status)

    def reload(key: str | None) -> str:
        status, _ = client.call("POST", "/admin/reload", key=key)
        return "all" if status == 200 else str(status)

    conversation_probes = conversation_checks(client)
    return {
        **conversation_probes,
        "POST /v1/responses": responses_create,
        "POST /v1/chat/completions": chat,
        "POST /v1/responses/input_tokens": input_tokens,
        "GET /v1/models": models_list,
        "GET /v1/models/{id}": model_by_id,
        "GET /v1/responses/{id}": stored(""),
        "GET /v1/responses/{id}/input_items": stored("/input_items"),
        "DELETE /v1/responses/{id}": delete,
        "POST /v1/responses/{id}/cancel": cancel,
        "previous_response_id": previous,
        "item_reference": item_reference,
        "GET /health": health,
        "GET /ready": ready,
        "HEAD /health": head("/health"),
        "HEAD /ready": head("/ready"),
        "GET /status.json": status_json,
        "GET /metrics": metrics,
        "GET /": page,
        "POST /admin/reload": reload,
    }


def conversation_checks(client: Client) -> dict[str, Callable[[str | None], str]]:
    """Conversations belong to the key that created them: `own` for both kinds of API key."""
    owners = {"key-a": "key-a", "key-full": "key-full"}

    def make(key: str) -> dict[str, Any]:
        status, body = client.call("POST", "/v1/conversations", {"items": [{"role": "user", "content": "hi"}]}, key)
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    seeded = {key: make(key) for key in owners}

    def item_of(conversation: dict[str, Any], key: str) -> str:
        status, page = client.call("GET", f"/v1/conversations/{conversation['id']}/items", key=key)
        assert status == 200, page
        return page["data"][0]["id"]  # type: ignore[no-any-return]

    def probe(method: str, suffix: str, body: Any = None, *, visible: int = 200,
              fresh: bool = False) -> Callable[[str | None], str]:
        def check(key: str | None) -> str:
            if key not in owners:  # no key, or the admin key
                status, _ = client.call(method, f"/v1/conversations/{seeded['key-full']['id']}{suffix}", body, key)
                return str(status)
            other = "key-full" if key == "key-a" else "key-a"
            targets = {k: make(k) for k in owners} if fresh else seeded
            statuses = []
            for owner in (key, other):
                conversation = targets[owner]
                path = suffix.replace("{item}", item_of(conversation, owner) if "{item}" in suffix else "")
                statuses.append(client.call(method, f"/v1/conversations/{conversation['id']}{path}", body, key)[0])
            return both(tuple(statuses), visible=visible, hidden=404)  # type: ignore[arg-type]
        return check

    def create(key: str | None) -> str:
        status, body = client.call("POST", "/v1/conversations", {}, key)
        if status != 200:
            return str(status)
        mine = client.call("GET", f"/v1/conversations/{body['id']}", key=key)[0]
        other = client.call("GET", f"/v1/conversations/{body['id']}", key="key-a" if key != "key-a" else "key-full")[0]
        return "own" if (mine, other) == (200, 404) else f"unexpected {(mine, other)}"

    def in_a_response(key: str | None) -> str:
        def run(conversation: dict[str, Any]) -> int:
            return client.call("POST", "/v1/responses", {"model": "a", "input": "x",
                                                         "conversation": conversation["id"]}, key)[0]
        if key not in owners:
            return str(run(seeded["key-full"]))
        other = "key-full" if key == "key-a" else "key-a"
        return both((run(seeded[key]), run(seeded[other])), visible=200, hidden=404)

    items = {"items": [{"role": "user", "content": "more"}]}
    return {
        "POST /v1/conversations": create,
        "GET /v1/conversations/{id}": probe("GET", ""),
        "POST /v1/conversations/{id}": probe("POST", "", {"metadata": {"k": "v"}}),
        "DELETE /v1/conversations/{id}": probe("DELETE", "", fresh=True),
        "GET /v1/conversations/{id}/items": probe("GET", "/items"),
        "POST /v1/conversations/{id}/items": probe("POST", "/items", items),
        "GET /v1/conversations/{id}/items/{item}": probe("GET", "/items/{item}"),
        "DELETE /v1/conversations/{id}/items/{item}": probe("DELETE", "/items/{item}", fresh=True),
        "conversation": in_a_response,
    }


def readme_table() -> dict[str, list[str]]:
    section = (ROOT / "README.md").read_text().split("## Security", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_readme_security_table_holds(gateway: Client) -> None:
    table = readme_table()
    checks = probes(gateway)
    assert set(table) == set(checks), "the README table and this test must list the same routes"
    observed = {row: [checks[row](KEYS[column]) for column in COLUMNS] for row in table}
    assert observed == table


def concrete(path: str) -> str:
    """A registered path with its parameters filled in: ids that exist nowhere, a model only `full` may use."""
    fill = {"model_id": "b", "conversation_id": f"conv_{'0' * 48}", "item_id": f"msg_{'0' * 48}"}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m.group(1), f"resp_{'0' * 48}"), path)


def spellings(path: str) -> list[str]:
    """Other ways to write `path` that a server or proxy might treat as the same route."""
    rest = path[1:]
    first, _, tail = rest.partition("/")
    variants = ["/" + path, "/./" + rest, "/%2F" + rest, path + "/", path.upper(), "/%2e/" + rest]
    if first:
        variants += [f"/%{ord(first[0]):02X}{first[1:]}/{tail}".rstrip("/"), f"/{first}//{tail}",
                     f"/{first}%2F{tail}", f"/{first}/./{tail}", f"/x/../{rest}"]
    return variants


BODIES = {
    "/v1/responses": {"model": "b", "input": "x", "store": False},
    "/v1/responses/input_tokens": {"model": "b", "input": "x"},
    "/v1/chat/completions": {"model": "b", "messages": [{"role": "user", "content": "x"}]},
}


def test_every_route_answers_the_same_however_its_path_is_spelled(gateway: Client) -> None:
    app = create_app(make_config(MANIFEST))
    walked = 0
    for route in app.routes:
        for handler in route.route_handlers:  # type: ignore[attr-defined]
            for method in sorted(handler.http_methods - {"OPTIONS"}):
                path = concrete(route.path)
                for caller in COLUMNS:
                    key = KEYS[caller]
                    canonical, _ = gateway.call(method, path, BODIES.get(route.path), key)
                    for variant in spellings(path):
                        status, body = gateway.call(method, variant, BODIES.get(route.path), key)
                        # Another spelling reaches the same rule (same answer) or no route (404/405), never more.
                        assert status in (canonical, 404, 405), (method, path, variant, caller, canonical, body)
                    walked += 1
    assert walked == 4 * 25  # 25 routes and methods (the README table's route rows), for each kind of caller


def test_every_route_declares_its_access() -> None:
    app = create_app(make_config(MANIFEST))
    undeclared = [(route.path, handler.http_methods) for route in app.routes
                  for handler in route.route_handlers  # type: ignore[attr-defined]
                  if "access" not in handler.opt and handler.http_methods != {"OPTIONS"}]
    assert undeclared == []


def test_the_first_finding_is_closed(gateway: Client) -> None:
    """The attack that opened the issue: `//v1/...` without any key."""
    for method, path in [("GET", "//v1/models"), ("POST", "//v1/responses"), ("POST", "//v1/chat/completions")]:
        status, body = gateway.call(method, path, BODIES.get(path[1:]))
        assert status == 401 and body["error"]["code"] == "invalid_api_key", (path, status, body)


def raw_request(client: Client, head: bytes, body: bytes, *, close_after: bool) -> bytes:
    with socket.create_connection((client.host, client.port), timeout=10) as sock:
        sock.sendall(head + body)
        if close_after:
            return b""
        chunks = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


STALL = """
server: {body_timeout_seconds: 0.5}
models:
  - {name: echo, adapter: scripted, script: {mode: echo}}
"""


def test_a_stalled_body_is_cut_with_408() -> None:
    with serve(make_config(STALL)) as base_url:
        client = Client(base_url)
        head = (b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 1000\r\nconnection: close\r\n\r\n")
        started = time.monotonic()
        answer = raw_request(client, head, b'{"model": "echo", ', close_after=False)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":"request_timeout"' in answer
    assert elapsed < 5


def test_a_client_that_hangs_up_mid_body_is_logged_as_499() -> None:
    with structlog.testing.capture_logs() as logs, serve(make_config(STALL.replace("0.5", "5"))) as base_url:
        client = Client(base_url)
        head = (b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 1000\r\n\r\n")
        raw_request(client, head, b'{"model": "echo", ', close_after=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(e["event"] == "request" for e in logs):
            time.sleep(0.02)
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert [(r["status"], r.get("error_code")) for r in requests] == [(499, "client_disconnected")]
    assert not [entry for entry in logs if entry["event"] == "unhandled_exception"]
