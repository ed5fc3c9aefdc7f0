"""The openai SDK's structured-output helpers against the random-weight dummy model: `responses.parse` (plain and
streamed) and `chat.completions.parse` give a valid instance of the Pydantic model every time. The SDK writes the
schema (strict, from the Pydantic model) and parses the answer itself: this is what a client relying on it sees."""

from __future__ import annotations

from typing import Literal

import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from tests.adapters.mlx.test_constrain import base  # noqa: F401  (the served dummy model)

pytestmark = pytest.mark.mlx

RUNS = 10


class Point(BaseModel):
    x: int = Field(ge=0, le=99)
    y: bool


class Ticket(BaseModel):
    title: str = Field(max_length=10)
    kind: Literal["bug", "task"]
    where: Point
    tags: list[Literal["ui", "db", "api"]] = Field(max_length=3)
    owner: str | None = Field(max_length=6)


@pytest.fixture
def sdk(base: str) -> OpenAI:  # noqa: F811
    return OpenAI(base_url=f"{base}/v1", api_key="dummy", max_retries=0, timeout=120)


def test_responses_parse_returns_the_model(sdk: OpenAI) -> None:
    for i in range(RUNS):
        response = sdk.responses.parse(model="tiny", input=f"file ticket {i}", text_format=Ticket,
                                       max_output_tokens=200, reasoning={"effort": "none"})
        assert response.status == "completed", response
        assert isinstance(response.output_parsed, Ticket)


def test_streamed_responses_parse_returns_the_model(sdk: OpenAI) -> None:
    for i in range(RUNS):
        with sdk.responses.stream(model="tiny", input=f"stream ticket {i}", text_format=Ticket,
                                  max_output_tokens=200, reasoning={"effort": "none"}) as stream:
            final = stream.get_final_response()
        assert final.status == "completed", final
        assert isinstance(final.output_parsed, Ticket)


def test_chat_completions_parse_returns_the_model(sdk: OpenAI) -> None:
    for i in range(RUNS):
        completion = sdk.chat.completions.parse(model="tiny", messages=[{"role": "user", "content": f"ticket {i}"}],
                                                response_format=Ticket, max_tokens=200)
        assert completion.choices[0].finish_reason == "stop"
        assert isinstance(completion.choices[0].message.parsed, Ticket)
