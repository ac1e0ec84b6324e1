"""`gluegun http [METHOD] URL`: one request, and each message of its answer as it arrives.

It prints what the owner receives, in order: `GunUp`, any `GunInform`, the
`GunResponse` (status and headers), each `GunData` piece as it comes (a chunked or
streamed body shows its pieces), then `GunTrailers`. The answer is read with
`http.await_next`, so a body is never gathered first. A complete response exits 0,
whatever its status (as curl); a response cut short, or silence longer than `--timeout`,
exits 1.
"""

from __future__ import annotations

import argparse
import http.client
import sys
from typing import Any

from gluegun_actors import __version__, connection
from gluegun_actors import http as gun_http
from gluegun_actors._cli.connecting import (
    add_connect_arguments,
    add_header_argument,
    connect_options,
    connected,
    milliseconds,
)
from gluegun_actors._cli.exits import ExitCode, Failure
from gluegun_actors._cli.output import Printer, b64, shown_bytes
from gluegun_actors._cli.progress import Progress
from gluegun_actors._types import Headers, StreamRef
from gluegun_actors._url import Url, parse_url
from gluegun_actors.errors import AwaitTimeout, GluegunError, InvalidArgument
from gluegun_actors.events import GunData, GunInform, GunResponse, GunTrailers

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "http",
        usage="gluegun http [options] [METHOD] URL",
        help="send one HTTP request and print each message of the answer as it arrives",
        description="Send one request and print every message of the answer as it "
        "arrives: GunUp, GunInform, GunResponse (status and headers), each GunData "
        "piece, GunTrailers. METHOD defaults to GET, or POST with -d.",
    )
    parser.add_argument("words", nargs="+", metavar="[METHOD] URL", help=argparse.SUPPRESS)
    parser.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        help="the request body: text, @FILE for a file's bytes, or - for stdin",
    )
    add_header_argument(parser, "the request")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per message on stdout"
    )
    parser.add_argument(
        "--timeout",
        type=milliseconds,
        default=30_000,
        metavar="MS",
        help="longest silence while the answer arrives (default 30000)",
    )
    add_connect_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    method, url = _method_and_url(args.words, args.data is not None)
    body = None if args.data is None else _body(args.data)
    headers = list(args.headers)
    if not any(name.lower() == "user-agent" for name, _ in headers):
        headers.append(("user-agent", f"gluegun/{__version__}"))
    with Progress() as progress:
        printer = Printer(as_json=args.json, progress=progress)
        options, watch = connect_options(args, url, progress)
        with connected(url, options, watch) as (conn, protocol):
            printer.event(
                "up",
                f"GunUp {protocol.value} {url.host}:{url.port}",
                protocol=protocol.value,
                url=str(url),
            )
            try:
                stream = gun_http.request(conn, method, url.target, headers, body)
            except GluegunError as error:
                raise Failure(ExitCode.USAGE, str(error)) from None
            return _print_answer(conn, stream, printer, args.timeout)


def _method_and_url(words: list[str], has_body: bool) -> tuple[str, Url]:
    if len(words) > 2:
        raise Failure(ExitCode.USAGE, f"expected [METHOD] URL, got {' '.join(words)!r}")
    method = words[0].upper() if len(words) == 2 else ("POST" if has_body else "GET")
    if not method.isascii() or not method.isalpha():
        raise Failure(ExitCode.USAGE, f"{words[0]!r} is not an HTTP method (GET, POST, ...)")
    try:
        url = parse_url(words[-1])
    except InvalidArgument as error:
        raise Failure(ExitCode.USAGE, str(error)) from None
    if url.websocket:
        raise Failure(ExitCode.USAGE, f"http needs an http:// or https:// URL, got {url}")
    return method, url


def _body(data: str) -> bytes:
    """`-d`: the text itself, `@FILE` for a file's bytes, `-` for stdin's."""
    if data == "-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            with open(data[1:], "rb") as file:
                return file.read()
        except OSError as error:
            raise Failure(ExitCode.USAGE, f"cannot read {data[1:]!r}: {error.strerror}") from None
    return data.encode("utf-8")


def _print_answer(
    conn: connection.Connection, stream: StreamRef, printer: Printer, timeout: int
) -> int:
    """Print each message of the answer as it arrives, until the last one."""
    while True:
        try:
            message = gun_http.await_next(conn, stream, timeout)
        except AwaitTimeout:
            raise Failure(ExitCode.FAILED, f"no answer within {timeout} ms of silence") from None
        except GluegunError as error:
            raise Failure(ExitCode.FAILED, f"the request failed: {error}") from None
        match message:
            case GunInform(status=status, headers=headers):
                printer.event(
                    "inform", f"GunInform {_status(status)}", status=status, headers=headers
                )
                _print_headers(printer, headers)
            case GunResponse(is_fin=is_fin, status=status, headers=headers):
                printer.event(
                    "response",
                    f"GunResponse {_status(status)}{', fin' if is_fin else ''}",
                    status=status,
                    fin=is_fin,
                    headers=headers,
                )
                _print_headers(printer, headers)
                if is_fin:
                    return ExitCode.OK
            case GunData(is_fin=is_fin, data=data):
                printer.event(
                    "data",
                    f"GunData {len(data)} bytes{', fin' if is_fin else ''}",
                    fin=is_fin,
                    data=b64(data),
                )
                if data:
                    printer.text(shown_bytes(data))
                if is_fin:
                    return ExitCode.OK
            case GunTrailers(headers=headers):
                printer.event("trailers", "GunTrailers", headers=headers)
                _print_headers(printer, headers)
                return ExitCode.OK


def _status(status: int) -> str:
    phrase = http.client.responses.get(status, "")
    return f"{status} {phrase}".rstrip()


def _print_headers(printer: Printer, headers: Headers) -> None:
    if headers:
        printer.text("".join(f"  {name}: {value}\n" for name, value in headers))
