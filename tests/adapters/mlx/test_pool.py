"""The shared pool's decisions with stand-in members (no processes): caps, LRU eviction, waiting, reload."""

from __future__ import annotations

import asyncio

import pytest

from gateway.adapters.mlx import MlxAdapter
from gateway.adapters.mlx.pool import WorkerPool
from gateway.config import MlxSettings, parse_config
from gateway.errors import ModelUnavailable
from gateway.runtime import Runtime


class Member:
    def __init__(
        self, name: str, *, loaded: bool = True, busy: bool = False, memory: int = 0, used: float = 0.0
    ) -> None:
        self.name = name
        self.last_used = used
        self.loaded = loaded
        self.is_busy = busy
        self.memory = memory
        self.unloaded: list[str] = []
        self.paced: list[bool] = []

    @property
    def holds_slot(self) -> bool:
        return self.loaded

    @property
    def busy(self) -> bool:
        return self.is_busy

    @property
    def memory_bytes(self) -> int:
        return self.memory

    @property
    def idle_unload_seconds(self) -> float | None:
        return None

    async def unload(self, reason: str) -> None:
        self.loaded = False
        self.unloaded.append(reason)

    def pace(self, on: bool) -> None:
        self.paced.append(on)


async def test_the_least_recently_used_idle_member_makes_room() -> None:
    pool = WorkerPool(MlxSettings(max_loaded_models=2))
    old, busy_old, recent = Member("old", used=1), Member("busy", busy=True), Member("recent", used=5)
    newcomer = Member("new", loaded=False)
    for member in (old, busy_old, recent, newcomer):
        pool.join(member)
    await pool.admit(newcomer)
    assert old.unloaded and recent.unloaded and not busy_old.unloaded  # two idle ones go, oldest first
    assert pool.evictions == 2
    await pool.aclose()


async def test_a_full_pool_of_busy_members_waits_then_gives_up() -> None:
    pool = WorkerPool(MlxSettings(max_loaded_models=1, slot_wait_seconds=0.3))
    busy, newcomer = Member("busy", busy=True), Member("new", loaded=False)
    pool.join(busy)
    pool.join(newcomer)
    with pytest.raises(ModelUnavailable, match="all busy"):
        await pool.admit(newcomer)

    waiting = asyncio.create_task(pool.admit(newcomer))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    busy.is_busy = False  # its request finished
    pool.notify()
    await asyncio.wait_for(waiting, 2)
    assert busy.unloaded
    await pool.aclose()


async def test_the_memory_cap_counts_what_loaded_models_report() -> None:
    pool = WorkerPool(MlxSettings(max_memory_gb=1.0))
    big, small = Member("big", memory=700_000_000, used=2), Member("small", memory=200_000_000, used=1)
    newcomer = Member("new", loaded=False)
    for member in (big, small, newcomer):
        pool.join(member)
    await pool.admit(newcomer, expected_bytes=50_000_000)  # 950 MB in all: fits
    assert not big.unloaded and not small.unloaded
    await pool.admit(newcomer, expected_bytes=300_000_000)  # 1.2 GB: the least recently used goes
    assert small.unloaded and not big.unloaded
    await pool.aclose()


async def test_a_member_that_grows_past_the_cap_evicts_idle_others_but_never_busy_ones_or_itself() -> None:
    pool = WorkerPool(MlxSettings(max_memory_gb=1.0))
    grower, busy = Member("grower", memory=300_000_000, used=9), Member("busy", memory=300_000_000, busy=True)
    old, recent = Member("old", memory=200_000_000, used=1), Member("recent", memory=100_000_000, used=5)
    for member in (grower, busy, old, recent):
        pool.join(member)
    assert not pool.over_memory_cap()  # 900 MB
    grower.memory = 450_000_000  # its KV and prefix caches grew: 1.05 GB
    assert pool.over_memory_cap()
    await pool.enforce_memory_cap(grower)
    assert old.unloaded and not recent.unloaded and not busy.unloaded  # the least recently used idle one, enough
    grower.memory = 2_000_000_000
    await pool.enforce_memory_cap(grower)
    assert recent.unloaded and not busy.unloaded and not grower.unloaded  # nothing idle left: busy and itself stay
    assert pool.evictions == 2 and pool.over_memory_cap()
    await pool.aclose()


