"""A WebSocket client of the play server for the tests (needs the [play] extra)."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import ClientConnection, connect


class Client:
    """A WebSocket client that sends requests and collects each request's replies."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.ws: ClientConnection = connect(url.replace("http://", "ws://") + "ws", **kwargs)
        self.hello = json.loads(self.ws.recv(timeout=60))
        self._id = 0

    def request(self, message: dict[str, Any] | str | bytes) -> list[dict[str, Any]]:
        """Send one message; returns its replies (any ``recorded`` first, its own reply last)."""
        if isinstance(message, dict):
            self._id += 1
            message = json.dumps({**message, "id": self._id})
        self.ws.send(message)
        replies = []
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            replies.append(reply)
            if reply["type"] != "recorded":
                return replies

    def last(self, message: dict[str, Any] | str | bytes) -> dict[str, Any]:
        """The request's own reply (the last one)."""
        return self.request(message)[-1]

    def close(self) -> None:
        self.ws.close()
