"""A redis.asyncio client from `store.url`, with timeouts short enough to fail fast.

`memory://` is fakeredis in this process (Lua through lupa), so the embedded default
runs exactly the code a Redis server runs. `redis+cluster://` / `rediss+cluster://`
build a cluster client from the same URL without the `+cluster`; `redis+sentinel://` follows
the primary a set of sentinels names. Every pool holds `store.max_connections`, as many as the
store's gate (gate.py) lets round trips run at once, so no pool ever runs out; the plain and
in-memory ones block rather than raise even if something went around the gate.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.exceptions as rx
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from gateway.config import StoreConfig

__all__ = ["UNAVAILABLE", "connect", "describe_url"]

# Errors meaning "the store cannot be reached right now" (→ 503), as opposed to a bug.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.BusyLoadingError,
    rx.ClusterDownError,
    rx.ClusterError,
    rx.RedisClusterException,
    rx.TryAgainError,
    rx.MasterDownError,
    rx.ReadOnlyError,
    OSError,
    TimeoutError,
)


def connect(config: StoreConfig) -> tuple[Any, str]:
    """The client and its kind (`memory`, `redis` or `cluster`). Nothing connects yet."""
    scheme, _, rest = config.url.partition("://")
    timeouts = {
        "socket_timeout": config.timeout_seconds,
        "socket_connect_timeout": config.connect_timeout_seconds,
    }
    size = config.max_connections
    if scheme == "memory":
        import fakeredis  # only the embedded store needs it

        wait = config.timeout_seconds

        class MemoryPool(BlockingConnectionPool):
            """Waits up to the store timeout for a free connection (fakeredis builds it with keyword arguments)."""

            def __init__(self, **kwargs: Any) -> None:
                kwargs.setdefault("timeout", wait)
                super().__init__(**kwargs)

        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)), max_connections=size,
                                          connection_pool_class=MemoryPool)
        return client, "memory"
    if scheme.endswith("+sentinel"):
        return _sentinel(scheme.removesuffix("+sentinel"), rest, {**timeouts, "max_connections": size}), "sentinel"
    if scheme.endswith("+cluster"):
        from redis.asyncio.cluster import RedisCluster

        url = f"{scheme.removesuffix('+cluster')}://{rest}"
        # A couple of quick retries ride out slot moves; a dead cluster still fails within a second.
        retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)
        # max_connections is per node: the gate keeps the total below it, so no node can run out.
        return RedisCluster.from_url(url, retry=retry, max_connections=size, **timeouts), "cluster"
    # One immediate retry replaces a pooled connection that died with a restarted server.
    pool = BlockingConnectionPool.from_url(config.url, max_connections=size, timeout=config.timeout_seconds,
                                           retry=Retry(NoBackoff(), 1), **timeouts)
    return Redis.from_pool(pool), "redis"


def _sentinel(scheme: str, rest: str, options: dict[str, Any]) -> Any:
    """`redis+sentinel://[:password@]host:26379,host2:26379/<service>[/<db>]`: the current primary of
    `service`, looked up through the sentinels on every (re)connection, so a failover is followed."""
    from redis.asyncio.sentinel import Sentinel

    parts = urlsplit(f"{scheme}://{rest}")
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for entry in hosts.split(","):
        host, _, port = entry.rpartition(":")
        sentinels.append((host.strip("[]") or entry, int(port) if port.isdigit() else 26379))
    path = [segment for segment in parts.path.split("/") if segment]
    if not path:
        raise ValueError("a sentinel URL names the monitored service: redis+sentinel://host:26379/<service>[/<db>]")
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    timeouts = {key: value for key, value in options.items() if key.startswith("socket_")}
    sentinel = Sentinel(sentinels, ssl=scheme == "rediss", **timeouts)
    # SentinelConnectionPool has no blocking twin: the gate alone keeps it within max_connections.
    return sentinel.master_for(service, db=db, password=parts.password, ssl=scheme == "rediss",
                               retry=Retry(NoBackoff(), 1), **options)


def describe_url(url: str) -> str:
    """The URL without its password, for /health and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
