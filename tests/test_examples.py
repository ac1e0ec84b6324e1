"""The Gluegun seed flows in examples/ and the README demo run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    "script", ["websocket_echo.py", "websocket_echo_once.py", "websocket_low_level.py"]
)
def test_seed_example_echoes_hello(script: str) -> None:
    assert _run(str(ROOT / "examples" / script)).strip() == "hello"


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
