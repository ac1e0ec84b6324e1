"""Lines typed or piped into a command, delivered as messages into its mailbox.

A reader thread puts `InputLine`, then `InputEnd` at the end of input (EOF, Ctrl-D), or
`InputInterrupted` for Ctrl-C at the prompt, into the same `Mailbox` the connection
reports to: the command then waits in one place for whatever comes first, as an Erlang
process would.

Two readers. On a terminal, when `prompt_toolkit` is installed (the `cli` extra), a
prompt with line editing and history, and output printed above it instead of through
what is being typed: that is what it is for, and hand-written terminal code would do it
worse. Elsewhere (pipes, or without the extra) plain lines read with `os.read` from
file descriptor 0: not through `sys.stdin`, whose buffered reader would still be locked
by the blocked thread when the interpreter exits.
"""

from __future__ import annotations

import codecs
import os
import sys
import threading
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeAlias

from gluegun_actors.mailbox import Mailbox

__all__ = [
    "InputEnd",
    "InputInterrupted",
    "InputLine",
    "InputMessage",
    "PlainLines",
    "PromptLines",
    "line_reader",
]

_READ_SIZE = 65_536
_STOP_TRIES = 20
_STOP_WAIT = 0.1
"""The prompt is asked to exit up to `_STOP_TRIES` times, `_STOP_WAIT` seconds apart."""


@dataclass(frozen=True, slots=True)
class InputLine:
    """One line of input, without its line ending."""

    text: str


@dataclass(frozen=True, slots=True)
class InputEnd:
    """The input has ended (EOF on a pipe, Ctrl-D on a terminal)."""


@dataclass(frozen=True, slots=True)
class InputInterrupted:
    """Ctrl-C at the prompt (the prompt's terminal is in raw mode: no SIGINT comes)."""


InputMessage: TypeAlias = InputLine | InputEnd | InputInterrupted


class PlainLines(AbstractContextManager["PlainLines"]):
    """Reads lines from a file descriptor on a daemon thread (it may stay blocked in
    `os.read` when the command ends; it holds no lock then)."""

    interactive = False

    def __init__(self, mailbox: Mailbox, fd: int = 0) -> None:
        self._mailbox = mailbox
        self._fd = fd
        self._thread = threading.Thread(target=self._run, name="gluegun-stdin", daemon=True)

    def __enter__(self) -> PlainLines:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def _run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        while True:
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except OSError:
                chunk = b""
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                self._mailbox.put(InputLine(line.removesuffix("\r")))
            if not chunk:
                if pending:
                    self._mailbox.put(InputLine(pending))
                self._mailbox.put(InputEnd())
                return


class PromptLines(AbstractContextManager["PromptLines"]):
    """A `prompt_toolkit` prompt on its own thread; while it runs, stdout and stderr
    print above it."""

    interactive = True

    def __init__(self, mailbox: Mailbox, prompt: str = "> ") -> None:
        from prompt_toolkit import PromptSession

        self._mailbox = mailbox
        self._prompt = prompt
        self._session: Any = PromptSession()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gluegun-prompt", daemon=True)
        self._stack = ExitStack()

    def __enter__(self) -> PromptLines:
        from prompt_toolkit.patch_stdout import patch_stdout

        self._stack.enter_context(patch_stdout())
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        for _ in range(_STOP_TRIES):
            app = self._session.app
            if app.is_running and app.loop is not None:
                app.loop.call_soon_threadsafe(_exit_prompt, app)
            self._thread.join(_STOP_WAIT)
            if not self._thread.is_alive():
                break
        self._stack.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                text = self._session.prompt(self._prompt)
            except EOFError:
                if not self._stopping.is_set():
                    self._mailbox.put(InputEnd())
                return
            except KeyboardInterrupt:
                self._mailbox.put(InputInterrupted())
                return
            self._mailbox.put(InputLine(text))


def _exit_prompt(app: Any) -> None:
    """Make the running prompt return (as if Ctrl-D), on the prompt's own event loop."""
    if app.is_running and not app.future.done():
        app.exit(exception=EOFError())


def line_reader(mailbox: Mailbox) -> PlainLines | PromptLines:
    """The prompt on a terminal when `prompt_toolkit` is installed, plain lines otherwise."""
    if _is_terminal(sys.stdin) and _is_terminal(sys.stdout):
        try:
            return PromptLines(mailbox)
        except ImportError:
            pass
    return PlainLines(mailbox)


def _is_terminal(stream: Any) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a file at all
        return False
