"""A Pykka actor that records what it is told: an owner or a `reply_to` for tests."""

from __future__ import annotations

from typing import Any

import pykka


class RecordingActor(pykka.ThreadingActor):
    """Keeps every message told to it; `ask("messages")` returns them so far."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "messages":
            return list(self.messages)
        self.messages.append(message)
        return None
