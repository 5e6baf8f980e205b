"""`bakery run` on a generated monorepo: cold, warm, incremental; and the
same bake file through Docker's BuildKit when a private dockerd can run.

    python3 benchmarks/run_bench.py [--targets 24] [--jobs N] [--no-docker] [--keep]

Everything is local: a busybox base image (examples/tools/busybox_image.py,
from Debian's busybox-static) in Debian's ``docker-registry`` on 127.0.0.1,
runc for RUN steps, and for the comparison a private ``dockerd
--iptables=false --bridge=none`` (builds use --network=host) driven through
``bakery run --driver docker`` (one ``docker build`` per target, BuildKit).

The monorepo: N services; every Dockerfile starts with the same two-step
``tools`` stage on the shared base (one node in bakery's merged graph), a
``build`` stage that copies the service's sources and checksums them, and a
final stage taking the result.  Measured, each with wall time and executed
steps (bakery: its own count of steps run; BuildKit: instructions that
ended ``DONE`` rather than ``CACHED`` in its plain progress):

* cold        empty cache (bakery: a fresh store; docker: a fresh daemon)
* warm        nothing changed
* incremental one source file of one service changed

Requires root (runc, dockerd), docker-registry, busybox-static, runc.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DOCKERFILE = """\
FROM {base} AS tools
RUN mkdir -p /opt/tools && for i in $(seq 1 2000); do echo "tool $i"; done > /opt/tools/list
RUN sha256sum /opt/tools/list > /opt/tools/list.sum && echo shared > /opt/tools/kind

