"""Shared fixtures: the embedded test server, third-party peers, scripted servers."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from feed_server import FeedServer
from peers import uvicorn_server, websockets_server
from polling import wait_until

from gluegun_actors.testing import EmbeddedServer, ScriptedServer, Step


@pytest.fixture
def embedded_server() -> Iterator[EmbeddedServer]:
    """A fresh EmbeddedServer per test, stopped (threads joined) afterwards."""
    with EmbeddedServer() as server:
        yield server


@pytest.fixture(scope="module")
def uvicorn_port() -> Iterator[int]:
    """The port of a uvicorn (h11) peer shared by a test module."""
    with uvicorn_server() as port:
        yield port


@pytest.fixture(scope="module")
def websockets_port() -> Iterator[int]:
    """The port of a websockets echo peer with default options, shared by a test module."""
    with websockets_server() as port:
        yield port


@pytest.fixture
def websockets_server_factory() -> Iterator[Callable[..., int]]:
    """Start websockets peers with options (`subprotocols=`, `compression=`, `max_size=`).

    Returns the port; every peer started is stopped after the test.
    """
    with ExitStack() as stack:

        def start(**options: Any) -> int:
            return stack.enter_context(websockets_server(**options))

        yield start


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    """A restartable `websockets` feed server in its own process (tests/feed_server.py)."""
    server = FeedServer()
    try:
        yield server
    finally:
        if server.process is not None:
            server.stop(signal.SIGKILL)


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., ScriptedServer]]:
    """Start ScriptedServers from scripts (keyword options pass through); all stopped after."""
    with ExitStack() as stack:

        def start(scripts: Sequence[Sequence[Step]], **options: Any) -> ScriptedServer:
            return stack.enter_context(ScriptedServer(scripts, **options))

        yield start


@pytest.fixture(autouse=True)
def isolated_mailbox_and_no_leaked_connections() -> Iterator[None]:
    """Each test starts with an empty mailbox and must close every connection it opens."""

    import pykka

    from gluegun_actors import mailbox
    from gluegun_actors._connection.actor import ConnectionActor

    mailbox.current().flush()
    yield
    wait_until(lambda: not pykka.ActorRegistry.get_by_class(ConnectionActor), 3.0)
    leaked = pykka.ActorRegistry.get_by_class(ConnectionActor)
    for ref in leaked:
        ref.stop()
    mailbox.current().flush()
    assert not leaked, f"the test left {len(leaked)} connection actor(s) running"


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (skips without `openssl`)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not on PATH")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key
