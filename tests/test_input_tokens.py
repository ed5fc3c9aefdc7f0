"""`POST /v1/responses/input_tokens` on scripted models (an estimate, documented as such): the same path as a
create request (chain, conversation, policies), nothing generated or stored."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI


@pytest.fixture
def sdk(live: str) -> OpenAI:
    return OpenAI(base_url=f"{live}/v1", api_key="dummy", max_retries=0, timeout=20)


def test_the_estimate_equals_the_usage_and_grows_with_history(sdk: OpenAI) -> None:
    text = "Please tell me a rather long story about a lighthouse keeper and a cat."
    counted = sdk.responses.input_tokens.count(model="echo", input=text)
    assert counted.object == "response.input_tokens"
    created = sdk.responses.create(model="echo", input=text)
    assert counted.input_tokens == created.usage.input_tokens  # type: ignore[union-attr]
    chained = sdk.responses.input_tokens.count(model="echo", input="more", previous_response_id=created.id)
    conversation = sdk.conversations.create(items=[{"role": "user", "content": text}])
    in_conversation = sdk.responses.input_tokens.count(model="echo", input="more", conversation=conversation.id)
    alone = sdk.responses.input_tokens.count(model="echo", input="more")
    assert chained.input_tokens > alone.input_tokens and in_conversation.input_tokens > alone.input_tokens
    assert len(sdk.conversations.items.list(conversation.id).data) == 1  # counting appended nothing


def test_errors_are_those_of_create(sdk: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.responses.input_tokens.count(model="nope", input="x")
    with pytest.raises(openai.BadRequestError) as missing:
        sdk.responses.input_tokens.count(model="echo", input="x", previous_response_id="resp_unknown")
    assert missing.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
