"""A long fuzzing run: the suite's property tests with many more examples.

    python conformance/fuzz.py            # 50x the CI examples
    python conformance/fuzz.py --scale 500

Covers the HTTP/1.1 core and the WebSocket frame parser and core, with and without
deflate, against h11 and wsproto in random splits, and the memory bounds. CI runs the
same properties with their bounded example counts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = [
    "tests/test_differential_http1.py",
    "tests/test_differential_ws.py",
    "tests/test_bounds.py",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=50, help="examples multiplier (>= 1)")
    args = parser.parse_args()
    env = {**os.environ, "GLUEGUN_FUZZ_SCALE": str(max(1, args.scale))}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=0"]
    return subprocess.call([*command, *TARGETS], cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
