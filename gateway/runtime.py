"""What a running gateway holds: the manifest and one adapter per model."""

from __future__ import annotations

import time
from typing import Any

from gateway.adapters.base import Adapter
from gateway.config import GatewayConfig

__all__ = ["Runtime"]


class Runtime:
    def __init__(self, config: GatewayConfig, adapters: dict[str, Adapter]) -> None:
        self.config = config
        self.adapters = adapters
        self.started_at = int(time.time())

    async def start(self) -> None:
        for adapter in self.adapters.values():
            await adapter.start()

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            await adapter.aclose()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "models": {name: adapter.describe() for name, adapter in self.adapters.items()},
        }
