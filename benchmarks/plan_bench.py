"""Plan benchmark: `bakery plan --print` on a generated 1,000-target bake file.

Runs, in one process and one sitting (the machine is noisy: compare within a
run, never across runs):

* bakery cold: an empty parse cache each time;
* bakery warm: the same files again, parse cache filled;
* `docker buildx bake --print` on the same file, when buildx is installed.

Prints the median and best wall time of each, and the ratios to buildx.

    python benchmarks/plan_bench.py [--runs 7] [--targets 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_bake import generate


def timed(cmd: List[str], cwd: str, env: Dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr.decode()}")
    return dt


def buildx_cmd() -> Optional[List[str]]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "buildx", "version"], capture_output=True).returncode == 0:
        return [docker, "buildx", "bake"]
    plugin = shutil.which("docker-buildx")
    if plugin:
        return [plugin, "bake"]
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--targets", type=int, default=1000)
    a = p.parse_args()

    work = tempfile.mkdtemp(prefix="bakery-bench-")
    try:
        path = os.path.join(work, "docker-bake.hcl")
        text = generate(a.targets)
        with open(path, "w") as fh:
            fh.write(text)
        print(f"bake file: {len(text) / 1000:.0f} KB, {a.targets} targets; {a.runs} runs each")
        bakery = [sys.executable, "-m", "bakery", "plan", "--print"]
        env = dict(os.environ)
        results: Dict[str, List[float]] = {"bakery cold": [], "bakery warm": []}
        cache = os.path.join(work, "cache")
        for _ in range(a.runs):
            shutil.rmtree(cache, ignore_errors=True)
            results["bakery cold"].append(timed(bakery, work, {**env, "BAKERY_CACHE_DIR": cache}))
        timed(bakery, work, {**env, "BAKERY_CACHE_DIR": cache})
        for _ in range(a.runs):
            results["bakery warm"].append(timed(bakery, work, {**env, "BAKERY_CACHE_DIR": cache}))
        bx = buildx_cmd()
        if bx:
            results["buildx"] = [timed([*bx, "--print"], work, env) for _ in range(a.runs)]
        ref = statistics.median(results["buildx"]) if "buildx" in results else None
        print(f"{'':<14}{'median s':>10}{'best s':>10}{'vs buildx':>11}")
        for name, times in results.items():
            med = statistics.median(times)
            ratio = f"{med / ref:.2f}x" if ref else "n/a"
            print(f"{name:<14}{med:>10.3f}{min(times):>10.3f}{ratio:>11}")
        if not bx:
            print("buildx: not installed here; its reference figure (issue 2) is ~0.5 s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
