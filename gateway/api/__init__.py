"""Every HTTP route of the gateway; only `app.py` imports this package.

Each handler declares its `Access` (see `access.py`); the handlers stay thin: decode, call the
pipeline, encode.
"""

from gateway.api.admin import ADMIN_ROUTES
from gateway.api.chat import CHAT_ROUTES
from gateway.api.conversations import CONVERSATION_ROUTES
from gateway.api.models import MODEL_ROUTES
from gateway.api.ops import OPS_ROUTES
from gateway.api.responses import RESPONSES_ROUTES
from gateway.api.stored import STORED_ROUTES

__all__ = ["ROUTE_HANDLERS"]

ROUTE_HANDLERS = [
    *RESPONSES_ROUTES, *STORED_ROUTES, *CONVERSATION_ROUTES, *CHAT_ROUTES, *MODEL_ROUTES, *OPS_ROUTES, *ADMIN_ROUTES
]
