"""`adapter: upstream` in the manifest: what it accepts, what `gateway check` reports, what reload keeps."""

from __future__ import annotations

import pytest

from gateway.adapters import build_adapter
from gateway.config import ConfigError, UpstreamModel, parse_config
from gateway.runtime import Runtime


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_one_url_or_a_list_of_replicas_and_the_defaults() -> None:
    config = parse_config("""
models:
  - {name: a, adapter: upstream, base_url: "http://127.0.0.1:9/v1/"}
  - name: b
    adapter: upstream
    api: responses
    model: qwen3-coder
    base_url: [http://10.0.0.1:8080/v1, https://host-b/v1]
""")
    a, b = config.models
    assert isinstance(a, UpstreamModel) and isinstance(b, UpstreamModel)
    assert a.base_urls == ["http://127.0.0.1:9/v1"] and a.api == "chat" and a.upstream_model == "a"
    assert (a.retries, a.read_timeout_seconds, a.structured_output) == (2, 300.0, False)
    assert b.base_urls == ["http://10.0.0.1:8080/v1", "https://host-b/v1"] and b.upstream_model == "qwen3-coder"


def test_bad_upstream_settings_are_reported_with_their_paths() -> None:
    found = _problems("""
models:
  - {name: a, adapter: upstream, base_url: "ftp://x/v1"}
  - {name: b, adapter: upstream, base_url: [http://h:1/v1, "http://h:1/v1/"]}
  - {name: c, adapter: upstream, base_url: "http://user:pw@h/v1"}
  - {name: d, adapter: upstream, base_url: "http://h:port/v1"}
  - {name: e, adapter: upstream, base_url: "http://h/v1", api: grpc, retries: 99, api_key_env: "bad-name"}
  - {name: f, adapter: upstream}
""")
    assert "models[0].base_url: 'ftp://x/v1' is not an http:// or https:// URL with a host" in found
    assert "models[1].base_url: the same replica is listed twice" in found
    assert any(p.startswith("models[2].base_url: 'http://user:pw@h/v1' must not carry") for p in found)
    assert any(p.startswith("models[3].base_url: 'http://h:port/v1' is not a URL") for p in found)
    assert "models[4].api: Invalid enum value 'grpc' (allowed: chat, responses)" in found
    assert any(p.startswith("models[4].retries:") for p in found)
    assert any(p.startswith("models[4].api_key_env:") for p in found)
    assert "models[5].base_url: required" in found


def test_chat_template_arguments_on_a_responses_upstream_are_refused_not_dropped() -> None:
    found = _problems("""
models:
  - {name: a, adapter: upstream, base_url: "http://h/v1", api: responses, chat_template_kwargs: {enable_thinking: false}}
  - {name: b, adapter: upstream, base_url: "http://h/v1", api: chat, chat_template_kwargs: {enable_thinking: false}}
""")
    assert found == ["models[0].chat_template_kwargs: a Responses upstream (api: responses) takes no chat template "
                     "arguments; set them on the model host's own model"]


async def test_an_unchanged_upstream_keeps_its_adapter_and_pools_across_a_reload() -> None:
    text = "models:\n  - {name: a, adapter: upstream, base_url: 'http://127.0.0.1:9/v1'}\n"
    runtime = Runtime(parse_config(text))
    await runtime.start()
    try:
        before = runtime.snapshot.adapters["a"]
        result = await runtime.apply(parse_config(text + "  - {name: s, adapter: scripted, script: {mode: echo}}\n"))
        assert result.kept == ["a"] and runtime.snapshot.adapters["a"] is before
        changed = await runtime.apply(parse_config(text.replace("9/v1", "10/v1")))
        assert changed.started == ["a"] and runtime.snapshot.adapters["a"] is not before
    finally:
        await runtime.aclose()


def test_the_api_key_comes_from_the_environment_and_a_missing_one_is_reported() -> None:
    spec = parse_config("models: [{name: a, adapter: upstream, base_url: 'http://h/v1', api_key_env: UP_KEY}]")
    model = spec.models[0]
    assert isinstance(model, UpstreamModel)
    from gateway.adapters.upstream import UpstreamAdapter

    keyed = UpstreamAdapter(model, environ={"UP_KEY": "sk-1"})
    assert keyed._headers["Authorization"] == "Bearer sk-1" and "problem" not in keyed.describe()
    missing = build_adapter(model)
    assert missing.describe()["problem"] == "UP_KEY is not set"
