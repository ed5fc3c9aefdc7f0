"""What `memory://` holds, in bytes, by chain: which ones to evict to stay under `store.memory_max_mb`.

fakeredis keeps everything in this process and has no `maxmemory` eviction, so the store counts what it
writes (the bytes of every value plus a fixed allowance per key) and evicts the least recently used
chains — a chain tag with every turn of it at once — so no chain is left missing its middle.
Keys expire with the TTL; a chain untouched for a whole TTL is surely gone (each write or walk
renews a key to at most a TTL from then) and stops counting.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping

import structlog

__all__ = ["KEY_OVERHEAD", "MemoryBudget", "size_of"]

log = structlog.get_logger()

# What fakeredis spends on a key beyond its value (dict entries, expiry, the key itself), roughly.
KEY_OVERHEAD = 256
# Running chains an eviction pass steps over before it stops: a write never pays for a long scan.
MAX_SKIPPED = 32


def size_of(values: Iterable[object]) -> int:
    """The bytes of script arguments as stored (numbers count as short strings)."""
    return sum(len(value) if isinstance(value, (bytes, str)) else 8 for value in values)


class _Chain:
    __slots__ = ("bytes", "expires", "replaced", "responses")

    def __init__(self) -> None:
        self.responses: dict[str, int] = {}  # response id -> bytes held for it
        self.replaced: dict[tuple[str, str], int] = {}  # (response id, field) -> size of a value each write replaces
        self.bytes = 0
        self.expires = 0.0


class MemoryBudget:
    def __init__(self, max_bytes: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.evicted_responses = 0
        self.evicted_chains = 0
        self.evicted_bytes = 0
        self.evicting = False  # one eviction pass at a time
        self._ttl = ttl_seconds
        self._clock = clock
        self._chains: OrderedDict[str, _Chain] = OrderedDict()  # least recently used first

    @property
    def over(self) -> bool:
        return self.used_bytes > self.max_bytes

    @property
    def chains(self) -> int:
        return len(self._chains)

    def add(self, tag: str, response_id: str, size: int, replacing: Mapping[str, int] | None = None) -> bool:
        """`size` more bytes written for `response_id`, and `replacing` values (field -> size) that took the place
        of earlier ones. True when chains expired meanwhile (their keys may still need sweeping)."""
        chain = self._chains.get(tag)
        if chain is None:
            chain = self._chains[tag] = _Chain()
        for field, new in (replacing or {}).items():
            size += new - chain.replaced.get((response_id, field), 0)
            chain.replaced[response_id, field] = new
        chain.responses[response_id] = chain.responses.get(response_id, 0) + size
        chain.bytes += size
        self.used_bytes += size
        self.touch(tag)
        return self._forget_expired()

    def touch(self, tag: str) -> None:
        """The chain was used: it is evicted last."""
        chain = self._chains.get(tag)
        if chain is not None:
            chain.expires = self._clock() + self._ttl
            self._chains.move_to_end(tag)

    def remove(self, tag: str, response_ids: list[str]) -> int:
        """These responses are gone (deleted or evicted); the bytes they no longer hold."""
        chain = self._chains.get(tag)
        if chain is None:
            return 0
        gone = set(response_ids)
        freed = sum(chain.responses.pop(response_id, 0) for response_id in gone)
        chain.replaced = {key: size for key, size in chain.replaced.items() if key[0] not in gone}
        chain.bytes -= freed
        self.used_bytes -= freed
        if not chain.responses:
            del self._chains[tag]
        return freed

    def oldest(self) -> tuple[str, list[str]] | None:
        """The least recently used chain and its responses."""
        for tag, chain in self._chains.items():
            return tag, list(chain.responses)
        return None

    async def shrink(self, evict: Callable[[str, list[str]], Awaitable[bool]]) -> None:
        """Over the bound: evict least recently used chains until under it. `evict(tag, response_ids)`
        deletes one whole, or answers False when one of its responses is still running (never evicted: it
        goes to the back of the line instead)."""
        if self.evicting or not self.over:
            return
        self.evicting = True  # one pass at a time; writes meanwhile are counted and left to it
        chains = responses = freed = skipped = 0
        try:
            for _ in range(len(self._chains)):  # each chain at most once per pass
                oldest = self.oldest()
                if oldest is None or not self.over or skipped >= MAX_SKIPPED:
                    break
                tag, response_ids = oldest
                if not await evict(tag, response_ids):
                    skipped += 1
                    self.touch(tag)
                    continue
                gone = self.remove(tag, response_ids)
                chains, responses, freed = chains + 1, responses + len(response_ids), freed + gone
        finally:
            self.evicting = False
            self.evicted_chains += chains
            self.evicted_responses += responses
            self.evicted_bytes += freed
            if chains:
                log.warning("store_evicted", chains=chains, responses=responses, bytes=freed,
                            skipped_running=skipped, used_bytes=self.used_bytes, max_bytes=self.max_bytes)

    def describe(self) -> dict[str, int]:
        return {"used_bytes": self.used_bytes, "max_bytes": self.max_bytes, "chains": self.chains,
                "evicted_chains": self.evicted_chains, "evicted_responses": self.evicted_responses,
                "evicted_bytes": self.evicted_bytes}

    def _forget_expired(self) -> bool:
        """Least recently used is soonest expiring too (one TTL for all), so only the front needs checking."""
        now, forgot = self._clock(), False
        while self._chains:
            tag, chain = next(iter(self._chains.items()))
            if chain.expires > now:
                break
            self.used_bytes -= chain.bytes
            del self._chains[tag]
            forgot = True
        return forgot
