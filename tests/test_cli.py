"""The `gluegun` command line: --version, help, serve, http, demo, and connect failures.

Every test runs the real command in a subprocess (`python -m gluegun_actors`, or the
console script installed next to the interpreter) against a real server on 127.0.0.1.
The WebSocket command is in test_cli_ws.py.
"""

from __future__ import annotations

import base64
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import SCRIPT, Live, closed_port, run
from peers import HELLO, server_tls_context, stdlib_server

import gluegun_actors
from gluegun_actors import connection, http, websocket
from gluegun_actors.message import Text
from gluegun_actors.testing import Close, EmbeddedServer, Expect, ScriptedServer, Send

TIMESTAMP = r"\d\d:\d\d:\d\d\.\d\d\d"


def body_lines(stdout: str) -> list[str]:
    """The body pieces `http` printed: the lines that are neither messages nor headers."""
    return [
        line
        for line in stdout.splitlines()
        if not re.match(TIMESTAMP, line) and not line.startswith("  ")
    ]


@pytest.mark.parametrize("script", [False, True], ids=["python-m", "console-script"])
def test_version_prints_the_package_version(script: bool) -> None:
    assert SCRIPT.exists() or not script, "pip install -e . puts the gluegun script there"
    done = run("--version", script=script)
    assert done.returncode == 0
    assert done.stdout.startswith(f"gluegun {gluegun_actors.__version__} ")


def test_help_lists_the_commands_and_the_exit_codes() -> None:
    done = run("--help")
    assert done.returncode == 0
    for command in ("demo", "ws", "http", "serve"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.MULTILINE), command
    codes = done.stdout[done.stdout.index("exit codes:") :]
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^\s+{code}\s", codes, re.MULTILINE), code


def test_a_command_is_required() -> None:
    done = run()
    assert done.returncode == 2
    assert "usage: gluegun" in done.stderr


# -- serve ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_its_urls_serves_them_and_stops_cleanly(stop: signal.Signals) -> None:
    with Live("serve") as server:
        http_url, ws_url = server.line(), server.line()
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/", http_url)
        assert match, http_url
        assert ws_url == f"ws://127.0.0.1:{match[1]}/echo"

        conn = connection.open_url(http_url, connection.options(retry=0))
        try:
            connection.await_up(conn, 5000)
            stream = http.get(conn, "/")
            assert http.await_response(conn, stream, 5000).status == 200
            assert http.await_body(conn, stream, 5000) == b"hello from gluegun_actors"
        finally:
            connection.close(conn)

        def echo(socket: websocket.Socket) -> object:
            websocket.send_text(socket, "served")
            return websocket.receive_app_frame(socket)

        assert websocket.with_socket(ws_url, callback=echo) == Text("served")
        server.signal(stop)
        assert server.wait() == 0


def test_serve_listens_on_the_port_asked_for() -> None:
    port = closed_port()
    with Live("serve", "--port", str(port)) as server:
        assert server.line() == f"http://127.0.0.1:{port}/"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


# -- http -----------------------------------------------------------------------------------


