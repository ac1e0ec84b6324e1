"""`gluegun ws URL`: lines of stdin out, frames in, and how a session ends.

Each test runs the real command in a subprocess, with piped stdin or on a
pseudo-terminal, against the embedded server, the `websockets` package's server, the
restartable feed server (tests/feed_server.py) or a scripted peer.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Callable
from datetime import datetime

import pytest
from cli_process import Live, Terminal, closed_port, command, run
from feed_server import FeedServer

from gluegun_actors.testing import Close as CloseSocket
from gluegun_actors.testing import EmbeddedServer, Expect, Hold, ScriptedServer, Send, WsAccept

TIMESTAMP = r"\d\d:\d\d:\d\d\.\d\d\d"
SERVER_CLOSE_1000 = b"\x88\x02\x03\xe8"
"""An unmasked close frame with code 1000, as a server sends it."""
NO_PROMPT_TOOLKIT = (
    "import sys; sys.modules['prompt_toolkit'] = None; "  # as if the extra were not installed
    "from gluegun_actors._cli import main; sys.exit(main())"
)


def received(stdout: str) -> list[str]:
    """What the text output says was received, without the timestamps."""
    lines = stdout.splitlines()
    assert all(re.match(rf"{TIMESTAMP} < ", line) for line in lines), lines
    return [line.split(" ", 2)[2] for line in lines]


# -- piped stdin --------------------------------------------------------------------------


def test_lines_are_sent_and_echoes_printed_then_eof_closes(
    embedded_server: EmbeddedServer,
) -> None:
    done = run("ws", embedded_server.ws_url("/echo"), stdin="one\ntwo words\n\nlast")
    assert done.returncode == 0, done.stderr
    assert received(done.stdout) == ["one", "two words", "", "last", "close 1000"]
    assert done.stderr.splitlines() == [
        f"gluegun: connected to {embedded_server.ws_url('/echo')}; Ctrl-D closes, Ctrl-C quits"
    ]


def test_against_the_websockets_server(websockets_port: int) -> None:
    # The websockets server answers a close at once, maybe before its handler has sent
    # the echo of the message just before it: each echo is awaited before the EOF.
    with Live("ws", f"ws://127.0.0.1:{websockets_port}/") as cli:
        cli.write("héllo\n")
        assert received(cli.line()) == ["héllo"]
        cli.close_stdin()
        assert received(cli.line()) == ["close 1000"]
        assert cli.wait() == 0


def test_json_prints_one_object_per_event(websockets_port: int) -> None:
    url = f"ws://127.0.0.1:{websockets_port}/fragments"
    with Live("ws", "--json", url) as cli:
        events = [json.loads(cli.line()) for _ in range(2)]
        cli.write("ping\n")
        events.append(json.loads(cli.line()))
        cli.close_stdin()
        events.append(json.loads(cli.line()))
        assert cli.wait() == 0
        assert cli.rest(stderr=True) == []
    assert [event["type"] for event in events] == ["open", "text", "text", "close"]
    assert events[0]["url"] == url
    assert events[1]["text"] == "fragmented"  # three fragments, one message
    assert events[2]["text"] == "ping"
    assert (events[3]["code"], events[3]["reason"]) == (1000, "")
    for event in events:
        assert datetime.fromisoformat(event["time"]).tzinfo is not None


def test_subprotocol_and_compression_are_offered(
    websockets_server_factory: Callable[..., int],
) -> None:
    port = websockets_server_factory(subprotocols=["chat"], compression="deflate")
    args = ["ws", "--json", "--subprotocol", "other", "--subprotocol", "chat", "--compress"]
    with Live(*args, f"ws://127.0.0.1:{port}/") as cli:
        opened = json.loads(cli.line())
        assert opened["subprotocol"] == "chat"
        assert opened["extensions"].startswith("permessage-deflate")
        cli.write("squeeze " * 100 + "\n")
        assert json.loads(cli.line())["text"] == "squeeze " * 100
        cli.close_stdin()
        assert cli.wait() == 0


def test_without_compress_no_extension_is_negotiated(websockets_port: int) -> None:
    done = run("ws", "--json", f"ws://127.0.0.1:{websockets_port}/", stdin="")
    assert done.returncode == 0, done.stderr
    opened = json.loads(done.stdout.splitlines()[0])
    assert (opened["subprotocol"], opened["extensions"]) == (None, None)


def test_headers_are_sent_with_the_upgrade() -> None:
    script = [Expect(), WsAccept(), Send(SERVER_CLOSE_1000), CloseSocket()]
    with (
        ScriptedServer([script]) as server,
        Live(
            "ws", "-H", "X-Token: abc", "-H", "origin: http://example.test", server_url(server)
        ) as cli,
    ):
        assert cli.wait() == 0
        assert received("\n".join(cli.rest())) == ["close 1000"]
    head = server.received[0].lower()
    assert b"\r\nx-token: abc\r\n" in head
    assert b"\r\norigin: http://example.test\r\n" in head


def server_url(server: ScriptedServer) -> str:
    return f"ws://127.0.0.1:{server.port}/"


# -- how a session ends -------------------------------------------------------------------


@pytest.mark.parametrize(("code", "exit_code"), [(1000, 0), (1001, 0), (3333, 1)])
def test_the_peers_close_ends_the_session(
    embedded_server: EmbeddedServer, code: int, exit_code: int
) -> None:
    url = embedded_server.ws_url(f"/ws/close?code={code}&reason=bye")
    with Live("ws", url) as cli:  # stdin stays open: the peer closes first
        assert received(cli.line()) == [f"close {code} 'bye'"]
        assert cli.wait() == exit_code


def test_eof_waits_for_the_peers_close_then_fails_without_it() -> None:
    with ScriptedServer([[Expect(), WsAccept(), Hold()]]) as server:
        done = run("ws", "--closing-timeout", "300", server_url(server), stdin="")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == ("gluegun: no close frame from the peer within 300 ms")
    assert "Traceback" not in done.stderr


def test_ctrl_c_sends_close_1001_and_exits_130(embedded_server: EmbeddedServer) -> None:
    with Live("ws", embedded_server.ws_url("/echo")) as cli:
        cli.line_containing("connected to", stderr=True)
        cli.write("before\n")
        assert received(cli.line()) == ["before"]
        cli.signal(signal.SIGINT)
        assert cli.wait() == 130
        assert received(cli.line()) == ["close 1001"]  # the server's answer to our 1001
        assert "Traceback" not in "\n".join(cli.rest(stderr=True))


def test_a_lost_connection_ends_the_session_with_1(feed: FeedServer) -> None:
    feed.start("A", 1)
    with Live("ws", f"ws://127.0.0.1:{feed.port}/") as cli:
        assert received(cli.line()) == ["A:0"]
        feed.stop(signal.SIGKILL)
        assert cli.wait() == 1
        assert cli.rest(stderr=True)[-1].startswith("gluegun: connection lost: ")


def test_reconnect_survives_a_server_restart(feed: FeedServer) -> None:
    feed.start("A", 1)
    url = f"ws://127.0.0.1:{feed.port}/"
    with Live("ws", "--reconnect", "--json", "--retry-delay", "100", url) as cli:
        events = [json.loads(cli.line()) for _ in range(2)]
        assert [event["type"] for event in events] == ["open", "text"]
        assert events[1]["text"] == "A:0"

        feed.stop(signal.SIGTERM)  # close 1001 to every client, then the port is closed
        closed = json.loads(cli.line())
        assert (closed["type"], closed["code"]) == ("close", 1001)
        assert json.loads(cli.line())["type"] == "down"
        feed.start("B", 1)
        upgraded = json.loads(cli.line())
        assert upgraded["type"] == "upgrade"
        assert json.loads(cli.line())["text"] == "B:0"

        cli.write("still here\n")
        assert json.loads(cli.line())["text"] == "still here"
        cli.close_stdin()
        assert json.loads(cli.line())["type"] == "close"
        assert cli.wait() == 0


def test_connect_failure_of_an_upgrade_exits_3(embedded_server: EmbeddedServer) -> None:
    done = run("ws", embedded_server.ws_url("/ws/reject?status=403"))
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"gluegun: cannot connect to {embedded_server.ws_url('/ws/reject?status=403')}: "
        "the server refused the WebSocket upgrade with status 403"
    ]


def test_an_unanswered_upgrade_times_out_exit_3() -> None:
    with ScriptedServer([[Expect(), Hold()]]) as server:
        done = run("ws", "--connect-timeout", "300", server_url(server))
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"gluegun: cannot connect to {server_url(server)}: timed out"
    ]


# -- on a terminal ------------------------------------------------------------------------


def test_interactive_prompt_sends_typed_lines_and_ctrl_d_closes(
    embedded_server: EmbeddedServer,
) -> None:
    pytest.importorskip("prompt_toolkit")
    args = command("ws", embedded_server.ws_url("/echo"))
    with Terminal(args, PROMPT_TOOLKIT_NO_CPR="1") as terminal:
        terminal.read_prompt(after="Ctrl-C quits")
        terminal.type("typed at the prompt\r")
        screen = terminal.read_until("< typed at the prompt")
        assert re.search(rf"{TIMESTAMP} < typed at the prompt", screen)
        # The prompt is drawn again below the frame: only then is Ctrl-D a key for it.
        terminal.read_prompt(after="< typed at the prompt")
        terminal.type("\x04")  # Ctrl-D
        assert terminal.wait() == 0
        assert "< close 1000" in terminal.output.decode()


def test_interactive_ctrl_c_at_the_prompt_exits_130(embedded_server: EmbeddedServer) -> None:
    pytest.importorskip("prompt_toolkit")
    args = command("ws", embedded_server.ws_url("/echo"))
    with Terminal(args, PROMPT_TOOLKIT_NO_CPR="1") as terminal:
        terminal.read_prompt(after="Ctrl-C quits")
        terminal.type("\x03")  # Ctrl-C: a key at the prompt, not a signal
        assert terminal.wait() == 130
        assert "< close 1001" in terminal.output.decode()
        assert "Traceback" not in terminal.output.decode()


def test_interactive_without_prompt_toolkit_reads_plain_lines(
    embedded_server: EmbeddedServer,
) -> None:
    args = [sys.executable, "-c", NO_PROMPT_TOOLKIT, "ws", embedded_server.ws_url("/echo")]
    with Terminal(args) as terminal:
        terminal.read_until("Ctrl-C quits")
        terminal.type("plain line\n")
        terminal.read_until("< plain line")
        terminal.type("\x04")  # Ctrl-D at the start of a line: end of input
        assert terminal.wait() == 0
        assert "< close 1000" in terminal.output.decode()


def test_progress_line_while_retrying_is_erased_before_the_failure() -> None:
    port = closed_port()
    url = f"ws://127.0.0.1:{port}/"
    args = command("ws", url, "--retry", "2", "--retry-delay", "100")
    with Terminal(args) as terminal:
        assert terminal.wait() == 3
    screen = terminal.output.decode()
    attempts = re.findall(rf"\rconnecting to {re.escape(url)} \(attempt (\d) of 3\)", screen)
    assert attempts == ["1", "2", "3"]
    failure = f"gluegun: cannot connect to {url}: connection refused"
    before, _, after = screen.rpartition(failure)
    assert re.search(r"\r +\r$", before), "the progress line is erased first"
    assert after.startswith(" (ConnectionRefusedError")
    assert after.count("\n") == 1


def test_no_progress_line_on_a_pipe() -> None:
    done = run("ws", f"ws://127.0.0.1:{closed_port()}/", "--retry", "2")
    assert done.returncode == 3
    assert "attempt" not in done.stderr
    assert "\r" not in done.stderr
