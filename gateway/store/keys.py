"""Ids that carry their chain's hash tag, and the Redis key names built from them.

Every id this gateway issues for a stored conversation is `<kind>_<tag><random>`: a
16-hex tag shared by a whole tree of responses (a follow-up inherits its parent's tag)
and 32 hex of randomness. The tag is the Redis Cluster hash tag, so everything one
script touches lives in one slot, and any key is derived from an id alone (no lookup).
"""

from __future__ import annotations

import os
import re

__all__ = ["TAG_HEX", "Keys", "new_tag", "tag_of", "tagged_id"]

TAG_HEX = 16
_ID = re.compile(r"^[a-z]+_([0-9a-f]{16})[0-9a-f]{32}$")


def new_tag() -> str:
    """A fresh chain tag (64 random bits: only slot spreading depends on it, not correctness)."""
    return os.urandom(TAG_HEX // 2).hex()


def tagged_id(prefix: str, tag: str) -> str:
    """`resp_<tag><32 hex>`: as long as `ids.new_id` makes them, so clients see one id shape."""
    return f"{prefix}_{tag}{os.urandom(16).hex()}"


def tag_of(identifier: str) -> str | None:
    """The chain tag inside an id, or None for ids this gateway did not issue."""
    match = _ID.match(identifier)
    return match.group(1) if match else None


class Keys:
    """Key names under one prefix: `<prefix>:{<tag>}:<kind>:<id>`."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def space(self, tag: str) -> str:
        """The part every key of one chain shares; Lua scripts append `:r:<id>` etc. to it."""
        return f"{self.prefix}:{{{tag}}}"

    def record(self, tag: str, response_id: str) -> str:
        return f"{self.space(tag)}:r:{response_id}"

    def item(self, tag: str, item_id: str) -> str:
        return f"{self.space(tag)}:i:{item_id}"

    def events(self, tag: str, response_id: str) -> str:
        return f"{self.space(tag)}:e:{response_id}"

    def owner(self, tag: str, response_id: str) -> str:
        """The lease of the process running a response; gone once it has written the end."""
        return f"{self.space(tag)}:o:{response_id}"

    def pattern(self) -> str:
        """Every key under this prefix (for tests and tooling, never for request handling)."""
        return f"{self.prefix}:{{*"
