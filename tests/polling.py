"""Waiting in tests for a condition another thread brings about, bounded in time, and the
process facts such waits compare (open descriptors)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

POLL_INTERVAL = 0.002
"""Seconds between two looks at the condition."""


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """True as soon as `predicate()` is; False if it still is not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(POLL_INTERVAL)
    return predicate()


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))
