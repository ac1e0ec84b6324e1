"""The examples and the README demo run as written: each against the embedded server it
starts by default, and, where the example allows, against an independent server by URL."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gluegun_actors.testing import EmbeddedServer, pattern_bytes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT = 30
"""Seconds an example may run (each takes a few); below pytest-timeout's 60, so a hung
example fails with its own output."""


def _run(*args: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


SEED_FLOWS = ["websocket_echo.py", "websocket_echo_once.py", "websocket_low_level.py"]


@pytest.mark.parametrize("script", SEED_FLOWS)
def test_seed_example_echoes_hello(script: str) -> None:
    assert _run(str(EXAMPLES / script)).strip() == "hello"


@pytest.mark.parametrize("script", SEED_FLOWS)
def test_seed_example_echoes_hello_from_the_websockets_server_by_url(
    script: str, websockets_port: int
) -> None:
    url = f"ws://127.0.0.1:{websockets_port}/echo"
    assert _run(str(EXAMPLES / script), url).strip() == "hello"


def _data_lines(out: str) -> list[tuple[int, bytes]]:
    """The streamed download's `GunData` lines: (milliseconds, data)."""
    found = re.findall(r"^ +(\d+) ms  data b'([^']*)'", out, re.MULTILINE)
    return [(int(ms), data.encode()) for ms, data in found]


def test_http_requests_example_gets_posts_uploads_and_downloads_in_pieces() -> None:
    out = _run(str(EXAMPLES / "http_requests.py"))
    lines = out.splitlines()
    assert "GET / -> 200 b'hello from gluegun_actors'" in lines
    assert "POST /echo -> 200 b'hello'" in lines
    assert "streamed upload of 3 pieces -> 200 b'one two three'" in lines
    pieces = _data_lines(out)
    assert b"".join(data for _, data in pieces) == b"abcdefgh" * 4
    assert len(pieces) >= 2, "the pieces, 100 ms apart, arrive as separate GunData"
    assert pieces[-1][0] >= 250, "the last piece is read as it arrives, 300 ms after the first"
    assert lines[-1].endswith("(the last piece)")


def test_http_requests_example_works_against_uvicorn_by_url(uvicorn_port: int) -> None:
    out = _run(str(EXAMPLES / "http_requests.py"), f"http://127.0.0.1:{uvicorn_port}/chunked?n=3")
    lines = out.splitlines()
    assert "GET / -> 200 b'hello from gluegun_actors'" in lines
    assert "POST /echo -> 200 b'hello'" in lines
    assert "streamed upload of 3 pieces -> 200 b'one two three'" in lines
    assert b"".join(data for _, data in _data_lines(out)) == b"chunk0chunk1chunk2"


ACTOR_OWNER_MESSAGES = [
    "GunUp        http",
    "GunResponse  200",
    "GunData      b'hello from gluegun_actors'",
    "GunUpgrade   ('websocket',)",
    "GunWs        Text('hello')",
    "GunWs        Close(1000, 'done')",
    "GunDown      reason='normal'",
    "Down         reason='normal'",
    "done",
]


def _prefixes(out: str, expected: list[str]) -> list[str]:
    """Each output line cut to the length of the expected line at its place."""
    return [line[: len(want)] for line, want in zip(out.splitlines(), expected, strict=False)]


def test_actor_owner_example_matches_every_message_in_on_receive() -> None:
    out = _run(str(EXAMPLES / "actor_owner.py"))
    assert _prefixes(out, ACTOR_OWNER_MESSAGES) == ACTOR_OWNER_MESSAGES
    assert len(out.splitlines()) == len(ACTOR_OWNER_MESSAGES)


def test_actor_owner_example_takes_a_url(embedded_server: EmbeddedServer) -> None:
    out = _run(str(EXAMPLES / "actor_owner.py"), embedded_server.ws_url("/ws"))
    assert _prefixes(out, ACTOR_OWNER_MESSAGES) == ACTOR_OWNER_MESSAGES
    assert ("GET", "/") in embedded_server.requests


def _check_flow_control(out: str, total: int) -> None:
    lines = out.splitlines()
    assert lines[0].endswith("-> 200, with 4 credits")
    assert lines[2].endswith("reading is paused"), out
    spent = re.match(r"credits spent: (\d+) bytes read", lines[1])
    assert spent is not None, out
    assert 0 < int(spent.group(1)) < total, "the credits ran out before the body did"
    assert lines[-1].startswith(f"done: {total} bytes, after ")


def test_flow_control_example_pauses_reading_until_it_gives_credits() -> None:
    _check_flow_control(_run(str(EXAMPLES / "flow_control.py")), 16 * 1024 * 1024)


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _file_server(directory: Path) -> Iterator[int]:
    """The standard library's file server on 127.0.0.1, serving `directory`; its port."""
    handler = functools.partial(_QuietFiles, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="files", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_flow_control_example_holds_back_the_standard_library_file_server(
    tmp_path: Path,
) -> None:
    size = 8 * 1024 * 1024
    (tmp_path / "large.bin").write_bytes(pattern_bytes(size))
    with _file_server(tmp_path) as port:
        out = _run(str(EXAMPLES / "flow_control.py"), f"http://127.0.0.1:{port}/large.bin")
    _check_flow_control(out, size)


def test_demo_prints_what_the_owner_received() -> None:
    out = _run("-m", "gluegun_actors", "demo")
    assert "GunResponse(" in out
    assert "b'hello from gluegun_actors'" in out
    assert "echo ->                Text(text='hello')" in out
    assert "mailbox left           0" in out
    assert out.rstrip().endswith("done: server stopped, connections closed")


def test_supervised_fleet_echoes_one_broadcast_on_every_connection() -> None:
    out = _run(str(ROOT / "examples" / "supervised_fleet.py"), "--connections", "12")
    lines = out.splitlines()
    assert "  keys connected     12 / 12" in lines
    assert "  echoes received    12 (from 12 keys)" in lines
    assert "  reconnects         0, restarts 0" in lines
    assert lines[-1] == "done: 12 connections, 12 echoes, 0 left"


def test_always_connected_feed_rides_out_a_server_restart() -> None:
    out = _run(str(ROOT / "examples" / "always_connected_feed.py"))
    lines = out.splitlines()
    outage = lines[lines.index("server stops") :]
    kinds = [line.split()[0] for line in outage if line.startswith("  Gun")]
    assert kinds[:4] == ["GunWs", "GunDown", "GunUp", "GunUpgrade"]
    assert "  upgraded again on the same stream reference: True" in outage
    assert [line for line in lines if line.startswith("sent message")] == [
        f"sent message {n}, echo Text(text='message {n}')" for n in range(1, 11)
    ]
    assert lines[-1] == "done: 10 sent, 10 echoed, 1 reconnect"


def test_asyncio_relay_sends_every_upstream_message_to_every_client() -> None:
    out = _run(str(ROOT / "examples" / "asyncio_relay.py"))
    lines = out.splitlines()
    sent = [f"message {n}" for n in range(5)]
    assert [line for line in lines if line.startswith("relayed")] == [
        f"relayed {n + 1}/5 {text!r} -> 2 clients" for n, text in enumerate(sent)
    ]
    assert f"client 1 received {sent}" in lines
    assert f"client 2 received {sent}" in lines
    assert lines[-1] == "done: 5 messages relayed to 2 clients"
