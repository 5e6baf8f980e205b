"""Graph benchmark: ``build_graph`` on a generated 200-target monorepo.

Generates, in a temporary directory, a monorepo of N services (default 200)
built from a few Dockerfiles that share base stages (an OS base, a
toolchain stage on top of it, a per-service build stage and a slim runtime
stage), every fourth service for two platforms, one context for all.  Then,
in one process and one sitting (the machine is noisy: compare within a run):

* times :func:`bakery.graph.build.build_graph` over all the targets (median
  and best of ``--runs``; each run starts with an empty context-metadata
  cache, so local files are hashed every time);
* reports the merged graph's node count against the unmerged count, the sum
  over the exports (target x platform) of the size of each export's own op
  DAG, i.e. how many steps merging saved.

    python3 benchmarks/graph_bench.py [--runs 5] [--targets 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bakery.bakefile.model import Target  # noqa: E402
from bakery.graph.build import BuildGraph, build_graph  # noqa: E402
from bakery.graph.context import ContextHasher  # noqa: E402
from bakery.graph.ops import Platform  # noqa: E402

KINDS = {
    "go": ("golang:1.22-alpine", "go build -o /out/app ./..."),
    "node": ("node:20-alpine", "npm ci && npm run build && cp -r dist /out/app"),
    "python": ("python:3.12-alpine", "pip wheel -w /out/app ."),
    "rust": ("rust:1.79-alpine", "cargo build --release && cp target/release/app /out/app"),
}

DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM alpine:3.19 AS os
RUN apk add --no-cache ca-certificates tzdata
RUN addgroup -S app && adduser -S -G app app

FROM {toolchain} AS toolchain
RUN apk add --no-cache git make
COPY tools/ci.sh /usr/local/bin/ci.sh

FROM toolchain AS build
ARG SERVICE
WORKDIR /src
COPY services/${{SERVICE}}/ /src/
RUN {build}

FROM os AS runtime
ARG SERVICE
COPY --from=build /out/app /app
USER app
ENTRYPOINT ["/app"]
"""


def generate(work: str, n: int) -> Dict[str, Target]:
    os.makedirs(os.path.join(work, "docker"))
    os.makedirs(os.path.join(work, "tools"))
    with open(os.path.join(work, "tools", "ci.sh"), "w") as fh:
        fh.write("#!/bin/sh\nexec make \"$@\"\n")
    for kind, (toolchain, build) in KINDS.items():
        with open(os.path.join(work, "docker", f"{kind}.Dockerfile"), "w") as fh:
            fh.write(DOCKERFILE.format(toolchain=toolchain, build=build))
    kinds = sorted(KINDS)
    targets: Dict[str, Target] = {}
    for i in range(n):
        name = f"svc{i:03d}"
        src = os.path.join(work, "services", name)
        os.makedirs(src)
        with open(os.path.join(src, "main.txt"), "w") as fh:
            fh.write(f"service {i}\n")
        targets[name] = Target(
            name,
            context=".",
            dockerfile=f"docker/{kinds[i % len(kinds)]}.Dockerfile",
            args={"SERVICE": name},
            target="runtime",
            platforms=["linux/amd64", "linux/arm64"] if i % 4 == 0 else ["linux/amd64"],
            tags=[f"registry.example/{name}:dev"],
        )
    return targets


def unmerged_count(graph: BuildGraph) -> int:
    """Sum over the exports of the number of steps in each one's own DAG."""
    total = 0
    for e in graph.exports.values():
        seen: Set[str] = set()
        stack = [e.root]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            stack.extend(graph.nodes[k].deps)
        total += len(seen)
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--targets", type=int, default=200)
    a = p.parse_args()

    work = tempfile.mkdtemp(prefix="bakery-graph-bench-")
    try:
        targets = generate(work, a.targets)
        names = sorted(targets)
        times: List[float] = []
        graph = None
        for run in range(a.runs):
            hasher = ContextHasher(os.path.join(work, f"context-{run}.json"))
            t0 = time.perf_counter()
            graph = build_graph(targets, names, work, file_digest=hasher,
                                build_platform=Platform("linux", "amd64"))
            times.append(time.perf_counter() - t0)
        assert graph is not None
        merged = graph.total_steps
        unmerged = unmerged_count(graph)
        print(f"monorepo: {a.targets} targets, {len(KINDS)} Dockerfiles, "
              f"{len(graph.exports)} exports (target x platform); {a.runs} runs")
        print(f"build_graph: median {statistics.median(times):.3f} s, best {min(times):.3f} s")
        print(f"nodes: {merged} merged vs {unmerged} unmerged "
              f"({unmerged - merged} saved, {100 * (1 - merged / unmerged):.1f}%); "
              f"{graph.shared_steps} shared")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
