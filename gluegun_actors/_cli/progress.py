"""The progress line: one line on a terminal, redrawn in place while connecting or retrying.

Only a terminal gets it: a pipe or a file is read for the result, not for an animation.
The line is cut to the terminal's width, so that `\\r` always returns to its start, and
erased with spaces, which every terminal understands (no escape sequences). The
connection's event handler (`AttemptWatch`) drives it from the connection's thread, and
the command prints its own lines through `interrupted()`; one lock keeps them apart.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from gluegun_actors._cli.exits import cause

__all__ = ["AttemptWatch", "Progress"]


class Progress:
    """A line of status on `stream` (stderr), shown only when it is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._lock = threading.RLock()
        self._text = ""
        self._width = 0
        """How many columns the line takes on screen now (0: nothing is shown)."""
        try:
            self.enabled = self._stream.isatty()
        except (AttributeError, ValueError):  # a closed or unusual stream
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.clear()

    def show(self, text: str) -> None:
        """Replace the line with `text`."""
        with self._lock:
            self._text = text
            self._draw()

    def clear(self) -> None:
        """Erase the line; nothing is shown until the next `show`."""
        with self._lock:
            self._text = ""
            self._erase()

    def disable(self) -> None:
        """Erase the line and show nothing from now on (another UI owns the terminal)."""
        with self._lock:
            self.clear()
            self.enabled = False

    @contextmanager
    def interrupted(self) -> Iterator[None]:
        """Erase the line while the caller prints a line of its own, then draw it again."""
        with self._lock:
            self._erase()
            try:
                yield
            finally:
                if self._text:
                    self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        columns = shutil.get_terminal_size().columns
        text = self._text[: max(columns - 1, 1)]
        pad = " " * max(self._width - len(text), 0)
        self._write(f"\r{text}{pad}")
        self._width = len(text)

    def _erase(self) -> None:
        if not self.enabled or not self._width:
            return
        self._write(f"\r{' ' * self._width}\r")
        self._width = 0

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away: the line is only a nicety
            self.enabled = False


class AttemptWatch:
    """A connection's `event_handler` for the command line: counts the connect attempts,
    keeps the last error (for the failure line) and drives the progress line.

    Runs on the connection's thread, so it only records and draws; it never blocks.
    """

    def __init__(self, target: str, attempts: int, progress: Progress) -> None:
        self.target = target
        self.attempts = attempts
        """Attempts in one run of retries: the first one plus `retry`."""
        self.progress = progress
        self.last_error: BaseException | None = None
        self._verb = "connecting to"

    def __call__(self, name: str, fields: Mapping[str, Any]) -> None:
        match name:
            case "connect_start":
                attempt = fields.get("attempt", 1)
                line = f"{self._verb} {self.target} (attempt {attempt} of {self.attempts})"
                if self.last_error is not None and attempt > 1:
                    line += f", last: {cause(self.last_error)}"
                self.progress.show(line + " ...")
            case "connect_end" if fields.get("error") is not None:
                error = fields["error"]
                if isinstance(error, BaseException):
                    self.last_error = error
                    self.progress.show(f"{self._verb} {self.target}: {cause(error)}")
            case "connect_end":
                self.last_error = None
                self.progress.clear()
            case "disconnect":
                self._verb = "reconnecting to"
            case "terminate":
                self.progress.clear()
