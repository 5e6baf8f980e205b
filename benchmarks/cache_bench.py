"""Build cache benchmark: cold build vs cache export and import, mode=min
and mode=max, to a local directory and to a registry.

On a copy of the example monorepo (examples/monorepo, linux/amd64, a
busybox base made locally and pushed to a Debian ``docker-registry`` on
127.0.0.1), plus ``--payload-mb`` of random bytes in the api service (so
its COPY layer is not trivially small).  For each backend x mode, each
repetition in fresh directories:

* cold: an empty store, no cache options (every step runs);
* warm: the same store again (everything cached: the process, graph and
  image overhead);
* export: the same store once more with ``cache-to``: export = this - warm;
* import: an empty store with ``cache-from`` only (no step runs);
* incremental: one api file changed, an empty store with ``cache-from``
  (only api's COPY and RUN run);

and the size of the exported cache (the layout's blobs, or the manifest's
config and layers).  Medians over ``--runs``.  Needs root (RUN in runc),
docker-registry, busybox-static, curl.

    python3 benchmarks/cache_bench.py [--runs 3] [--payload-mb 8] [--work-seconds 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.integration.registry import running_registry  # noqa: E402


def run(cwd: str, store: str, base: str, *args: str) -> Tuple[float, str]:
    env = dict(os.environ, BAKERY_CACHE_DIR=store, SOURCE_DATE_EPOCH="0", PYTHONPATH=ROOT)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={base}",
                        "--set", "*.platform=linux/amd64", *args],
                       cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bakery run {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return dt, r.stderr


def steps(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("done:") or " steps run, " in line:
            return line.split("done:")[-1].strip()
    return "?"


def local_size(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    return total


def registry_size(host: str, repo: str, tag: str) -> int:
    raw = subprocess.run(["curl", "-sfL", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                          f"http://{host}/v2/{repo}/manifests/{tag}"], capture_output=True, check=True).stdout
    man = json.loads(raw)
    return len(raw) + man["config"]["size"] + sum(la["size"] for la in man["layers"])


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--payload-mb", type=int, default=8)
    ap.add_argument("--work-seconds", type=float, default=0.0,
                    help="add `RUN sleep S` to every service (stands in for real build work)")
    args = ap.parse_args()
    busybox = shutil.which("busybox")
    if busybox is None or os.geteuid() != 0:
        raise SystemExit("needs root and busybox-static")
    tmp = tempfile.mkdtemp(prefix="cache-bench-")
    results: Dict[Tuple[str, str], Dict[str, List[float]]] = {}
    notes: Dict[Tuple[str, str], str] = {}
    try:
        with running_registry(os.path.join(tmp, "registry")) as reg:
            base = f"{reg.host}/bakery/busybox:latest"
            subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tools", "busybox_image.py"), base,
                            f"linux/amd64={busybox}"], check=True, cwd=ROOT, capture_output=True,
                           env=dict(os.environ, PYTHONPATH=ROOT))
            n = 0
            for kind in ("local", "registry"):
                for mode in ("min", "max"):
                    res = results.setdefault((kind, mode), {})
                    for _ in range(args.runs):
                        n += 1
                        work = os.path.join(tmp, f"w{n}")
                        shutil.copytree(os.path.join(ROOT, "examples", "monorepo"), work)
                        with open(os.path.join(work, "services", "api", "payload.bin"), "wb") as fh:
                            fh.write(os.urandom(args.payload_mb << 20))
                        if args.work_seconds:
                            for svc in ("api", "worker", "web"):
                                with open(os.path.join(work, "services", svc, "Dockerfile"), "a") as fh:
                                    fh.write(f"RUN sleep {args.work_seconds}\n")
                        if kind == "local":
                            where = os.path.join(tmp, f"cache{n}")
                            to = f"*.cache-to=type=local,dest={where},mode={mode}"
                            frm = f"*.cache-from=type=local,src={where}"
                        else:
                            repo, tag = f"bench/cache{n}", "buildcache"
                            to = f"*.cache-to=type=registry,ref={reg.host}/{repo}:{tag},mode={mode}"
                            frm = f"*.cache-from=type=registry,ref={reg.host}/{repo}:{tag}"
                        s1 = os.path.join(tmp, f"s{n}a")
                        cold, _ = run(work, s1, base)
                        warm, _ = run(work, s1, base)
                        with_export, _ = run(work, s1, base, "--set", to)
                        imp, err_imp = run(work, os.path.join(tmp, f"s{n}b"), base, "--set", frm)
                        with open(os.path.join(work, "services", "api", "run.sh"), "a") as fh:
                            fh.write("# changed\n")
                        inc, err_inc = run(work, os.path.join(tmp, f"s{n}c"), base, "--set", frm)
                        size = local_size(where) if kind == "local" else registry_size(reg.host, repo, tag)
                        for k, v in (("cold", cold), ("warm", warm), ("export", with_export - warm),
                                     ("import", imp), ("incremental", inc), ("size", float(size))):
                            res.setdefault(k, []).append(v)
                        notes[(kind, mode)] = f"import: {steps(err_imp)}; incremental: {steps(err_inc)}"
                        for d in (s1, os.path.join(tmp, f"s{n}b"), os.path.join(tmp, f"s{n}c"), work):
                            shutil.rmtree(d, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"example monorepo (linux/amd64) + {args.payload_mb} MB payload"
          f"{f' + RUN sleep {args.work_seconds}' if args.work_seconds else ''}, median of {args.runs} runs")
    print(f"{'backend':<9} {'mode':<4} {'cold':>7} {'warm':>7} {'export':>7} {'import':>7} "
          f"{'incr.':>7} {'size':>9}")
    for (kind, mode), res in results.items():
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"{kind:<9} {mode:<4} {med['cold']:>6.2f}s {med['warm']:>6.2f}s {med['export']:>6.2f}s "
              f"{med['import']:>6.2f}s {med['incremental']:>6.2f}s {human(med['size']):>9}")
    for (kind, mode), text in notes.items():
        print(f"  {kind} {mode}: {text}")


if __name__ == "__main__":
    main()
