"""/v1/chat/completions on the Responses pipeline: the request is translated into a Responses
request, runs through the same service, policies and adapters, and the events are folded back
into chat completion chunks."""

from gateway.chat.routes import CHAT_ROUTES

__all__ = ["CHAT_ROUTES"]
