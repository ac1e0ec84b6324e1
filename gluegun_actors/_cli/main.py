"""The `gluegun` command: its arguments, the dispatch to a command, and how it ends.

argparse (the standard library) rather than click or typer: the command line must run
on the core install (pykka, h11, wsproto), and argparse already gives subcommands,
typed arguments, `--help` and usage errors (exit 2). Every command returns an exit code
or raises `Failure`; nothing below ever prints a traceback for an expected outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import sys
import textwrap

from gluegun_actors import __version__
from gluegun_actors._cli import demo, http, serve, ws
from gluegun_actors._cli.exits import EPILOG, ExitCode, Failure
from gluegun_actors.errors import GluegunError

__all__ = ["build_parser", "main"]

_COMMANDS = (demo, ws, http, serve)
_WIDTH = 88


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gluegun",
        description="Gun-style connection actors from the command line: talk HTTP/1.1 and "
        "WebSocket to a server and see every message the owner receives.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"gluegun {__version__} (gluegun_actors, Python {platform.python_version()})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log to stderr: -v the library's log, -vv also every connection event",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(commands)
    for sub in (parser, *commands.choices.values()):
        # Raw, so that the exit codes keep their layout; the descriptions are filled here.
        sub.description = textwrap.fill(sub.description or "", _WIDTH) or None
        sub.epilog = EPILOG
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (see `gluegun --help`)."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.run(args))
    except Failure as failure:
        _say(failure.message)
        return failure.code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.FAILED
    except GluegunError as error:
        _say(str(error))
        return ExitCode.FAILED


def _say(message: str) -> None:
    """The one line a failure prints on stderr."""
    line = " ".join(message.split())
    with contextlib.suppress(OSError, ValueError):
        print(f"gluegun: {line}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """The reader of stdout went away (`| head`): stop the interpreter's final flush
    from failing too."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _configure_logging(verbosity: int) -> None:
    """Without -v the library's log stays quiet: the command says what went wrong, once
    (otherwise Python's last-resort handler would print each warning on stderr)."""
    if verbosity <= 0:
        logging.getLogger("gluegun_actors").addHandler(logging.NullHandler())
        return
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbosity > 1:  # the connections' events are logged at DEBUG
        logging.getLogger("gluegun_actors").setLevel(logging.DEBUG)
