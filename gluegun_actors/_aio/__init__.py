"""The machinery under `gluegun_actors.aio`: waiting on a mailbox from a coroutine."""

from gluegun_actors._aio.collect import collect, wait

__all__ = ["collect", "wait"]
