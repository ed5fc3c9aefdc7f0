"""Store writes that must finish even when the request that started them is cancelled."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import anyio

from gateway.errors import StoreUnavailable

__all__ = ["shielded"]

T = TypeVar("T")


async def shielded(awaitable: Awaitable[T], timeout: float = 30.0) -> T:
    """Await to the end despite cancellation (a client gone, a cancel), but never longer than `timeout`.

    A backstop only: the store ends a write sooner by itself (a command times out after the store timeout,
    and a wait for a connection once none has been freed for as long), but a long queue that still moves
    (a burst) is worth waiting for, rather than failing a response that was generated in full."""
    with anyio.CancelScope(shield=True):
        try:
            with anyio.fail_after(timeout):
                return await awaitable
        except TimeoutError:
            raise StoreUnavailable("The response store did not answer in time.") from None
    raise AssertionError("unreachable: a shielded scope is never cancelled from outside")
