"""Stateful Responses: chains, items and background event logs in Redis (or fakeredis)."""

from gateway.store.base import (
    TERMINAL,
    ChainTurn,
    EventLog,
    Finished,
    LoggedEvent,
    ResponseStore,
    Signal,
    StoredResponse,
    TurnRecord,
)
from gateway.store.keys import Keys, new_tag, tag_of, tagged_id
from gateway.store.redis_store import RedisStore, response_not_found

__all__ = [
    "TERMINAL",
    "ChainTurn",
    "EventLog",
    "Finished",
    "Keys",
    "LoggedEvent",
    "RedisStore",
    "ResponseStore",
    "Signal",
    "StoredResponse",
    "TurnRecord",
    "new_tag",
    "response_not_found",
    "tag_of",
    "tagged_id",
]
