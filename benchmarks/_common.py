"""What every benchmark script shares: timing, statistics, reports, charts, servers, facts.

Theory of operation: a benchmark script measures each client in the same run, over
several rounds in rotated order (so drift and warm caches fall evenly on every
client), keeps one number per client and round, and reports the median over rounds.
A `Report` gathers the machine facts, markdown tables and PASS/FAIL lines against the
issue's targets; it prints them and writes `results/<name>.md` (and the raw numbers
as `results/<name>.json`). Charts are drawn with matplotlib when it is installed;
without it the chart is skipped with a note.

Peers run in their own process (`ServerProcess`, see `_servers.py`), so a server never
shares the client's GIL. The child prints its port on its first line and exits when
its stdin closes, so a crashed benchmark leaves no server behind.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import selectors
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
RESULTS: Final = HERE / "results"
HOST: Final = "127.0.0.1"

SERVER_START_TIMEOUT: Final = 20.0
"""Seconds a server process may take to print its port."""
SERVER_STOP_TIMEOUT: Final = 5.0
"""Seconds a server process gets to exit before it is killed."""

PACKAGES: Final = (
    "gluegun_actors",
    "pykka",
    "h11",
    "wsproto",
    "websockets",
    "websocket-client",
    "aiohttp",
    "httpx",
    "picows",
    "uvicorn",
    "httptools",
    "uvloop",
    "matplotlib",
)

now = time.perf_counter


def ensure_importable() -> None:
    """Let the scripts run from a checkout where the package is not installed."""
    try:
        import gluegun_actors  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT))


# -- statistics ---------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def rotated(items: Sequence[str], round_index: int) -> list[str]:
    """The clients in the order of one round: each round starts one further along."""
    shift = round_index % len(items) if items else 0
    return list(items[shift:]) + list(items[:shift])


# -- formatting ---------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.0f}"


def fmt_us(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds * 1e6:,.0f}"


def fmt_s(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds:,.2f}"


def fmt_size(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- machine facts --------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def source_revision() -> str:
    """The checkout's commit, marked when the package has uncommitted changes; "" outside git."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--", "gluegun_actors"):
        commit += " + uncommitted changes"
    return commit


def machine_facts() -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "revision": source_revision(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "nofile": f"{soft}/{hard}",
        "packages": package_versions(),
    }


def facts_markdown(facts: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in facts["packages"].items())
    revision = f"- gluegun_actors source: {facts['revision']}\n" if facts["revision"] else ""
    return revision + (
        f"- CPU: {facts['cpu']}, {facts['cores']} cores ({facts['usable_cores']} usable)\n"
        f"- Python: {facts['python']} on {facts['platform']}\n"
        f"- Packages: {packages}"
    )


# -- process facts --------------------------------------------------------------------------


