"""A request sent to its worker before anyone reads its stream gives its place back exactly once: closed before its
first delta, dropped unread, or, once read, through its own generator's cleanup and never twice."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator

from gateway.adapters.base import Delta, TextDelta
from gateway.adapters.mlx.sent import SentStream


class Request:
    def __init__(self) -> None:
        self.given_back = 0
        self.cleaned = 0

    def give_back(self) -> None:
        self.given_back += 1

    async def deltas(self) -> AsyncGenerator[Delta, None]:
        try:
            yield TextDelta(text="a")
            yield TextDelta(text="b")
        finally:
            self.cleaned += 1


def test_closing_before_the_first_delta_gives_the_request_back_once() -> None:
    async def main() -> Request:
        request = Request()
        stream = SentStream(request.deltas(), request.give_back)
        await stream.aclose()
        await stream.aclose()
        return request

    request = asyncio.run(main())
    assert (request.given_back, request.cleaned) == (1, 0)


def test_a_stream_dropped_unread_gives_the_request_back_on_the_loop() -> None:
    async def main() -> Request:
        request = Request()
        stream = SentStream(request.deltas(), request.give_back)
        del stream
        gc.collect()
        assert request.given_back == 0  # scheduled on the loop, not run from the finalizer
        await asyncio.sleep(0)
        return request

    request = asyncio.run(main())
    assert request.given_back == 1


def test_a_read_stream_is_cleaned_up_by_its_generator_alone() -> None:
    async def main() -> tuple[Request, list[str]]:
        request = Request()
        stream = SentStream(request.deltas(), request.give_back)
        first = await stream.__anext__()
        await stream.aclose()
        del stream
        gc.collect()
        await asyncio.sleep(0)
        return request, [first.text]  # type: ignore[attr-defined]

    request, read = asyncio.run(main())
    assert read == ["a"]
    assert (request.given_back, request.cleaned) == (0, 1)


def test_a_fully_read_stream_gives_nothing_back() -> None:
    async def main() -> tuple[Request, list[str]]:
        request = Request()
        texts = [delta.text async for delta in SentStream(request.deltas(), request.give_back)]  # type: ignore[attr-defined]
        gc.collect()
        await asyncio.sleep(0)
        return request, texts

    request, texts = asyncio.run(main())
    assert texts == ["a", "b"] and (request.given_back, request.cleaned) == (0, 1)
