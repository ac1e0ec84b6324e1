"""How a command ends: its exit code, and the one line on stderr that says why.

A command raises `Failure` for an outcome the user must hear about; `main` prints its
message as one `gluegun: ...` line and returns its code, so no traceback ever reaches the
terminal. `cause` turns the exception behind a failed connection into the words a user
looks for ("connection refused"), keeping the exception's name for searching.
"""

from __future__ import annotations

import enum
import ssl

from gluegun_actors.errors import describe

__all__ = ["EPILOG", "ExitCode", "Failure", "cause"]


class ExitCode(enum.IntEnum):
    """The exit codes of every command (listed in `gluegun --help`)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    CANNOT_CONNECT = 3
    INTERRUPTED = 130


EPILOG = """\
exit codes:
  0    done: a complete HTTP response, or a WebSocket that ended with a clean close
       (1000, 1001 or no code); serve and demo: stopped normally
  1    failed after connecting: the connection was lost, the response was cut short,
       the WebSocket closed with another code or without finishing its closing handshake
  2    usage: a bad argument or URL
  3    cannot connect: every attempt failed (refused, unreachable, name not found,
       TLS), the connect timed out, or the server refused the WebSocket upgrade
  130  interrupted by Ctrl-C (a WebSocket is sent close 1001 first)
"""


class Failure(Exception):
    """Ends a command: `message` goes to stderr as one line, `code` is the exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_MAX_DEPTH = 8
"""How far `cause` follows `reason` / `__cause__` links (they never loop, but stay bounded)."""


def cause(error: BaseException) -> str:
    """The root of `error` in a user's words: "connection refused (ConnectionRefusedError,
    errno 111)"; the library's own text (`errors.describe`) when it has no OS cause."""
    root = error
    for _ in range(_MAX_DEPTH):
        reason = getattr(root, "reason", None)
        inner = reason if isinstance(reason, BaseException) else root.__cause__
        if inner is None:
            break
        root = inner
    name = type(root).__name__
    if isinstance(root, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {root.verify_message} ({name})"
    if isinstance(root, OSError) and root.strerror and not isinstance(root, ssl.SSLError):
        text = root.strerror[:1].lower() + root.strerror[1:]
        return f"{text} ({name}, errno {root.errno})" if root.errno is not None else text
    return describe(root)