def test_models_without_a_request_waiting_for_its_first_token_are_paced_while_another_has_one() -> None:
    pool = WorkerPool(MlxSettings())
    a, b, c = Member("a"), Member("b"), Member("c")
    for member in (a, b, c):
        pool.join(member)
    pool.waiting_first_token(b, +1)
    assert (a.paced[-1], b.paced[-1], c.paced[-1]) == (True, False, True)
    pool.waiting_first_token(b, +1)
    pool.waiting_first_token(a, +1)  # a waits too: it is not slowed for b's sake
    assert (a.paced[-1], b.paced[-1], c.paced[-1]) == (False, False, True)
    pool.waiting_first_token(a, -1)
    pool.waiting_first_token(b, -1)
    assert (a.paced[-1], c.paced[-1]) == (True, True)  # b still has one
    pool.waiting_first_token(b, -1)
    assert (a.paced[-1], b.paced[-1], c.paced[-1]) == (False, False, False)
    assert pool.describe()["waiting_first_token"] == []

    pool.configure(MlxSettings(first_token_priority=False))
    pool.waiting_first_token(c, +1)
    assert (a.paced[-1], b.paced[-1]) == (False, False)  # switched off in the manifest
    pool.leave(c)
    assert pool.describe()["waiting_first_token"] == []


async def test_one_request_paces_the_others_for_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.adapters.mlx import pool as pool_module

    monkeypatch.setattr(pool_module, "FIRST_TOKEN_PRIORITY_SECONDS", 0.05)
    pool = WorkerPool(MlxSettings())
    waiting, other = Member("waiting"), Member("other")
    pool.join(waiting)
    pool.join(other)
    wait = pool_module.FirstTokenWait(pool, waiting)
    assert other.paced[-1] is True
    await asyncio.sleep(0.2)  # queued behind a full batch, say: the others are not held back any longer
    assert other.paced[-1] is False and pool.describe()["waiting_first_token"] == []
    wait.over()  # its first token, late: counted once only
    again = pool_module.FirstTokenWait(pool, waiting)
    assert other.paced[-1] is True
    again.over()
    assert other.paced[-1] is False
    await pool.aclose()


async def test_the_runtime_shares_one_pool_and_a_reload_updates_its_limits() -> None:
    text = "models: [{name: m, adapter: mlx, source: dummy}]\nmlx: {max_loaded_models: 3}\n"
    runtime = Runtime(parse_config(text))
    adapter = runtime.snapshot.adapters["m"]
    assert isinstance(adapter, MlxAdapter) and adapter.pool is runtime.pool
    assert adapter.describe()["state"] == "unloaded"  # nothing starts until a request (no preload)
    await runtime.apply(parse_config(text.replace("3", "1")))
    assert runtime.pool.settings.max_loaded_models == 1
    assert runtime.snapshot.adapters["m"] is adapter  # unchanged model: same adapter, weights kept
    await runtime.aclose()


@pytest.mark.parametrize(("first_free", "pauses"), [(True, [0, 1, 2, 4, 8, 16, 30, 30]), (False, [1, 2, 4, 8, 16, 30])])
def test_backoff_grows_while_failures_repeat(first_free: bool, pauses: list[float]) -> None:
    from gateway.adapters.mlx.adapter import Backoff

    backoff = Backoff()
    seen = []
    for _ in pauses:
        backoff.failed(first_free=first_free)
        seen.append(round(backoff.remaining()))
    assert seen == pauses
    backoff.reset()
    assert backoff.remaining() == 0
