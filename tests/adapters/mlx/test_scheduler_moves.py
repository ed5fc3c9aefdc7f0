"""A sequence moved between the solo decoder and the batch, in every order, says exactly what it says alone.

The scheduler is driven step by step in this process, so each move happens at a chosen point; greedy decoding
makes the expected text exact. The last case is the one that once repeated a token: back from the batch, the
sequence moves into the batch again before its solo decoder has taken a step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.base import GenerationRequest, TemplateMessage, TextDelta
from gateway.adapters.mlx.wire import Deltas, Done, WireMessage
from gateway.config import DummyArch, parse_config

pytestmark = pytest.mark.mlx

MANIFEST = ("models: [{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 4,"
            " testing: {distinct: true}}]\n")  # distinct tokens: a repeated one shows in the text
LIMIT = 400  # scheduler steps: every scenario ends far sooner


def request(request_id: str, text: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, messages=[TemplateMessage(role="user", content=text)],
                             temperature=0, max_tokens=max_tokens)


class Driven:
    def __init__(self, mlx_cache: Path) -> None:
        from gateway.adapters.mlx.dummy import dummy_dir
        from gateway.adapters.mlx.model import LoadedModel
        from gateway.adapters.mlx.scheduler import Scheduler

        spec = parse_config(MANIFEST).models[0]
        self.sent: list[WireMessage] = []
        self.scheduler = Scheduler(LoadedModel(spec, dummy_dir(DummyArch(), mlx_cache)), spec,  # type: ignore[arg-type]
                                   self.sent.append)

    def add(self, req: GenerationRequest) -> Any:
        from gateway.adapters.mlx.slot import Job

        return self.scheduler.add(Job(req))

    def solo_id(self) -> str | None:
        solo = self.scheduler._solo  # white box: where the sequence is decides the scenario
        return None if solo is None else solo[0].request_id

    def step_until(self, done: Any) -> None:
        for _ in range(LIMIT):
            if done():
                return
            self.scheduler.step()
        raise AssertionError("the scenario did not reach its point")

    def finished(self, request_id: str) -> bool:
        return any(isinstance(m, Done) and m.request_id == request_id for m in self.sent)

    def text(self, request_id: str) -> str:
        return "".join(d.text for m in self.sent if isinstance(m, Deltas) and m.request_id == request_id
                       for d in m.deltas if isinstance(d, TextDelta))


A = request("a", "Tell me about the stream of tokens", 24)


def alone(mlx_cache: Path) -> str:
    run = Driven(mlx_cache)
    run.add(A)
    run.step_until(lambda: run.finished("a"))
    return run.text("a")


def test_solo_to_batch_and_back_keeps_every_token(mlx_cache: Path) -> None:
    expected = alone(mlx_cache)
    run = Driven(mlx_cache)
    slot = run.add(A)
    run.step_until(lambda: slot.sequence.generated >= 3)  # decoding alone
    run.add(request("b", "short", 2))  # A joins the batch
    run.step_until(lambda: run.finished("b") and run.solo_id() == "a")  # B done: A back to solo
    run.step_until(lambda: run.finished("a"))
    assert run.text("a") == expected


def test_back_from_the_batch_and_straight_into_it_again(mlx_cache: Path) -> None:
    expected = alone(mlx_cache)
    run = Driven(mlx_cache)
    slot = run.add(A)
    run.step_until(lambda: slot.sequence.generated >= 3)
    run.add(request("b", "short", 2))
    run.step_until(lambda: run.finished("b") and run.solo_id() == "a")
    generated = slot.sequence.generated
    run.add(request("c", "another one", 3))  # before A's solo decoder takes a step
    run.scheduler.step()
    assert run.solo_id() is None and slot.sequence.generated == generated  # moved; the step only fed it
    run.step_until(lambda: run.finished("a") and run.finished("c"))
    assert run.text("a") == expected, (run.text("a"), expected)
