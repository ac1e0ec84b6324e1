"""Supervision: monitors for any Pykka actor, supervisors, and the connection manager.

- `monitor`: `MonitorRef`, `monitor` / `demonitor`: one `Down` when a target stops.
"""
