"""An ASGI factory for servers that import the app by path (granian, hypercorn, gunicorn workers):
`granian --interface asgi --factory gateway.asgi:app` reads the manifest named by $MLXGW_CONFIG."""

from __future__ import annotations

import os

from gateway.app import GatewayApp, create_app
from gateway.config import load_config

__all__ = ["app"]


def app() -> GatewayApp:
    return create_app(load_config(os.environ.get("MLXGW_CONFIG", "gateway.yaml")))
