"""The local Ray instance of these tests: its settings, and the processes it leaves."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CPUS = 2
"""The local instance's CPUs, as the CI machine has."""
SHARD_OPTIONS: dict[str, Any] = {"num_cpus": 0.5}
"""Ray options of the shards in tests: 0.5 CPU each, so that a third shard and an owner
actor fit beside two shards on two CPUs."""
EXIT_TIMEOUT = 15.0
"""Seconds Ray's processes may take to exit after `ray.shutdown()`."""


def ray_processes() -> dict[int, str]:
    """This process's descendants that belong to Ray (raylet, gcs_server, workers...)."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] == "Z":  # a zombie has exited: only its parent's wait is missing
            continue
        parents[int(entry)] = int(fields[1])
        commands[int(entry)] = command
    me = os.getpid()
    found: dict[int, str] = {}
    for pid, command in commands.items():
        ancestor = parents.get(pid)
        for _ in range(16):
            if ancestor is None or ancestor == me:
                break
            ancestor = parents.get(ancestor)
        if ancestor == me and "ray" in command:
            found[pid] = command[:120]
    return found


def wait_for_no_ray_processes(timeout: float = EXIT_TIMEOUT) -> dict[int, str]:
    """Ray's processes still running after `timeout` seconds (empty once all exited)."""
    deadline = time.monotonic() + timeout
    left = ray_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = ray_processes()
    return left
