"""/v1/chat/completions on the Responses pipeline: protocol.py (the chat wire types), translate.py (chat ⇄
Responses), stream.py (events → chat chunks). The route itself is `api/chat.py`."""