def proc_status(field_name: str) -> int:
    """An integer field of /proc/self/status (`VmRSS` in KiB, `Threads`...); 0 if absent."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def rss_kib() -> int:
    return proc_status("VmRSS")


def thread_count() -> int:
    return proc_status("Threads")


def raise_nofile(wanted: int | None = None) -> int:
    """Raise the soft open-files limit to `wanted` (default: the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = (1 << 20) if hard == resource.RLIM_INFINITY else hard
    target = ceiling if wanted is None else min(ceiling, max(soft, wanted))
    if target != soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- servers in their own process -----------------------------------------------------------


class ServerProcess:
    """A peer from `_servers.py` in a child process: `with ServerProcess("ws-echo") as s: s.port`.

    `name` is the server kind, `extra` its further arguments. The child's stderr goes to
    `results/<kind>-server.log` so its warnings do not mix with the tables.
    """

    def __init__(self, kind: str, *extra: str) -> None:
        self.kind = kind
        self.args = [sys.executable, str(HERE / "_servers.py"), kind, *extra]
        self.port = 0
        self.description = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        RESULTS.mkdir(parents=True, exist_ok=True)
        log = (RESULTS / f"{self.kind}-server.log").open("a")
        try:
            self._process = subprocess.Popen(
                self.args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONPATH": _pythonpath()},
            )
        finally:
            log.close()
        line = self._first_line(SERVER_START_TIMEOUT)
        parts = line.split(maxsplit=2)
        if len(parts) < 2 or parts[0] != "PORT":
            self.stop()
            raise RuntimeError(f"server {self.args!r} did not start: {line!r}")
        self.port = int(parts[1])
        self.description = parts[2].strip() if len(parts) > 2 else self.kind
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _first_line(self, timeout: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return ""
        return self._process.stdout.readline()

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        process.terminate()
        try:
            process.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(SERVER_STOP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()
        log = RESULTS / f"{self.kind}-server.log"
        with contextlib.suppress(OSError):
            if log.stat().st_size == 0:
                log.unlink()


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return str(ROOT) if not existing else f"{ROOT}{os.pathsep}{existing}"


# -- reports --------------------------------------------------------------------------------


@dataclass
class Target:
    """One of the issue's targets, judged: True = PASS, False = FAIL, None = not measured.

    An `informational` line states a comparison that has no target (shown as INFO).
    """

    text: str
    passed: bool | None
    detail: str
    informational: bool = False

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]
        if self.informational:
            verdict = "INFO"
        return f"- **{verdict}** {self.text}: {self.detail}"


@dataclass
class Report:
    """Sections of markdown for one benchmark, printed and written to `results/<name>.md`."""

    name: str
    title: str
    args: argparse.Namespace
    facts: dict[str, Any] = field(default_factory=machine_facts)
    sections: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=now)

    def add(self, text: str) -> None:
        self.sections.append(text.rstrip())
        print(text.rstrip() + "\n", flush=True)

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.add(f"### {title}\n\n{markdown_table(header, rows)}")

    def targets(self, targets: Sequence[Target]) -> None:
        if targets:
            self.add("Targets:\n\n" + "\n".join(target.line() for target in targets))

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        mode = "quick" if getattr(self.args, "quick", False) else "default"
        if getattr(self.args, "full", False):
            mode = "full"
        elapsed = now() - self.started
        header = (
            f"# {self.title}\n\n"
            f"Run: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}` ({mode} mode, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {elapsed:.0f} s)\n\n"
            f"{facts_markdown(self.facts)}\n"
        )
        path = RESULTS / f"{self.name}.md"
        path.write_text(header + "\n" + "\n\n".join(self.sections) + "\n")
        raw = {"facts": self.facts, "args": vars(self.args), "results": self.data}
        (RESULTS / f"{self.name}.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
        print(f"wrote {path.relative_to(ROOT)} and {self.name}.json", flush=True)
        return path


# -- charts ---------------------------------------------------------------------------------


@dataclass
class Panel:
    """One bar chart: `series` maps a client to one value per category (NaN = missing);
    the series named in `hatched` are drawn hatched, to set them apart."""

    title: str
    ylabel: str
    categories: list[str]
    series: dict[str, list[float]]
    log: bool = False
    hatched: frozenset[str] = frozenset()


def bar_chart(name: str, title: str, panels: Sequence[Panel], *, legend_below: bool = False) -> str:
    """Draw `results/<name>.png` (grouped bars, one panel each); returns a note for the report.

    The legend goes in the first panel, or with `legend_below` under all of them (for many
    series, whose legend would hide bars).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"(chart {name}.png skipped: matplotlib is not installed)"
    RESULTS.mkdir(parents=True, exist_ok=True)
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(7 * columns, 4.2 * rows), squeeze=False)
    for index, panel in enumerate(panels):
        axis = axes[index // columns][index % columns]
        count = max(1, len(panel.series))
        width = 0.8 / count
        for position, (label, values) in enumerate(panel.series.items()):
            xs = [i + (position - (count - 1) / 2) * width for i in range(len(panel.categories))]
            heights = [0.0 if math.isnan(v) else v for v in values]
            hatch = "//" if label in panel.hatched else None
            axis.bar(xs, heights, width, label=label, hatch=hatch)
        axis.set_xticks(range(len(panel.categories)), panel.categories)
        axis.set_title(panel.title)
        axis.set_ylabel(panel.ylabel)
        if panel.log:
            axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.suptitle(title)
    if legend_below:
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncols=4, fontsize="small")
        figure.tight_layout(rect=(0, 0.07, 1, 1))
    else:
        axes[0][0].legend(fontsize="small")
        figure.tight_layout()
    path = RESULTS / f"{name}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"Chart: `{path.relative_to(HERE)}`"


# -- command line ---------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--quick", action="store_true", help="a smoke run, well under 60 s")
    result.add_argument("--rounds", type=int, help="rounds per client (median reported)")
    result.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    return result
