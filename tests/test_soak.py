"""The soak's short version: 100 connections through the manager, 3 server restarts
(clean, killed, clean), nothing lost, nothing duplicated, nothing leaked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"
ARGS = ["--connections", "100", "--minutes", "2", "--restarts", "3", "--interval", "1", "2"]
ARGS += ["--rate", "5", "--seed", "1"]


@pytest.mark.timeout(180)
def test_a_fleet_loses_nothing_across_three_server_restarts() -> None:
    done = subprocess.run(
        [sys.executable, str(SOAK), *ARGS],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert summary["restarts"] == 3
    assert summary["reconnected"] == 300  # every connection came back after every restart
    assert summary["acknowledged"] > 0 and summary["sent"] >= summary["acknowledged"]
    assert summary["received"] == summary["sent"] > 0
    assert (summary["lost"], summary["duplicated"]) == (0, 0)
    assert (summary["threads_leaked"], summary["fds_leaked"]) == (0, 0)