FROM tools AS build
WORKDIR /src
COPY src/ /src/
RUN cat /src/*.txt | sha256sum > /src/sum && wc -c /src/*.txt > /src/sizes

FROM tools
COPY --from=build /src/sum /src/sizes /app/
RUN echo "{name}" > /app/name
"""


def generate(root: str, base: str, n: int) -> List[str]:
    """Write the monorepo; return the target names."""
    names = [f"svc{i:02d}" for i in range(n)]
    bake = ['group "default" {', f'  targets = [{", ".join(repr(x).replace(chr(39), chr(34)) for x in names)}]',
            "}", ""]
    for name in names:
        d = os.path.join(root, "services", name)
        os.makedirs(os.path.join(d, "src"))
        with open(os.path.join(d, "Dockerfile"), "w") as fh:
            fh.write(DOCKERFILE.format(base=base, name=name))
        for j in range(5):
            with open(os.path.join(d, "src", f"file{j}.txt"), "w") as fh:
                fh.write(f"{name} source file {j}\n" * 200)
        bake += [f'target "{name}" {{', f'  context = "services/{name}"',
                 '  platforms = ["linux/amd64"]', "}", ""]
    with open(os.path.join(root, "docker-bake.hcl"), "w") as fh:
        fh.write("\n".join(bake))
    return names


def bakery(cwd: str, env: Dict[str, str], *args: str) -> Tuple[float, str, str]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "bakery", "run", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"bakery run {' '.join(args)} failed:\n{r.stderr[-4000:]}")
    return took, r.stdout, r.stderr


def bakery_steps(stderr: str) -> int:
    m = re.search(r"done: (\d+) steps run, (\d+) from the cache", stderr)
    if not m:
        sys.exit(f"no summary in bakery's output:\n{stderr[-2000:]}")
    return int(m.group(1))


_VERTEX = re.compile(r"^\[(?P<t>[^\]]+)\] #(?P<n>\d+) (?P<rest>.*)$")


def buildkit_steps(stderr: str) -> int:
    """Dockerfile instructions BuildKit ran (DONE), not CACHED, from the
    driver's ``[target] #N ...`` lines."""
    names: Dict[Tuple[str, str], str] = {}
    status: Dict[Tuple[str, str], str] = {}
    for line in stderr.splitlines():
        m = _VERTEX.match(line)
        if not m:
            continue
        k = (m.group("t"), m.group("n"))
        rest = m.group("rest")
        if rest.startswith("["):
            names.setdefault(k, rest)
        elif rest.startswith("DONE") or rest.startswith("CACHED"):
            status[k] = rest.split()[0]
    return sum(1 for k, s in status.items()
               if s == "DONE" and re.match(r"\[[^\]]*\] (RUN|COPY|WORKDIR|ADD)", names.get(k, "")))


def touch_one(root: str, name: str, round_: int) -> None:
    with open(os.path.join(root, "services", name, "src", "file0.txt"), "a") as fh:
        fh.write(f"changed {round_}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=24)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-docker", action="store_true", help="skip the BuildKit comparison")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.targets < 20:
        ap.error("--targets must be at least 20")
    if os.geteuid() != 0:
        sys.exit("run_bench.py needs root (runc, dockerd)")
    busybox = shutil.which("busybox")
    if busybox is None:
        sys.exit("busybox-static is not installed")

    import pytest

    from tests.integration.registry import running_registry

    work = tempfile.mkdtemp(prefix="bakery-bench-")
    results: Dict[str, Dict[str, Tuple[float, int]]] = {}
    try:
        with running_registry(os.path.join(work, "registry")) as reg:
            base = f"{reg.host}/bench/busybox:latest"
            subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tools", "busybox_image.py"),
                            base, f"linux/amd64={busybox}"], check=True, cwd=ROOT, capture_output=True,
                           env=dict(os.environ, PYTHONPATH=ROOT))
            repo = os.path.join(work, "monorepo")
            names = generate(repo, base, args.targets)
            env = dict(os.environ, PYTHONPATH=ROOT, BAKERY_CACHE_DIR=os.path.join(work, "cache"))
            jobs = ["-j", str(args.jobs), "--progress", "plain"]
            print(f"monorepo: {len(names)} targets, 3 stages each (one shared), base {base}; "
                  f"jobs={args.jobs}, cpus={os.cpu_count()}", flush=True)
            res: Dict[str, Tuple[float, int]] = {}
            took, _, err = bakery(repo, env, *jobs)
            res["cold"] = (took, bakery_steps(err))
            took, _, err = bakery(repo, env, *jobs)
            res["warm"] = (took, bakery_steps(err))
            touch_one(repo, names[len(names) // 2], 1)
            took, _, err = bakery(repo, env, *jobs)
            res["incremental"] = (took, bakery_steps(err))
            results["bakery (embedded)"] = res

            if not args.no_docker:
                from tests.integration.dockerd import running_dockerd

                try:
                    with running_dockerd() as d:
                        denv = dict(env, DOCKER_HOST=d.host, DOCKER_CONFIG=os.path.join(d.root, "client"))
                        dj = ["-j", str(args.jobs), "--driver", "docker", "--docker-host", d.host]
                        res = {}
                        took, _, err = bakery(repo, denv, *dj)
                        res["cold"] = (took, buildkit_steps(err))
                        took, _, err = bakery(repo, denv, *dj)
                        res["warm"] = (took, buildkit_steps(err))
                        touch_one(repo, names[len(names) // 2], 2)
                        took, _, err = bakery(repo, denv, *dj)
                        res["incremental"] = (took, buildkit_steps(err))
                        results["docker BuildKit"] = res
                except pytest.skip.Exception as e:  # type: ignore[attr-defined]
                    print(f"(no BuildKit comparison: {e})")
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            subprocess.run(["umount", "-R", "-l", work], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    return 0


def report(results: Dict[str, Dict[str, Tuple[float, int]]]) -> None:
    phases = ("cold", "warm", "incremental")
    print()
    print(f"{'builder':<20} " + " ".join(f"{p:>20}" for p in phases))
    for who, res in results.items():
        cells = [f"{res[p][0]:7.2f}s {res[p][1]:4d} steps" for p in phases]
        print(f"{who:<20} " + " ".join(f"{c:>20}" for c in cells))
    emb: Optional[Dict[str, Tuple[float, int]]] = results.get("bakery (embedded)")
    bk = results.get("docker BuildKit")
    if emb and bk:
        ratios = [f"{bk[p][0] / emb[p][0]:19.2f}x" for p in phases]
        print(f"{'BuildKit / bakery':<20} " + " ".join(ratios))


if __name__ == "__main__":
    sys.exit(main())
