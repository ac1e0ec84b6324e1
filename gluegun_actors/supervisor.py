"""Fault tolerance for Pykka actors, connections included: monitors (and, to come in this
module, OTP's supervisors).

`monitor(target, owner=None)` watches a Pykka `ActorRef` (pooled or threading), a
`Connection` or a `Supervisor`; the owner (a `Mailbox` or an `ActorRef`, by default the
caller) gets exactly one `events.Down(target, reason, monitor_ref)` however the target
stops, at once if it is already gone. `demonitor(monitor_ref, flush=False)` takes it back.
"""

from __future__ import annotations

from gluegun_actors._runtime.deathwatch import NOPROC, NORMAL
from gluegun_actors._supervision.monitor import MonitorRef, demonitor, monitor

__all__ = ["NOPROC", "NORMAL", "MonitorRef", "demonitor", "monitor"]
