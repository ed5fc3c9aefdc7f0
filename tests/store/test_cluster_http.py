"""The gateway on a 3-node Redis Cluster (started by the test session): chains, references, background."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.conftest import make_config, serve
from tests.sse import response_events

pytestmark = pytest.mark.redis

MANIFEST = """
store: {{url: "{url}", key_prefix: "{prefix}"}}
models:
  - name: echo
    adapter: scripted
    script: {{mode: echo, chunk_chars: 100000}}
"""


def test_chains_references_and_background_on_a_cluster(cluster_url: str) -> None:
    config = make_config(MANIFEST.format(url=cluster_url, prefix=f"mlxgw-test-{os.urandom(4).hex()}"))
    with serve(config) as base, httpx.Client(base_url=base, timeout=10) as http:
        ids: list[str] = []
        for n in range(6):  # several chains' worth of turns spread over the cluster's slots
            body = {"model": "echo", "input": f"turn {n}", **({"previous_response_id": ids[-1]} if ids else {})}
            response = http.post("/v1/responses", json=body)
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        seen = json.loads(response.json()["output"][0]["content"][0]["text"])["messages"]
        assert [m["content"] for m in seen if m["role"] == "user"] == [f"turn {n}" for n in range(6)]
        others = [http.post("/v1/responses", json={"model": "echo", "input": f"other {n}"}).json() for n in range(4)]
        refs = [{"type": "item_reference", "id": o["output"][0]["id"]} for o in others]
        joined = http.post("/v1/responses", json={"model": "echo", "input": [*refs, {"role": "user", "content": "?"}]})
        assert joined.status_code == 200, joined.text
        shown = json.loads(joined.json()["output"][0]["content"][0]["text"])["messages"]
        assert [m["role"] for m in shown] == ["assistant", "user"]  # consecutive assistant turns are merged
        assert all(f"other {n}" in shown[0]["content"] for n in range(4))
        streamed = http.post("/v1/responses", json={"model": "echo", "input": "bg", "background": True, "stream": True,
                                                    "previous_response_id": ids[-1]})
        events = response_events(streamed.text)
        assert events[-1]["type"] == "response.completed"
        assert http.get(f"/v1/responses/{events[0]['response']['id']}").json()["status"] == "completed"
        assert http.delete(f"/v1/responses/{ids[2]}").status_code == 200
        broken = http.post("/v1/responses", json={"model": "echo", "input": "x", "previous_response_id": ids[-1]})
        assert broken.status_code == 400 and ids[2] in broken.json()["error"]["message"]
        assert http.get("/health").json()["store"]["backend"] == "cluster"
