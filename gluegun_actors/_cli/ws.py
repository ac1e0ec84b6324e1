"""`gluegun ws URL`: an interactive WebSocket client, like wscat.

Theory of operation: one `Mailbox` is the connection's owner and the stream's
`reply_to`, and a reader thread (`lines.py`) puts the lines of stdin into the same
mailbox. The main thread takes whatever comes first, a line to send or a message from
the connection, so there is one place that decides and no state shared between
threads. Ctrl-C is a SIGINT in the main thread, or an `InputInterrupted` from the
prompt; both end with a close 1001.

Endings: EOF sends close 1000 and waits for the peer's close (bounded by the closing
timeout): exit 0. The peer's close ends the session (exit 0 for 1000, 1001 or no code),
unless `--reconnect`: then the connection reconnects by its retry policy, the stream is
upgraded again (`reupgrade`), and the session goes on, with a line for each loss and
each new upgrade.
"""

from __future__ import annotations

import argparse
from typing import Any

from gluegun_actors import connection, websocket
from gluegun_actors._cli.connecting import (
    DEFAULT_RETRY,
    add_connect_arguments,
    add_header_argument,
    connect_failure,
    connect_options,
    milliseconds,
    url_argument,
)
from gluegun_actors._cli.exits import ExitCode, Failure
from gluegun_actors._cli.lines import (
    InputEnd,
    InputInterrupted,
    InputLine,
    line_reader,
)
from gluegun_actors._cli.output import Printer, b64, shown_bytes
from gluegun_actors._cli.progress import Progress
from gluegun_actors._timeouts import Infinity
from gluegun_actors._types import StreamRef
from gluegun_actors._url import Url
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    ClosingTimeout,
    ConnectionDown,
    GluegunError,
    describe,
)
from gluegun_actors.events import Down, GunDown, GunError, GunUp, GunUpgrade, GunWs
from gluegun_actors.mailbox import Mailbox
from gluegun_actors.message import Binary, Close, Frame, Ping, Pong, Text

__all__ = ["add_parser", "run"]

RECONNECT_RETRY = 20
"""Retries per outage with `--reconnect` (about 75 s with the default delays)."""
CLEAN_CLOSE_CODES = frozenset({None, 1000, 1001})
GOING_AWAY = 1001
_CLOSING_MARGIN_MS = 1_000


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "ws",
        help="talk to a WebSocket interactively: stdin lines out, frames in",
        description="Connect to a WebSocket server, send each line of stdin as a text "
        "message and print every frame received with its time. EOF (Ctrl-D) sends close "
        "1000 and waits for the peer's close; Ctrl-C sends close 1001.",
    )
    parser.add_argument("url", type=url_argument, metavar="URL", help="ws://... or wss://...")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per event on stdout"
    )
    add_header_argument(parser, "the upgrade request")
    parser.add_argument(
        "--subprotocol",
        dest="subprotocols",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable; the server picks one)",
    )
    parser.add_argument("--compress", action="store_true", help="offer permessage-deflate")
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="survive the loss of the connection: reconnect and upgrade again",
    )
    parser.add_argument(
        "--closing-timeout",
        type=milliseconds,
        default=5_000,
        metavar="MS",
        help="how long to wait for the peer's close frame (default 5000)",
    )
    add_connect_arguments(parser, retry_help=f", {RECONNECT_RETRY} with --reconnect")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    url: Url = args.url
    if not url.websocket:
        raise Failure(ExitCode.USAGE, f"ws needs a ws:// or wss:// URL, got {url}")
    mailbox = Mailbox("gluegun ws")
    options = websocket.options(
        headers=args.headers,
        subprotocols=args.subprotocols,
        compress=args.compress,
        reupgrade=args.reconnect,
        closing_timeout=args.closing_timeout,
    )
    with Progress() as progress:
        printer = Printer(as_json=args.json, progress=progress)
        conn_options, watch = connect_options(
            args,
            url,
            progress,
            default_retry=RECONNECT_RETRY if args.reconnect else DEFAULT_RETRY,
            owner=mailbox,
        )
        conn = connection.open_url(str(url), conn_options)
        try:
            upgrade = _connect(conn, url, options, mailbox, args.connect_timeout)
        except GluegunError as error:
            connection.close(conn)
            raise connect_failure(url, error, watch) from None
        except BaseException:
            connection.close(conn)
            raise
        session = _Session(conn, upgrade.stream, mailbox, printer, args)
        try:
            with line_reader(mailbox) as reader:
                if reader.interactive or not args.reconnect:
                    # The prompt owns the terminal now; without --reconnect, the
                    # connection's retries after a loss are nobody's business.
                    progress.disable()
                session.opened(upgrade)
                try:
                    return session.run()
                except KeyboardInterrupt:
                    return session.close(GOING_AWAY, ExitCode.INTERRUPTED)
        finally:
            connection.close(conn)


def _connect(
    conn: connection.Connection,
    url: Url,
    options: websocket.Options,
    mailbox: Mailbox,
    upgrade_timeout: int,
) -> GunUpgrade:
    """Wait for the connection (as long as its retries last), then upgrade it.

    The low-level calls rather than `websocket.connect`, for the `GunUpgrade` itself:
    its headers say which extensions the server accepted.
    """
    protocol = connection.await_up(conn, Infinity)
    stream = websocket.upgrade_with_protocol(
        conn, protocol, url.target, (), options, reply_to=mailbox
    )
    return websocket.await_upgrade(conn, stream, upgrade_timeout)


