"""Run Pykka's own test suite against the pooled runtime (`PooledActor`).

Pykka's tests are not vendored: this fetches the sdist of the installed Pykka version
from PyPI with pip (or takes ``--sdist``), extracts its ``tests/`` into a temporary
directory and runs pytest there with the ``pooled_runtime`` plugin next to this file.

    python tests/pykka_contract/run.py                     # pooled, with and without handoff
    python tests/pykka_contract/run.py --runtime pooled --runtime threading
    python tests/pykka_contract/run.py --sdist pykka-4.5.0.tar.gz -- -x -k stop

Exits 0 only if every selected test passed; prints one summary line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent


def download_sdist(pykka_version: str, into: Path, timeout: float) -> Path:
    """Pykka's sdist for `pykka_version`, downloaded from PyPI by pip.

    ``--no-binary pykka``, not ``:all:``: pip prepares the sdist's metadata in an isolated
    build environment, and ``:all:`` would build that environment's packages from source
    too (minutes instead of seconds).
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-binary",
        "pykka",
        "--dest",
        str(into),
        f"pykka=={pykka_version}",
    ]
    subprocess.run(command, check=True, timeout=timeout)
    found = sorted(into.glob(f"pykka-{pykka_version}.tar.gz"))
    if not found:
        raise SystemExit(f"pip downloaded no pykka-{pykka_version}.tar.gz into {into}")
    return found[0]


def extract_tests(sdist: Path, root: Path) -> None:
    """Extract the sdist's ``tests/`` package into `root` (so it is ``root/tests``)."""
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) > 1 and parts[1] == "tests":
                member.name = str(Path(*parts[1:]))
                members.append(member)
        if not members:
            raise SystemExit(f"{sdist} has no tests/ directory")
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse links out of `root`
            archive.extractall(root, members=members, filter="data")
        else:  # pragma: no cover - older 3.11
            archive.extractall(root, members=members)
    # An empty config file makes `root` the rootdir and keeps any other config away.
    (root / "pytest.ini").write_text("[pytest]\n")


def run_pytest(
    root: Path, runtimes: list[str], per_test: float, budget: float, extra: list[str]
) -> tuple[int, dict[str, object] | None]:
    """Pytest on Pykka's tests with our plugin; its exit code and the plugin's report."""
    report = root / "pykka-contract.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "pooled_runtime",
        "-p",
        "no:cacheprovider",
        f"--timeout={per_test:g}",
        "--pykka-report",
        str(report),
        *(f"--pykka-runtime={name}" for name in runtimes),
        "-q",
        "-rfE",
        *extra,
        "tests",
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    process = subprocess.Popen(command, cwd=root, env=env, start_new_session=True)
    try:
        code = process.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(f"pykka contract: pytest exceeded its {budget:g}s budget and was killed")
        return 124, None
    data = json.loads(report.read_text()) if report.exists() else None
    return code, data


def summary(pykka_version: str, data: dict[str, object] | None, seconds: float) -> str:
    if data is None:
        return f"pykka {pykka_version} contract: no report (pytest did not finish)"
    runtimes = data["runtimes"]
    assert isinstance(runtimes, dict)
    parts = []
    for runtime, counts in runtimes.items():
        order = ("passed", "failed", "error", "skipped", "deselected")
        text = ", ".join(
            f"{counts.get(k, 0)} {k}" for k in order if counts.get(k) or k in order[:2]
        )
        parts.append(f"{runtime}: {text}")
    stale = data.get("stale_deselections")
    tail = f"; STALE deselections: {stale}" if stale else ""
    return (
        f"pykka {pykka_version} contract: {'; '.join(parts)} "
        f"({data['runtime_independent']} runtime-independent tests not run) "
        f"in {seconds:.1f}s{tail}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help="a Pykka sdist to use instead of pip's")
    parser.add_argument(
        "--runtime",
        action="append",
        choices=["pooled", "pooled-nohandoff", "threading"],
        help="runtime to test (repeatable; default: pooled and pooled-nohandoff)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per test")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for everything")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    pykka_version = version("pykka")
    with tempfile.TemporaryDirectory(prefix="pykka-contract-") as temp:
        temp_path = Path(temp)
        sdist = args.sdist
        if sdist is None:
            downloads = temp_path / "download"
            try:
                sdist = download_sdist(pykka_version, downloads, timeout=args.budget / 2)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                print(f"pykka {pykka_version} contract: could not download the sdist: {error}")
                return 2
        elif f"pykka-{pykka_version}." not in sdist.name:
            print(f"warning: {sdist.name} may not match the installed pykka {pykka_version}")
        root = temp_path / "pykka"
        root.mkdir()
        extract_tests(sdist, root)
        remaining = args.budget - (time.monotonic() - started)
        code, data = run_pytest(
            root,
            args.runtime or ["pooled", "pooled-nohandoff"],
            args.timeout,
            remaining,
            args.pytest_args,
        )
    print(summary(pykka_version, data, time.monotonic() - started))
    if code == 0 and data is not None and (data.get("failures") or data.get("stale_deselections")):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
