"""Bounds a hostile peer crosses, each measured in a child process (peak traced memory).

A child process keeps the measure clean: nothing the test session allocated before
counts, and tracemalloc's overhead stays out of the other tests.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from polling import wait_until

_HERE = os.path.dirname(os.path.abspath(__file__))
"""The children run here, so that they import the package as installed (not from a
working directory that shadows it)."""

_PRELUDE = """
import json, struct, tracemalloc, zlib
from gluegun_actors._protocol.ws import WsConnection, Failed
from gluegun_actors._protocol.ws_handshake import Negotiated
from gluegun_actors._protocol.ws_deflate import DeflateParams

def frame(opcode, payload, fin=True, rsv=0):
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload

def measure(client, wire, step=65536):
    tracemalloc.start()
    events = []
    for i in range(0, len(wire), step):
        events += client.receive_data(wire[i:i + step])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, events
"""


def _child(body: str) -> dict[str, object]:
    return _run_child(_PRELUDE + textwrap.dedent(body))


def _run_child(code: str, *args: str) -> dict[str, object]:
    """Run `code` in a child Python; its last line of output is a JSON object."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        cwd=_HERE,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_RSS = """
import json, os, sys, threading, time
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * page
"""
"""What a child measures with: its resident memory now, in bytes."""


def _hostile(
    serve: Callable[..., None], *args: object, rcvbuf: int | None = None
) -> tuple[socket.socket, threading.Thread, list[int]]:
    """A hostile server thread: `serve(listener, *args, sent)` for one client; `sent`
    counts what it managed to send."""
    listener = socket.create_server(("127.0.0.1", 0))
    if rcvbuf is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sent = [0]
    thread = threading.Thread(target=serve, args=(listener, *args, sent))
    thread.start()
    return listener, thread, sent


def _read_head(peer: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        head += peer.recv(4096)
    return head


def test_a_deflate_bomb_is_stopped_at_the_limit_not_after_inflating() -> None:
    result = _child(
        """
        zeros = bytes(1 << 20)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = b"".join(compressor.compress(zeros) for _ in range(200))
        payload += compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
        wire = frame(0x2, payload, rsv=0x40)  # 200 MiB of zeros in about 200 KB
        client = WsConnection(Negotiated(None, DeflateParams()), max_message_size=1 << 20)
        wire_size = len(wire)
        peak, events = measure(client, wire)
        failed = [e for e in events if isinstance(e, Failed)]
        print(json.dumps({"peak": peak, "wire": wire_size,
                          "code": failed[0].close_code if failed else None}))
        """
    )
    print("deflate bomb", result)
    assert result["code"] == 1009
    assert int(result["peak"]) < 4 << 20, result  # the limit (1 MiB) plus room, not 200 MiB


def test_tiny_fragments_cost_a_small_factor_of_the_message() -> None:
    result = _child(
        """
        count = 100_000
        pieces = [frame(0x2, b"x", fin=False)]
        pieces += [frame(0x0, b"x", fin=False)] * (count - 2)
        pieces.append(frame(0x0, b"x"))
        wire = b"".join(pieces)
        del pieces
        client = WsConnection(Negotiated(), max_message_size=1 << 20)
        peak, events = measure(client, wire)
        print(json.dumps({"peak": peak, "size": len(events[-1].data)}))
        """
    )
    print("binary fragments", result)
    assert result["size"] == 100_000
    # One object per fragment took about 50 bytes each (10 MB here); one buffer takes
    # a few times the message.
    assert int(result["peak"]) < 4 * 100_000, result


def test_tiny_text_fragments_are_checked_as_utf8_and_kept_in_one_buffer() -> None:
    result = _child(
        """
        count = 100_000
        snow = "\\u2603".encode()  # three bytes, split across fragments
        data = snow * (count // 3)
        pieces = [frame(0x1, data[:1], fin=False)]
        pieces += [frame(0x0, data[i:i + 1], fin=False) for i in range(1, len(data) - 1)]
        pieces.append(frame(0x0, data[-1:]))
        wire = b"".join(pieces)
        del pieces
        client = WsConnection(Negotiated(), max_message_size=1 << 20)
        peak, events = measure(client, wire)
        text = events[-1].text
        print(json.dumps({"peak": peak, "ok": text == "\\u2603" * (count // 3),
                          "size": len(data)}))
        """
    )
    print("text fragments", result)
    assert result["ok"] is True
    assert int(result["peak"]) < 6 * int(result["size"]), result


# -- 1xx floods ----------------------------------------------------------------------------

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def test_a_1xx_flood_ends_the_connection_past_the_bound(scripted_server) -> None:
    from gluegun_actors import connection, http
    from gluegun_actors._protocol.http1 import MAX_INFORMS
    from gluegun_actors.errors import RemoteProtocolError
    from gluegun_actors.events import GunDown, GunInform
    from gluegun_actors.mailbox import Mailbox
    from gluegun_actors.testing import Expect, Hold, Send

    server = scripted_server([[Expect(), Send(_CONTINUE * 10_000), Hold()]])
    owner = Mailbox("flood")
    options = connection.options(retry=0, owner=owner)
    conn = connection.open("127.0.0.1", server.port, options)
    try:
        connection.await_up(conn, 5000)
        http.get(conn, "/", reply_to=owner)
        informs = 0
        for _ in range(MAX_INFORMS + 2):
            message = owner.receive(lambda m: isinstance(m, GunInform | GunDown), 5000)
            if isinstance(message, GunDown):
                break
            informs += 1
        assert informs == MAX_INFORMS
        assert isinstance(message, GunDown)
        assert isinstance(message.reason, RemoteProtocolError)
        assert "informational (1xx)" in str(message.reason)
    finally:
        connection.close(conn)


def test_1xx_responses_spend_flow_credits(scripted_server) -> None:
    from gluegun_actors import connection, http
    from gluegun_actors.events import GunInform, GunResponse
    from gluegun_actors.mailbox import Mailbox
    from gluegun_actors.testing import Expect, Hold, Send, Sleep

    final = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    paced: list[Any] = []
    for _ in range(8):  # one read each: credits are checked between reads
        paced += [Send(_CONTINUE), Sleep(30)]
    server = scripted_server([[Expect(), *paced, Send(final), Hold()]])
    owner = Mailbox("flow")
    conn = connection.open("127.0.0.1", server.port, connection.options(owner=owner, flow=3))
    try:
        connection.await_up(conn, 5000)
        stream = http.get(conn, "/", reply_to=owner)
        for _ in range(3):
            assert isinstance(owner.receive(lambda m: isinstance(m, GunInform), 5000), GunInform)
        with pytest.raises(TimeoutError):  # no credit left: the rest waits in the socket
            owner.receive(lambda m: isinstance(m, GunInform | GunResponse), 300)
        connection.update_flow(conn, stream, 100)
        kinds = [type(owner.receive(lambda m: True, 5000)).__name__ for _ in range(6)]
        assert kinds == ["GunInform"] * 5 + ["GunResponse"]
    finally:
        connection.close(conn)


# -- a property: whatever the fragmentation, reassembly stays within a small factor -------


@settings(max_examples=examples(25), deadline=None, database=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=2, max_size=400),
    read=st.integers(1, 4096),
    compress=st.booleans(),
)
def test_reassembly_memory_stays_within_a_factor_of_the_message(
    sizes: list[int], read: int, compress: bool
) -> None:
    import tracemalloc
    import zlib

    from gluegun_actors._protocol.ws import Binary, WsConnection
    from gluegun_actors._protocol.ws_deflate import DeflateParams
    from gluegun_actors._protocol.ws_handshake import Negotiated

    message = bytes(range(256)) * (sum(sizes) // 256 + 1)
    message = message[: sum(sizes)]
    payload = message
    if compress:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    cuts = [0]
    for size in sizes:
        cuts.append(min(len(payload), cuts[-1] + size))
    cuts[-1] = len(payload)
    wire = bytearray()
    for index, (start, stop) in enumerate(itertools.pairwise(cuts)):
        first = (0x2 | (0x40 if compress else 0)) if index == 0 else 0x0
        fin = 0x80 if index == len(cuts) - 2 else 0
        wire += _frame_head(fin | first, stop - start) + payload[start:stop]
    client = WsConnection(
        Negotiated(None, DeflateParams() if compress else None), max_message_size=1 << 20
    )
    tracemalloc.start()
    events = []
    for at in range(0, len(wire), read):
        events += client.receive_data(bytes(wire[at : at + read]))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert events == [Binary(message)]
    # The message, its buffer, one read's worth of pieces, and fixed costs (a zlib
    # inflater holds its 32 KiB window and state).
    assert peak < 4 * len(message) + 40 * read + 256 * 1024, (peak, len(message), read)


def _frame_head(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


# -- a peer that floods pings and never reads ------------------------------------------

_FLOOD_CLIENT = (
    _RSS
    + """
from gluegun_actors import connection, websocket
conn = connection.open("127.0.0.1", int(sys.argv[1]), connection.options(retry=0))
connection.await_up(conn, 5000)
stream = websocket.upgrade(conn, "/")
websocket.await_upgrade(conn, stream, 5000)
import gc
from gluegun_actors._io.transport import Transport
transport = next(o for o in gc.get_objects() if isinstance(o, Transport))  # read-only
base, peak, parked = rss(), 0, 0
ended = threading.Event()
def sample():
    global peak, parked
    while not ended.is_set():
        peak = max(peak, rss())
        parked = max(parked, transport.pending_write_bytes)
        time.sleep(0.005)
sampler = threading.Thread(target=sample)
sampler.start()
print("up", flush=True)
sys.stdin.readline()  # the flood has ended
ended.set()
sampler.join()
print(json.dumps({"grew": peak - base, "parked": parked}), flush=True)
connection.close(conn)
"""
)


def _ping_flood_server(listener: socket.socket, seconds: float, sent: list[int]) -> None:
    """Accept one client, upgrade it, then send 125-byte pings and never read."""
    from wsproto.utilities import generate_accept_token

    peer, _ = listener.accept()
    with peer:
        head = _read_head(peer)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        peer.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
            b"connection: upgrade\r\nsec-websocket-accept: "
            + generate_accept_token(key)
            + b"\r\n\r\n"
        )
        ping = bytes((0x89, 125)) + bytes(125)
        burst = ping * 512
        peer.settimeout(3.0)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                peer.sendall(burst)
                sent[0] += 512
        except (TimeoutError, OSError):
            pass  # the client stopped reading: its backlog bound holds
        time.sleep(0.2)


def test_a_ping_flood_from_a_peer_that_never_reads_is_held_back_by_tcp() -> None:
    listener, server, sent = _hostile(_ping_flood_server, 5.0, rcvbuf=65536)
    port = listener.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-c", _FLOOD_CLIENT, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=_HERE,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "up"
        server.join(20)
        child.stdin.write("\n")
        child.stdin.flush()
        result = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait(10)
        listener.close()
        server.join(10)
    print("ping flood", {"pings_sent": sent[0], **result})
    # Without the bound every pong waited in memory: 131 bytes each, 100+ MB in seconds.
    assert int(result["parked"]) < 3 << 20, (sent[0], result)
    assert int(result["grew"]) < 24 << 20, (sent[0], result)


# -- a slow owner: the mailbox high-water mark -----------------------------------------

_CHUNK = b"%x\r\n%s\r\n" % (262144, b"x" * 262144)


def _endless_body_server(listener: socket.socket, seconds: float, sent: list[int]) -> None:
    """Answer every request with a chunked body that never ends, as fast as TCP allows,
    until `seconds` have passed or the client has not read for 2 s."""
    peer, _ = listener.accept()
    with peer:
        _read_head(peer)
        peer.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        burst = _CHUNK * 4
        peer.settimeout(2.0)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                peer.sendall(burst)
                sent[0] += len(burst)
        except (TimeoutError, OSError):
            pass


def _serve(seconds: float) -> tuple[socket.socket, threading.Thread, list[int]]:
    return _hostile(_endless_body_server, seconds)


def test_an_owner_that_does_not_read_holds_the_server_back() -> None:
    from gluegun_actors import connection, http
    from gluegun_actors.events import GunData
    from gluegun_actors.mailbox import Mailbox

    listener, server, sent = _serve(30.0)
    owner = Mailbox("slow", high_water_messages=40, high_water_bytes=1 << 30)
    conn = connection.open("127.0.0.1", listener.getsockname()[1], connection.options(owner=owner))
    try:
        connection.await_up(conn, 5000)
        http.get(conn, "/", reply_to=owner)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the server is held back
            before = sent[0]
            time.sleep(0.5)
            if sent[0] == before and len(owner) > 40:
                break
        queued = len(owner)
        assert 40 < queued < 40 + 64, queued  # the mark, plus what one read gave
        time.sleep(0.3)
        assert len(owner) == queued  # nothing more arrives while nobody reads
        for _ in range(queued - 10):  # drain to below half: reading resumes
            owner.receive(GunData, 1000)
        assert wait_until(lambda: sent[0] > before)
    finally:
        connection.close(conn)
        listener.close()
        server.join(10)


def test_a_selective_receive_is_not_deadlocked_by_the_mark(embedded_server) -> None:
    from gluegun_actors import connection, http
    from gluegun_actors.events import GunResponse
    from gluegun_actors.mailbox import Mailbox

    listener, server, _ = _serve(30.0)
    owner = Mailbox("selective", high_water_messages=20)
    flood = connection.open("127.0.0.1", listener.getsockname()[1], connection.options(owner=owner))
    other = connection.open("127.0.0.1", embedded_server.port, connection.options(owner=owner))
    try:
        connection.await_up(flood, 5000)
        http.get(flood, "/", reply_to=owner)
        assert wait_until(lambda: len(owner) > 20)
        connection.await_up(other, 5000)  # skips the flood's GunData
        stream = http.get(other, "/", reply_to=owner)
        response = owner.receive(lambda m: isinstance(m, GunResponse) and m.stream == stream, 5000)
        assert response.status == 200
    finally:
        connection.close(flood)
        connection.close(other)
        listener.close()
        server.join(10)


def test_a_slow_pykka_actor_owner_is_held_back_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import pykka

    from gluegun_actors import connection, http
    from gluegun_actors._connection import destination

    monkeypatch.setattr(destination, "HIGH_WATER_MESSAGES", 30)
    gate = threading.Event()

    class Slow(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            gate.wait(20)

    actor = Slow.start()
    listener, server, sent = _serve(30.0)
    conn = connection.open(
        "127.0.0.1", listener.getsockname()[1], connection.options(owner=actor, retry=0)
    )
    try:
        http.get(conn, "/", reply_to=actor)
        assert wait_until(lambda: actor.actor_inbox.qsize() > 30)
        time.sleep(0.5)
        held = actor.actor_inbox.qsize()
        time.sleep(0.5)
        assert actor.actor_inbox.qsize() == held < 30 + 64
        before = sent[0]
        gate.set()  # the actor catches up: the connection reads on
        assert wait_until(lambda: sent[0] > before)
    finally:
        gate.set()
        connection.close(conn)
        actor.stop()
        listener.close()
        server.join(10)


_SLOW_OWNER_CLIENT = (
    _RSS
    + """
from gluegun_actors import connection, http
conn = connection.open("127.0.0.1", int(sys.argv[1]), connection.options(retry=0))
connection.await_up(conn, 5000)
base = rss()
http.get(conn, "/")
peak = 0
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    peak = max(peak, rss())
    time.sleep(0.01)
print(json.dumps({"grew": peak - base}), flush=True)
"""
)


def test_an_endless_body_to_an_owner_that_never_reads_stays_within_the_mark() -> None:
    listener, server, sent = _serve(30.0)
    try:
        result = _run_child(_SLOW_OWNER_CLIENT, str(listener.getsockname()[1]), "3")
    finally:
        listener.close()
        server.join(10)
    print("slow owner", {"server_sent": sent[0], **result})
    # Without the mark: hundreds of MB in 3 s. With it: 16 MiB of payload plus overheads.
    assert int(result["grew"]) < 48 << 20, (sent[0], result)


# -- a header block that never ends ------------------------------------------------------

_ENDLESS_HEAD_CLIENT = (
    _RSS
    + """
from gluegun_actors import connection, http
from gluegun_actors.errors import GluegunError
conn = connection.open("127.0.0.1", int(sys.argv[1]), connection.options(retry=0))
connection.await_up(conn, 5000)
base = rss()
stream = http.get(conn, "/")
try:
    http.await_response(conn, stream, 20000)
    error = None
except GluegunError as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"grew": rss() - base, "error": error}), flush=True)
"""
)


def _endless_head_server(listener: socket.socket, sent: list[int]) -> None:
    peer, _ = listener.accept()
    with peer:
        _read_head(peer)
        peer.sendall(b"HTTP/1.1 200 OK\r\nx-long: ")
        peer.settimeout(2.0)
        piece = b"a" * 65536
        try:
            for _ in range(800):  # 50 MiB of one header line, at most
                peer.sendall(piece)
                sent[0] += len(piece)
        except (TimeoutError, OSError):
            pass


def test_a_header_block_that_never_ends_fails_at_its_bound() -> None:
    listener, server, sent = _hostile(_endless_head_server)
    try:
        result = _run_child(_ENDLESS_HEAD_CLIENT, str(listener.getsockname()[1]))
    finally:
        listener.close()
        server.join(10)
    print("endless head", {"server_sent": sent[0], **result})
    assert result["error"] is not None and "max_header_block_size" in result["error"]
    assert int(result["grew"]) < 8 << 20, result
