"""GET /v1/models lists every name a request may use, aliases included, and only those the caller may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from openai import OpenAI

from gateway.app import create_app
from tests.conftest import make_config, serve

MANIFEST = """
auth:
  keys:
    - {name: full, env: MODELS_FULL}
    - {name: by-alias, env: MODELS_ALIAS, models: [demo]}
    - {name: by-name, env: MODELS_NAME, models: [echo]}
models:
  - {name: scripted, aliases: [demo, demo-2], adapter: scripted, script: {steps: [{text: hello}]}}
  - {name: echo, adapter: scripted, script: {mode: echo}}
  - {name: tiny, aliases: [t], adapter: mlx, source: dummy}
"""
KEYS = {"MODELS_FULL": "key-full", "MODELS_ALIAS": "key-alias", "MODELS_NAME": "key-name"}


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for variable, value in KEYS.items():
        monkeypatch.setenv(variable, value)
    with TestClient(app=create_app(make_config(MANIFEST))) as client:
        yield client


def listed(client: TestClient, key: str) -> list[dict[str, object]]:
    response = client.get("/v1/models", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    data: list[dict[str, object]] = body["data"]
    return data


def test_aliases_are_listed_after_their_model(keyed: TestClient) -> None:
    data = listed(keyed, "key-full")
    assert [m["id"] for m in data] == ["scripted", "demo", "demo-2", "echo", "tiny", "t"]
    created = {m["created"] for m in data}
    assert len(created) == 1 and isinstance(created.pop(), int)
    assert all(m["object"] == "model" and m["owned_by"] == "mlx-gateway" for m in data)


def test_a_key_sees_the_names_of_the_models_it_may_use(keyed: TestClient) -> None:
    # A key listing a model by one alias may use the model under every name: all of them are listed.
    assert [m["id"] for m in listed(keyed, "key-alias")] == ["scripted", "demo", "demo-2"]
    assert [m["id"] for m in listed(keyed, "key-name")] == ["echo"]
    for key, names in (("key-alias", ["demo", "demo-2"]), ("key-name", [])):
        for name in names:  # every listed alias can be retrieved by the same key...
            assert keyed.get(f"/v1/models/{name}", headers={"authorization": f"Bearer {key}"}).status_code == 200
    # ...and what a key may not use is neither listed nor retrievable, alias or name
    for name in ("t", "tiny", "demo"):
        response = keyed.get(f"/v1/models/{name}", headers={"authorization": "Bearer key-name"})
        assert response.status_code == 404, name
    assert keyed.get("/v1/models").status_code == 401


def test_the_openai_sdk_discovers_an_alias_and_uses_it() -> None:
    config = make_config("""
models:
  - {name: scripted, aliases: [demo], adapter: scripted, script: {steps: [{text: hello}]}}
""")
    with serve(config) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=10)
        ids = [model.id for model in client.models.list()]
        assert ids == ["scripted", "demo"]
        answer = client.responses.create(model=ids[1], input="hi")
        assert answer.status == "completed" and answer.output_text == "hello"
