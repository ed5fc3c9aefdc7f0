"""Identifiers and clocks."""

from __future__ import annotations

import os
import time

__all__ = ["new_id", "now"]


def new_id(prefix: str) -> str:
    """A fresh id like `resp_5f0c…` (24 random bytes, hex)."""
    return f"{prefix}_{os.urandom(24).hex()}"


def now() -> int:
    """Unix seconds, as the API reports `created_at`."""
    return int(time.time())
