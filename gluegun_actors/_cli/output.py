"""What a command prints: one timestamped line per event, or one JSON object per event.

Events (frames, responses, body chunks) go to stdout; in text mode the connection's
status ("connected", "connection lost", "reconnected") goes to stderr, so that stdout
carries only what the peer sent; with `--json` every event is a JSON object on stdout,
`{"type": ..., "time": ..., ...}`, bytes in base64. The streams are looked up at each
write, because the interactive prompt swaps them for ones that print above it.
"""

from __future__ import annotations

import base64
import json
import sys
from datetime import datetime
from typing import Any

from gluegun_actors._cli.progress import Progress

__all__ = ["Printer", "b64", "shown_bytes"]

_PREVIEW = 64
"""Bytes of a binary payload shown in text mode (in hex)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def shown_bytes(data: bytes) -> str:
    """Bytes for a human: the text if they are UTF-8, else a hex preview and the length."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        more = "..." if len(data) > _PREVIEW else ""
        return f"[{len(data)} bytes] {data[:_PREVIEW].hex()}{more}"


class Printer:
    """Prints a command's events in the chosen format, around the progress line."""

    def __init__(self, *, as_json: bool, progress: Progress) -> None:
        self.as_json = as_json
        self.progress = progress

    def event(self, kind: str, shown: str, /, **fields: Any) -> None:
        """A peer's event: `time shown` on stdout, or its JSON object `{"type": kind, ...}`."""
        now = datetime.now().astimezone()
        if self.as_json:
            stamp = now.isoformat(timespec="milliseconds")
            line = json.dumps({"type": kind, "time": stamp, **fields})
        else:
            line = f"{now:%H:%M:%S}.{now.microsecond // 1000:03d} {shown}"
        self._print(line, to_stderr=False)

    def status(self, kind: str, shown: str, /, **fields: Any) -> None:
        """The connection's status: `gluegun: shown` on stderr, or a JSON event on stdout."""
        if self.as_json:
            self.event(kind, shown, **fields)
        else:
            self._print(f"gluegun: {shown}", to_stderr=True)

    def text(self, text: str) -> None:
        """A block of text in text mode (an HTTP body piece); nothing with `--json`."""
        if not self.as_json:
            self._print(text if text.endswith("\n") else text + "\n", to_stderr=False, end="")

    def _print(self, line: str, *, to_stderr: bool, end: str = "\n") -> None:
        with self.progress.interrupted():
            print(line, end=end, file=sys.stderr if to_stderr else sys.stdout, flush=True)
