"""Run every benchmark in turn and gather their reports into `results/summary.md`.

Each script runs in its own process (so one's threads and memory do not weigh on the
next); `--quick` and `--no-chart` are passed on to all, `--full` to `bench_many.py`.
Exits non-zero if any script failed; the others still run. The summary holds the latest
report of every script, so `--only` refreshes some and keeps the others.

Run: `python benchmarks/run_all.py [--quick] [--full] [--no-chart]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Final

from _common import HERE, RESULTS, ROOT

SCRIPTS: Final = (
    ("bench_echo.py", "echo"),
    ("bench_http.py", "http"),
    ("bench_many.py", "many"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke runs, under a minute each")
    parser.add_argument("--full", action="store_true", help="bench_many also runs N=10,000")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG charts")
    parser.add_argument("--only", help="comma-separated: echo, http, many")
    options = parser.parse_args()
    wanted = set(options.only.split(",")) if options.only else {name for _, name in SCRIPTS}
    failed = []
    parts: list[str] = []
    for script, name in SCRIPTS:
        if name not in wanted:
            continue
        command = [sys.executable, str(HERE / script)]
        command += ["--quick"] * options.quick + ["--no-chart"] * options.no_chart
        if name == "many" and options.full:
            command.append("--full")
        print(f"\n=== {script} {' '.join(command[2:])}".rstrip(), flush=True)
        started = time.perf_counter()
        code = subprocess.run(command, cwd=ROOT, check=False).returncode
        print(f"=== {script}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(f"{script} (exit {code})")
    for _, name in SCRIPTS:
        report = RESULTS / f"{name}.md"
        if report.exists():  # the latest report of each, this run's or an earlier one's
            parts.append(report.read_text())
    if parts:
        summary = RESULTS / "summary.md"
        summary.write_text("\n\n".join(part.rstrip() for part in parts) + "\n")
        print(f"\nwrote {summary.relative_to(ROOT)}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
