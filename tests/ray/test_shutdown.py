"""Stopping a sharded manager ends its shard processes; shutting Ray down ends the rest."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")

from ray_cluster import CPUS, SHARD_OPTIONS, ray_processes, wait_for_no_ray_processes  # noqa: E402

from gluegun_actors import shards  # noqa: E402
from gluegun_actors.mailbox import Mailbox  # noqa: E402
from gluegun_actors.testing import EmbeddedServer  # noqa: E402


def test_stop_then_ray_shutdown_leaves_no_process_behind() -> None:
    assert not ray.is_initialized()
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    try:
        with EmbeddedServer() as server:
            sm = shards.start(2, owner=Mailbox("owner"), actor_options=SHARD_OPTIONS)
            for n in range(20):
                shards.open(sm, n, url=server.ws_url("/echo"))
            for n in range(20):
                shards.await_upgrade(sm, n, 10_000)
            pids = {shard.pid for shard in shards.info(sm)}
            assert pids <= set(ray_processes()), "the shards are not this Ray instance's processes"
            shards.stop(sm)
            assert not pids & set(ray_processes()), "a shard process outlived stop"
            assert sm.pump is not None and not sm.pump.running
            assert ray.util.list_named_actors(all_namespaces=True) == []
    finally:
        ray.shutdown()
    left = wait_for_no_ray_processes()
    assert not left, f"Ray processes left after ray.shutdown(): {left}"
