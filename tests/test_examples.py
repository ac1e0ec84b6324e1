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
