"""How hard the property tests search: bounded in CI, longer on demand.

`GLUEGUN_FUZZ_SCALE` multiplies every property's example count (default 1, what CI
runs); `conformance/fuzz.py` sets it for a long run.
"""

from __future__ import annotations

import os


def examples(count: int) -> int:
    """`count` examples, scaled by `GLUEGUN_FUZZ_SCALE` (a positive int)."""
    scale = int(os.environ.get("GLUEGUN_FUZZ_SCALE", "1"))
    return count * max(1, scale)