def test_http_get_prints_each_message_as_it_arrives(embedded_server: EmbeddedServer) -> None:
    done = run("http", embedded_server.url("/stream?chunks=3&size=4&delay_ms=100"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(rf"{TIMESTAMP} GunUp http 127\.0\.0\.1:\d+", lines[0])
    assert re.fullmatch(rf"{TIMESTAMP} GunResponse 200 OK", lines[1])
    assert "  transfer-encoding: chunked" in lines
    pieces = [line for line in lines if " GunData " in line]
    assert len(pieces) >= 3, lines  # 100 ms apart: each piece is its own message
    assert pieces[-1].endswith(", fin")
    assert done.stderr == ""


def test_http_data_and_headers_make_a_post(embedded_server: EmbeddedServer) -> None:
    done = run("http", "-d", "ping", "-H", "content-type: text/plain", embedded_server.url("/echo"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ping"
    assert embedded_server.requests[-1] == ("POST", "/echo")


def test_http_headers_reach_the_server(embedded_server: EmbeddedServer) -> None:
    done = run("http", "-H", "X-Cli: yes", "-H", "x-other:  two ", embedded_server.url("/headers"))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["x-cli"] == "yes"
    assert seen["x-other"] == "two"
    assert seen["user-agent"] == f"gluegun/{gluegun_actors.__version__}"


def test_http_body_from_a_file_and_from_stdin(
    embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(b"from a file")
    done = run("http", "PUT", embedded_server.url("/echo"), "-d", f"@{body}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "from a file"
    done = run("http", "patch", embedded_server.url("/echo"), "-d", "-", stdin="from stdin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "from stdin"
    assert embedded_server.requests[-2:] == [("PUT", "/echo"), ("PATCH", "/echo")]


def test_http_json_prints_one_object_per_message(embedded_server: EmbeddedServer) -> None:
    done = run("http", "--json", embedded_server.url("/trailers"), "-H", "te: trailers")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [event["type"] for event in events]
    assert kinds[:2] == ["up", "response"]
    assert kinds[-1] == "trailers"
    assert set(kinds[2:-1]) == {"data"}
    assert events[1]["status"] == 200
    body = b"".join(base64.b64decode(event["data"]) for event in events if event["type"] == "data")
    assert body == b"chunk0chunk1chunk2"
    assert ["x-checksum", str(len(body))] in events[-1]["headers"]


def test_http_against_an_independent_server(uvicorn_port: int) -> None:
    done = run("http", f"http://127.0.0.1:{uvicorn_port}/chunked?n=2")
    assert done.returncode == 0, done.stderr
    assert "".join(body_lines(done.stdout)) == "chunk0chunk1"


def test_http_prints_an_informational_response_before_the_final_one(
    embedded_server: EmbeddedServer,
) -> None:
    done = run("http", embedded_server.url("/inform"))
    assert done.returncode == 0, done.stderr
    kinds = [line.split()[1] for line in done.stdout.splitlines() if re.match(TIMESTAMP, line)]
    assert kinds == ["GunUp", "GunInform", "GunResponse", "GunData"]
    assert re.search(rf"^{TIMESTAMP} GunInform 103 Early Hints$", done.stdout, re.MULTILINE)
    assert body_lines(done.stdout) == ["informed"]


def test_http_status_of_a_complete_response_is_not_a_failure(
    embedded_server: EmbeddedServer,
) -> None:
    done = run("http", "HEAD", embedded_server.url("/status/404"))
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^{TIMESTAMP} GunResponse 404 Not Found, fin$", done.stdout, re.MULTILINE)


def test_http_response_cut_short_exits_1_with_one_line() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"
    with ScriptedServer([[Expect(), Send(head), Close()]]) as server:
        done = run("http", "--retry", "0", f"http://127.0.0.1:{server.port}/")
    assert done.returncode == 1
    assert "GunData 3 bytes" in done.stdout
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("gluegun: the request failed: ")


# -- connect failures and usage errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "scheme", "script"),
    [
        (["ws"], "ws", False),
        (["http"], "http", False),
        (["demo"], "http", False),
        (["ws"], "ws", True),
    ],
    ids=["ws", "http", "demo", "ws-console-script"],
)
def test_connect_failure_prints_one_line_and_exits_3(
    words: list[str], scheme: str, script: bool
) -> None:
    port = closed_port()
    url = f"{scheme}://127.0.0.1:{port}/"
    done = run(*words, url, "--retry", "1", script=script)
    assert done.returncode == 3
    assert done.stderr.endswith("\n")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(
        f"gluegun: cannot connect to {url}: connection refused (ConnectionRefusedError"
    )
    assert done.stdout == ""


def test_verbose_logs_the_connection_events_before_the_one_line() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    done = run("-vv", "http", "--retry", "0", url)
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    assert any("gluegun_actors.events" in line and "connect_start" in line for line in lines)
    assert lines[-1].startswith(f"gluegun: cannot connect to {url}: connection refused")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["http", "ftp://example.test/"], "scheme 'ftp' is not supported"),
        (["http", "ws://127.0.0.1:1/"], "http needs an http:// or https:// URL"),
        (["ws", "http://127.0.0.1:1/"], "ws needs a ws:// or wss:// URL"),
        (["ws", "ws://user:secret@127.0.0.1:1/"], "carries credentials"),
        (["http", "-H", "no colon", "http://127.0.0.1:1/"], "a header is 'Name: value'"),
        (["http", "http://127.0.0.1:1/", "-d", "@/nonexistent/file"], "cannot read"),
        (["ws", "--retry", "-1", "ws://127.0.0.1:1/"], "expected a whole number"),
    ],
)
def test_bad_arguments_are_usage_errors_exit_2(args: list[str], said: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert said in done.stderr
    assert "secret" not in done.stderr
    assert "Traceback" not in done.stderr


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def https_url(certificate: tuple[Path, Path]) -> Iterator[str]:
    """An https server (the standard library's) with a certificate no system trusts."""
    with stdlib_server(server_tls_context(certificate)) as server:
        yield f"https://127.0.0.1:{server.server_port}/"


def test_https_with_an_untrusted_certificate_cannot_connect(https_url: str) -> None:
    done = run("http", "--retry", "0", https_url)
    assert done.returncode == 3
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(
        f"gluegun: cannot connect to {https_url}: TLS certificate verification failed: "
    )


def test_https_with_cacert_trusts_that_certificate(
    https_url: str, certificate: tuple[Path, Path]
) -> None:
    done = run("http", "--cacert", str(certificate[0]), https_url)
    assert done.returncode == 0, done.stderr
    assert body_lines(done.stdout) == [HELLO.decode()]


# -- demo -----------------------------------------------------------------------------------


def test_demo_gets_an_http_url(embedded_server: EmbeddedServer) -> None:
    done = run("demo", embedded_server.url("/"))
    assert done.returncode == 0, done.stderr
    assert "connection up, protocol 'http'" in done.stdout
    assert "b'hello from gluegun_actors'" in done.stdout


def test_demo_echoes_one_message_on_a_ws_url(websockets_port: int) -> None:
    done = run("demo", f"ws://127.0.0.1:{websockets_port}/")
    assert done.returncode == 0, done.stderr
    assert "reply                  Text(text='hello from gluegun_actors')" in done.stdout