class _Session:
    """One WebSocket session: sends lines, prints what arrives, decides how it ends."""

    def __init__(
        self,
        conn: connection.Connection,
        stream: StreamRef,
        mailbox: Mailbox,
        printer: Printer,
        args: argparse.Namespace,
    ) -> None:
        self.conn = conn
        self.stream = stream
        self.mailbox = mailbox
        self.printer = printer
        self.url: Url = args.url
        self.reconnect: bool = args.reconnect
        self.closing_timeout: int = args.closing_timeout

    def opened(self, upgrade: GunUpgrade) -> None:
        chosen = _subprotocol(upgrade)
        extensions = _extensions(upgrade)
        said = "".join(
            f", {what} {value}"
            for what, value in (("subprotocol", chosen), ("extensions", extensions))
            if value
        )
        self.printer.status(
            "open",
            f"connected to {self.url}{said}; Ctrl-D closes, Ctrl-C quits",
            url=str(self.url),
            subprotocol=chosen,
            extensions=extensions,
        )

    def run(self) -> int:
        """Until the input ends, the peer closes, or the connection is lost for good."""
        while True:
            message = self.mailbox.receive(None, Infinity)
            match message:
                case InputLine(text=text):
                    self.send(text)
                case InputEnd():
                    return self.close(1000, ExitCode.OK)
                case InputInterrupted():
                    return self.close(GOING_AWAY, ExitCode.INTERRUPTED)
                case GunWs(frame=Close(code=code) as frame):
                    self.show(frame)
                    if not self.reconnect:
                        return ExitCode.OK if code in CLEAN_CLOSE_CODES else ExitCode.FAILED
                case GunWs(frame=frame):
                    self.show(frame)
                case GunDown(reason=reason):
                    if not self.reconnect:
                        raise Failure(ExitCode.FAILED, f"connection lost: {describe(reason)}")
                    self.printer.status(
                        "down",
                        f"connection lost ({describe(reason)}); reconnecting",
                        reason=describe(reason),
                    )
                case GunUp():
                    pass  # the stream is upgraded again next: its GunUpgrade says so
                case GunUpgrade() as upgrade:
                    self.printer.status(
                        "upgrade",
                        "reconnected: upgraded again",
                        subprotocol=_subprotocol(upgrade),
                        extensions=_extensions(upgrade),
                    )
                case GunError(reason=reason):
                    raise Failure(ExitCode.FAILED, f"the WebSocket failed: {describe(reason)}")
                case Down(reason=reason):
                    raise Failure(ExitCode.FAILED, f"connection lost: {describe(reason)}")

    def send(self, text: str) -> None:
        try:
            websocket.send(self.conn, self.stream, Text(text))
        except (BadStateError, ConnectionDown):
            self.printer.status("dropped", "not sent: the WebSocket is reconnecting", text=text)

    def close(self, code: int, outcome: ExitCode) -> int:
        """Send a close frame and wait for the peer's (up to the closing timeout).

        Returns `outcome` after a clean closing handshake; a peer that does not finish
        it is a failure, except after Ctrl-C, which ends with 130 whatever happens.
        """
        self.printer.progress.disable()  # the retries after the handshake are not shown
        try:
            websocket.send(self.conn, self.stream, Close(code, ""))
        except (BadStateError, ConnectionDown):
            return self._unclean(outcome, "no WebSocket was open to close (reconnecting)")
        unanswered = f"no close frame from the peer within {self.closing_timeout} ms"
        try:
            while True:
                # The connection itself gives up after the closing timeout (a GunDown
                # with ClosingTimeout); the margin is for a connection that cannot.
                message = self.mailbox.receive(
                    self._of_connection, self.closing_timeout + _CLOSING_MARGIN_MS
                )
                match message:
                    case GunWs(frame=Close() as frame):
                        self.show(frame)
                        return outcome
                    case GunWs(frame=frame):
                        self.show(frame)
                    case GunDown(reason=ClosingTimeout()) | Down(reason=ClosingTimeout()):
                        return self._unclean(outcome, unanswered)
                    case GunDown(reason=reason) | Down(reason=reason) | GunError(reason=reason):
                        why = f"the connection ended before the peer's close: {describe(reason)}"
                        return self._unclean(outcome, why)
        except AwaitTimeout:
            return self._unclean(outcome, unanswered)
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED

    def _unclean(self, outcome: ExitCode, why: str) -> int:
        if outcome is ExitCode.INTERRUPTED:
            return outcome
        raise Failure(ExitCode.FAILED, why)

    def _of_connection(self, message: object) -> bool:
        return getattr(message, "conn", None) is self.conn

    def show(self, frame: Frame) -> None:
        match frame:
            case Text(text=text):
                self.printer.event("text", f"< {text}", text=text)
            case Binary(data=data):
                self.printer.event("binary", f"< {shown_bytes(data)}", data=b64(data))
            case Close(code=code, reason=reason):
                said = f" {reason!r}" if reason else ""
                self.printer.event("close", f"< close {code}{said}", code=code, reason=reason)
            case Ping(data=data) | Pong(data=data):
                kind = type(frame).__name__.lower()
                self.printer.event(kind, f"< {kind}", data=b64(data))


def _subprotocol(upgrade: GunUpgrade) -> str | None:
    """The subprotocol the server chose (GunUpgrade's protocols are ("websocket", chosen))."""
    return upgrade.protocols[1] if len(upgrade.protocols) > 1 else None


def _extensions(upgrade: GunUpgrade) -> str | None:
    """The extensions the server accepted, as its sec-websocket-extensions header says."""
    values = [value for name, value in upgrade.headers if name == "sec-websocket-extensions"]
    return ", ".join(values) or None
