"""What every networked command shares: the URL, the retry arguments, the connection
options built from them, the `-H` headers, and the one line a failed connect prints.

Retries follow the library's policy (Gun's: the first retry at once, then `--retry-delay`
doubling up to 5 s); they apply to every run of attempts, the first connect and each
reconnect after a loss, since the count starts again after a success.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gluegun_actors import connection
from gluegun_actors._cli.exits import ExitCode, Failure, cause
from gluegun_actors._cli.progress import AttemptWatch, Progress
from gluegun_actors._url import Url, parse_url
from gluegun_actors.errors import (
    AwaitTimeout,
    ConnectionDown,
    GluegunError,
    InvalidArgument,
    UpgradeFailed,
)

__all__ = [
    "DEFAULT_RETRY",
    "add_connect_arguments",
    "add_header_argument",
    "connect_failure",
    "connect_options",
    "connected",
    "url_argument",
]

DEFAULT_RETRY = 3
"""Retries after a failed attempt, unless `--retry` says otherwise."""
RETRY_BACKOFF = 2.0
RETRY_MAX_DELAY_MS = 5_000


def url_argument(text: str) -> Url:
    """An argparse type: a checked URL (the library's own check and message)."""
    try:
        return parse_url(text)
    except InvalidArgument as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def milliseconds(text: str) -> int:
    """An argparse type: a duration in milliseconds, a whole number > 0."""
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected milliseconds > 0, got 0")
    return value


def header(text: str) -> tuple[str, str]:
    """An argparse type: `'Name: value'` as a `(name, value)` pair."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def add_connect_arguments(parser: argparse.ArgumentParser, *, retry_help: str = "") -> None:
    group = parser.add_argument_group("connecting")
    group.add_argument(
        "--retry",
        type=_count,
        metavar="N",
        help=f"retries after a failed attempt (default {DEFAULT_RETRY}{retry_help})",
    )
    group.add_argument(
        "--retry-delay",
        type=milliseconds,
        default=200,
        metavar="MS",
        help="delay before the second retry, doubling after (up to 5 s); the first is "
        "immediate (default 200)",
    )
    group.add_argument(
        "--cacert",
        metavar="FILE",
        help="trust the certificates in this PEM file (for https:// and wss://), "
        "instead of the system's",
    )
    group.add_argument(
        "--connect-timeout",
        type=milliseconds,
        default=10_000,
        metavar="MS",
        help="bound on each attempt's TCP connect (default 10000)",
    )


def add_header_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=header,
        default=[],
        metavar="'NAME: VALUE'",
        help=f"add a header to {what} (repeatable)",
    )


def connect_options(
    args: argparse.Namespace,
    url: Url,
    progress: Progress,
    *,
    default_retry: int = DEFAULT_RETRY,
    **fields: Any,
) -> tuple[connection.Options, AttemptWatch]:
    """Connection options from the arguments (`--retry`, else `default_retry`), with an
    `AttemptWatch` as event handler."""
    retry = default_retry if args.retry is None else args.retry
    watch = AttemptWatch(str(url), retry + 1, progress)
    if args.cacert is not None:
        fields["tls_context"] = _trusting(args.cacert)
    options = connection.options(
        retry=retry,
        retry_timeout=args.retry_delay,
        retry_backoff=RETRY_BACKOFF,
        retry_max_timeout=max(RETRY_MAX_DELAY_MS, args.retry_delay),
        connect_timeout=args.connect_timeout,
        event_handler=watch,
        **fields,
    )
    return options, watch


@contextmanager
def connected(
    url: Url, options: connection.Options, watch: AttemptWatch
) -> Iterator[tuple[connection.Connection, connection.Protocol]]:
    """A connection to `url`, up (waited for as long as its retries last), closed on exit;
    a failed connect raises its `connect_failure`."""
    conn = connection.open_url(str(url), options)
    try:
        try:
            protocol = connection.await_up(conn, connection.Infinity)
        except GluegunError as error:
            raise connect_failure(url, error, watch) from None
        yield conn, protocol
    finally:
        connection.close(conn)


def _trusting(path: str) -> ssl.SSLContext:
    """A client context that verifies against the certificates in `path` (PEM)."""
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as error:
        raise Failure(ExitCode.USAGE, f"cannot use --cacert {path!r}: {error}") from None


def connect_failure(url: Url, error: GluegunError, watch: AttemptWatch) -> Failure:
    """The failure for an error raised while connecting (and upgrading)."""
    watch.progress.clear()
    if isinstance(error, UpgradeFailed):
        why = f"the server refused the WebSocket upgrade with status {error.status}"
    elif isinstance(error, AwaitTimeout):
        last = watch.last_error
        why = "timed out" if last is None else f"timed out; last attempt: {cause(last)}"
    elif isinstance(error, ConnectionDown):
        why = cause(error)
    else:
        return Failure(ExitCode.FAILED, str(error))
    return Failure(ExitCode.CANNOT_CONNECT, f"cannot connect to {url}: {why}")
