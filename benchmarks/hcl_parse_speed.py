"""HCL parser speed check (not a unit test).

``python3 benchmarks/hcl_parse_speed.py [--targets 1000] [--repeat 7]``
generates the plan benchmark's bake file (about 213 KB for 1,000 targets,
see ``gen_bake.py``) and prints the best and median parse times of
``bakery.bakefile.hcl.parse``.  The goal is well under 150 ms on CPython 3.11.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from gen_bake import generate  # noqa: E402

from bakery.bakefile import hcl  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--targets", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args()
    text = generate(a.targets)
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        body = hcl.parse(text, "bench.hcl")
        times.append(time.perf_counter() - t0)
    n_blocks = len(body.blocks)
    print(
        f"{len(text) / 1000:.0f} KB, {text.count(chr(10))} lines, {n_blocks} blocks: "
        f"parse best {min(times) * 1000:.1f} ms, median {statistics.median(times) * 1000:.1f} ms "
        f"(Python {sys.version.split()[0]})"
    )


if __name__ == "__main__":
    main()
