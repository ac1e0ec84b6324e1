"""HTTP/1.1 on one connection: a GET, a POST, a streamed upload and a streamed download.

A request call returns its stream reference at once. The answer comes to the calling
thread's mailbox as messages (`GunResponse`, then `GunData` pieces), and the await
helpers pick a stream's messages out of it, leaving everything else where it is.

Run: python examples/http_requests.py [http://host:port/path-to-download]
Without a URL it starts the embedded server and downloads its `/stream` route: four
pieces, 100 ms apart. The server of a URL also needs `GET /` and `POST /echo` (which
answers with the request body), as the embedded server and `gluegun serve` have.
"""

from __future__ import annotations

import time
import urllib.parse

from _server import server_url, target

from gluegun_actors import connection, http
from gluegun_actors.events import GunData, GunInform, GunResponse, GunTrailers

TIMEOUT = connection.Milliseconds(5000)
MAX_MESSAGES = 100
"""Most messages read from the streamed download (the loop is bounded, as every wait is)."""


def get(conn: connection.Connection) -> None:
    stream = http.get(conn, "/", [("accept", "text/plain")])
    response = http.await_response(conn, stream, TIMEOUT)  # the head: status, headers
    body = http.await_body(conn, stream, TIMEOUT)  # every GunData up to is_fin, joined
    print(f"GET / -> {response.status} {body!r}")


def post(conn: connection.Connection) -> None:
    # A whole body: str goes as UTF-8, and content-length is set for us.
    stream = http.post(conn, "/echo", [("content-type", "text/plain")], "hello")
    response = http.await_response(conn, stream, TIMEOUT)
    print(f"POST /echo -> {response.status} {http.await_body(conn, stream, TIMEOUT)!r}")


def streamed_upload(conn: connection.Connection) -> None:
    # The head first, then the body in pieces. Without a content-length header the body
    # goes chunked; is_fin=True marks the last piece.
    stream = http.headers(conn, "POST", "/echo", [("content-type", "text/plain")])
    pieces = [b"one ", b"two ", b"three"]
    for n, piece in enumerate(pieces, start=1):
        http.data(conn, stream, n == len(pieces), piece)
    response = http.await_response(conn, stream, TIMEOUT)
    body = http.await_body(conn, stream, TIMEOUT)
    print(f"streamed upload of {len(pieces)} pieces -> {response.status} {body!r}")


def streamed_download(conn: connection.Connection, path: str) -> None:
    # Each message of the stream as it arrives (Gun's gun:await), instead of waiting for
    # the whole body: for large or never-ending bodies, or to act on each piece at once.
    stream = http.get(conn, path)
    print(f"streamed download of GET {path}:")
    start = time.monotonic()
    for _ in range(MAX_MESSAGES):
        message = http.await_next(conn, stream, TIMEOUT)
        at = f"{(time.monotonic() - start) * 1000:5.0f} ms"
        match message:
            case GunInform(status=status):
                print(f"  {at}  inform {status}")
            case GunResponse(status=status, is_fin=is_fin):
                print(f"  {at}  response {status}")
                if is_fin:  # no body at all
                    return
            case GunData(data=data, is_fin=is_fin):
                print(f"  {at}  data {data!r}" + (" (the last piece)" if is_fin else ""))
                if is_fin:
                    return
            case GunTrailers(headers=headers):
                print(f"  {at}  trailers {headers}")
                return
    raise RuntimeError(f"no end of the body in {MAX_MESSAGES} messages")


def main(url: str) -> None:
    # The connection connects in the background; its owner (this thread) gets GunUp.
    # retry=0: give up at once if the server is not there.
    conn = connection.open_url(url, connection.options(retry=0))
    try:
        protocol = connection.await_up(conn, TIMEOUT)
        parts = urllib.parse.urlsplit(url)
        print(f"connected to {parts.netloc} over {protocol.value}")
        get(conn)
        post(conn)
        streamed_upload(conn)
        streamed_download(conn, target(url))
    finally:
        connection.close(conn)


if __name__ == "__main__":
    with server_url("http", "/stream?chunks=4&size=8&delay_ms=100") as url:
        main(url)
