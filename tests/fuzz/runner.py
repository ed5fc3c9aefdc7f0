"""Running cases: `Case` (one request), `Harness` (sends it through an in-process or real-server httpx client,
resolves references to ids the server issued, and checks the answer, the stream and the logs), `Stats` and the
summary lines printed for CI."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import traceback
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.fuzz.values import DEEP_MARKER, REF_MARKER
from tests.sse import chat_chunks, response_events

REQUEST_TIMEOUT = 30.0  # seconds; a request taking longer is a hang
TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}


@dataclass
class Case:
    """One request a generated example sends; markers in it (see `values`) resolve when it runs."""

    method: str
    path: str
    body: Any = None  # a JSON value (serialized when the case runs) ...
    raw: bytes | None = None  # ... or bytes sent as they are
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    ascii_only: bool = True
    path_id: str | None = None  # replaces `{id}` in `path` once references resolve, URL-quoted ...
    quote_slash: bool = True  # ... "/" included
    path_item: str | None = None  # replaces `{item}` the same way


@dataclass
class Pools:
    """Ids the server issued, which later cases refer to (an index drawn by Hypothesis, resolved here)."""

    ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, value: str, cap: int = 64) -> None:
        pool = self.ids.setdefault(kind, [])
        if value not in pool:
            pool.append(value)
            del pool[:-cap]

    def discard(self, value: str, graveyard: str = "deleted") -> None:
        for kind, pool in self.ids.items():
            if kind != graveyard and value in pool:
                pool.remove(value)
        self.add(graveyard, value)

    def resolve(self, kind: str, index: int) -> str:
        pool = self.ids.get(kind)
        if pool:
            return pool[index % len(pool)]
        prefix = {"fresh_item": "msg", "item": "msg", "input_item": "msg", "conv_item": "msg", "conversation": "conv",
                  "fresh_conversation": "conv", "deleted_conversation": "conv"}.get(kind, "resp")
        return f"{prefix}_{index:016x}{'c' * 32}"  # well formed, never issued


@dataclass
class Stats:
    name: str
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    streams: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def line(self) -> str:
        self.seconds = time.monotonic() - self.started
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (f"[fuzz] {self.name}: {self.cases} cases in {self.seconds:.1f} s; "
                f"statuses {{{statuses}}}; streams read {self.streams}; unexpected 5xx {self.server_errors}"
                )


class Harness:
    """Sends cases through an httpx client (in-process TestClient or a real server) and checks each answer."""

    def __init__(self, client: httpx.Client, stats: Stats, logs: list[dict[str, Any]]) -> None:
        self.client = client
        self.stats = stats
        self.pools = Pools()
        self.logs = logs
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.hung: str | None = None

    # --- materializing a case

    def _substitute(self, text: str) -> str:
        return REF_MARKER.sub(lambda m: self.pools.resolve(m.group(1), int(m.group(2))), text)

    @staticmethod
    def _deep(match: re.Match[str]) -> str:
        depth, kind = int(match.group(1)), match.group(2)
        if kind == "list":
            return "[" * depth + "1" + "]" * depth
        if kind == "dict":
            return '{"a":' * depth + "1" + "}" * depth
        half = depth // 2
        return '{"k":[' * half + "null" + "]}" * half

    def body_bytes(self, case: Case) -> bytes | None:
        if case.raw is not None:
            return case.raw
        if case.body is None and case.method != "POST":
            return None
        text = json.dumps(case.body, ensure_ascii=case.ascii_only)
        text = self._substitute(DEEP_MARKER.sub(self._deep, text))
        return text.encode("utf-8", "surrogatepass")  # a lone surrogate without ensure_ascii: invalid UTF-8

    # --- running one

    def send(self, method: str, path: str, *, content: bytes | None = None, params: Any = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        if self.hung is not None:
            raise AssertionError(f"an earlier request hung: {self.hung}")
        future = self.executor.submit(self.client.request, method, path, content=content, params=params,
                                      headers=headers)
        try:
            return future.result(timeout=REQUEST_TIMEOUT)
        except concurrent.futures.TimeoutError:
            self.hung = f"{method} {path} {params!r} {content[:500] if content else content!r}"
            raise AssertionError(f"request hung for {REQUEST_TIMEOUT:g} s: {self.hung}") from None

    def run(self, case: Case) -> httpx.Response:
        content = self.body_bytes(case)
        path = self._substitute(case.path)
        safe = "" if case.quote_slash else "/"
        if case.path_id is not None:
            path = path.replace("{id}", _quote(self._substitute(case.path_id), safe))
        if case.path_item is not None:
            path = path.replace("{item}", _quote(self._substitute(case.path_item), safe))
        params = [(self._substitute(k), self._substitute(v)) for k, v in case.params] or None
        if params:  # encoded here: httpx refuses lone surrogates, a server must not
            path += "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)
        hdrs = dict(case.headers)
        if content is not None and case.raw is None:
            hdrs.setdefault("content-type", "application/json")
        self.replenish()
        self.logs.clear()
        self.stats.cases += 1
        try:
            response = self.send(case.method, path, content=content, headers=hdrs)
        except AssertionError:
            raise
        except Exception as exc:  # a dropped connection, or an exception escaping the app
            self.stats.server_errors += 1
            raise AssertionError(f"{case.method} {path}: no answer ({type(exc).__name__}: {exc})\n"
                                 f"body: {_clip(content)}") from exc
        self.stats.statuses[response.status_code] += 1
        where = f"{case.method} {path} params={params!r}\nbody: {_clip(content)}\nanswer: {_clip(response.content)}"
        if response.status_code >= 500:
            self.stats.server_errors += 1
            raise AssertionError(f"5xx for client input: {response.status_code}\n{where}\n{self._errors()}")
        check_answer(response, where)
        self._check_stream(response, path, params, where)
        self._check_object(case, path, response, where)
        self._harvest(case, path, response)
        self._check_logs(where)
        return response

    def _errors(self) -> str:
        lines = []
        for entry in self.logs:
            if entry.get("log_level") in ("error", "critical", "exception"):
                exc = entry.get("exc_info")
                detail = ""
                if isinstance(exc, BaseException):
                    detail = "".join(traceback.format_exception(exc))
                fields = {k: v for k, v in entry.items() if k != "exc_info"}
                lines.append(f"log: {entry.get('event')} {fields}\n{detail}")
        return "\n".join(lines)

    def _check_logs(self, where: str) -> None:
        errors = self._errors()
        if errors:
            raise AssertionError(f"error logged while serving client input\n{where}\n{errors}")

    def _check_stream(self, response: httpx.Response, path: str, params: Any, where: str) -> None:
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith("text/event-stream"):
            return
        self.stats.streams += 1
        if path == "/v1/chat/completions":
            chunks = chat_chunks(response.text)
            assert not any("error" in chunk for chunk in chunks), f"chat stream failed\n{where}"
            return
        events = response_events(response.text)
        seqs = [event["sequence_number"] for event in events]
        assert seqs == sorted(set(seqs)), f"sequence numbers out of order {seqs}\n{where}"
        endings = [event for event in events if event["type"] in TERMINAL]
        replay_after = [value for name, value in params or [] if name == "starting_after"]
        if not endings and replay_after:
            # a replay that starts after the ending has nothing to send: check that is what happened
            full = response_events(self.send("GET", path.partition("?")[0] + "?stream=true").text)
            last = [e["sequence_number"] for e in full if e["type"] in TERMINAL]
            assert len(last) == 1 and any(int(v) >= last[0] for v in replay_after), f"replay without ending\n{where}"
            return
        assert len(endings) == 1 and events[-1] is endings[0], f"{len(endings)} terminal events\n{where}"
        ending = endings[0]
        if ending["type"] == "error":
            assert ending.get("code") == "response_cancelled", f"stream ended with an error event\n{where}"
        else:
            assert ending["type"] != "response.failed", f"stream failed\n{where}"
            assert ending["response"]["status"] in ("completed", "incomplete")

    @staticmethod
    def _check_object(case: Case, path: str, response: httpx.Response, where: str) -> None:
        """A created response or completion that is not streamed ended well (or, in the background, started)."""
        if (response.status_code != 200 or case.method != "POST"
                or not response.headers.get("content-type", "").startswith("application/json")):
            return
        if path == "/v1/responses":
            obj = response.json()
            expected = ("queued", "in_progress", "completed") if obj["background"] else ("completed", "incomplete")
            assert obj["object"] == "response" and obj["status"] in expected, where
        elif path == "/v1/responses/input_tokens":
            assert response.json()["object"] == "response.input_tokens", where
        elif path == "/v1/conversations":
            assert response.json()["object"] == "conversation", where
        elif path == "/v1/chat/completions":
            obj = response.json()
            assert obj["object"] == "chat.completion", where
            assert obj["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls"), where

    def _harvest(self, case: Case, path: str, response: httpx.Response) -> None:
        """Remember what the server issued, for later cases to refer to."""
        if response.status_code != 200:
            return
        path = path.partition("?")[0]
        if path.startswith("/v1/conversations"):
            self._harvest_conversation(case, path, response)
            return
        if case.method == "DELETE":
            self.pools.discard(urllib.parse.unquote(path.rsplit("/", 1)[-1]))
            return
        if path != "/v1/responses":
            if path.endswith("/input_items"):
                for item in response.json().get("data", []):
                    self.pools.add("input_item", item["id"])
            return
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            final = [e["response"] for e in response_events(response.text) if "response" in e]
            obj = final[-1] if final else None
        else:
            obj = response.json()
        if not obj:
            return
        if obj.get("background"):
            self.pools.add("background", obj["id"])
        elif not obj.get("store"):
            self.pools.add("unstored", obj["id"])
        elif len(response.content) < 8000:  # keep chains (and what echo repeats of them) small
            self.pools.add("response", obj["id"])
            for item in obj.get("output", []):
                if isinstance(item.get("id"), str):
                    self.pools.add("item", item["id"])

    def _harvest_conversation(self, case: Case, path: str, response: httpx.Response) -> None:
        parts = [urllib.parse.unquote(part) for part in path.split("/")[3:]]  # after /v1/conversations
        if case.method == "DELETE" and len(parts) == 1:
            self.pools.discard(parts[0], "deleted_conversation")
            return
        obj = response.json()
        if not isinstance(obj, dict):
            return
        if obj.get("object") == "conversation" and case.method == "POST":
            self.pools.add("conversation", obj["id"])
        for item in obj.get("data", []) if obj.get("object") == "list" else []:
            if isinstance(item.get("id"), str):
                self.pools.add("conv_item", item["id"])

    def still_serves(self) -> None:
        """After everything: the server answers a normal request, streamed and not."""
        assert self.send("GET", "/health").status_code == 200
        body = json.dumps({"model": "scripted", "input": "hello"}).encode()
        plain = self.send("POST", "/v1/responses", content=body, headers={"content-type": "application/json"})
        assert plain.status_code == 200 and plain.json()["status"] == "completed", plain.text
        body = json.dumps({"model": "scripted", "input": "hello", "stream": True}).encode()
        streamed = self.send("POST", "/v1/responses", content=body, headers={"content-type": "application/json"})
        assert response_events(streamed.text)[-1]["type"] == "response.completed"

    def replenish(self) -> None:
        """Keep a few stored responses to refer to (DELETE cases use them up)."""
        for _ in range(4 - len(self.pools.ids.get("conversation", []))):
            items = [{"role": "user", "content": "remember this"}, {"type": "function_call", "call_id": "call_1",
                                                                     "name": "exec_command", "arguments": "{}"}]
            response = self.send("POST", "/v1/conversations", content=json.dumps({"items": items}).encode(),
                                 headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            self._harvest(Case("POST", "/v1/conversations"), "/v1/conversations", response)
        for n in range(8 - len(self.pools.ids.get("response", []))):
            body = {"model": "scripted" if n % 2 else "echo", "input": "again",
                    "tools": [{"type": "custom", "name": "apply_patch"}]}
            response = self.send("POST", "/v1/responses", content=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            self._harvest(Case("POST", "/v1/responses"), "/v1/responses", response)

    def seed(self) -> None:
        """A few stored objects of every kind, so reference cases have something to point at."""
        for body in (
            {"model": "scripted", "input": "seed"},
            {"model": "echo", "input": [{"role": "user", "content": "seed"}]},
            {"model": "echo", "input": "seed", "store": False},
            {"model": "scripted", "input": "seed", "background": True},
            {"model": "echo", "input": "seed", "background": True, "stream": True},
        ):
            self.run(Case("POST", "/v1/responses", body=body))
        first = self.pools.ids["response"][0]
        self.run(Case("POST", "/v1/responses", body={"model": "echo", "input": "next", "previous_response_id": first}))
        self.run(Case("GET", f"/v1/responses/{first}/input_items"))
        self.logs.clear()

    def close(self) -> None:
        self.executor.shutdown(wait=self.hung is None, cancel_futures=True)


def _quote(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe=safe)


def _clip(data: bytes | None, limit: int = 1500) -> str:
    if data is None:
        return "None"
    return repr(data[:limit]) + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def check_answer(response: httpx.Response, where: str) -> None:
    """Status-independent checks: a non-2xx is the OpenAI error envelope; a 4xx is not typed server_error."""
    status = response.status_code
    if 200 <= status < 300 or response.request.method == "HEAD":  # HEAD: no body to check
        return
    assert response.headers.get("content-type", "").startswith("application/json"), where
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, where
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, where
    assert isinstance(error["message"], str) and error["message"], where
    assert isinstance(error["type"], str), where
    assert error["param"] is None or isinstance(error["param"], str), where
    assert error["code"] is None or isinstance(error["code"], str), where
    if 400 <= status < 500:
        assert error["type"] != "server_error", where


def emit(request: pytest.FixtureRequest, line: str) -> None:
    """Print past pytest's capture (CI quotes these lines), with or without `-s`."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(line, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(line, flush=True)


def summary_line(stats: list[Stats]) -> str:
    """The total over a module's tests, printed after them and again among the run's figures."""
    total = sum(s.cases for s in stats)
    errors = sum(s.server_errors for s in stats)
    seconds = sum(s.seconds for s in stats)
    return f"fuzz: {total} cases in {seconds:.1f} s over {len(stats)} tests; unexpected 5xx {errors}"
