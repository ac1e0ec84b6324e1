"""Fixtures for the tests that need Ray: a local Ray instance per test module.

These tests run in their own step (`python -m pytest -q tests/ray`, after
`pip install -e '.[test,ray]'`); the main run leaves this directory out (pyproject's
`addopts`). Without Ray every module here is skipped, saying how to install it.

Ray's worker processes import the test modules' actor classes by name, so the test
directories go on `PYTHONPATH` before Ray starts (its processes inherit the variable).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from ray_cluster import CPUS, HERE, wait_for_no_ray_processes


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A local Ray instance (2 CPUs, no dashboard) for one test module, shut down after."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    paths = [str(HERE), str(HERE.parent)]
    existing = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *([existing] if existing else [])])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if existing is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = existing
        wait_for_no_ray_processes()
