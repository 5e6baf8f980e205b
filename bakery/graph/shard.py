"""Split the requested targets of a :class:`~bakery.graph.build.BuildGraph`
into N shards, for N CI machines (``bakery plan|run --shard I/N``).

* Targets that need each other stay together: a target, the targets it uses
  through ``contexts = { x = "target:NAME" }`` and the targets it
  ``depends_on`` are joined (union-find over those edges, linked targets that
  were not requested included, so two targets sharing a ``target:`` base go
  in the same shard).
* Each such group weighs the number of merged graph nodes its targets need
  (all platforms); groups are dealt largest first, each to the lightest
  shard so far (ties: the lower shard number; equal weights: the group whose
  first target was requested first).
* Shard ``i`` (1-based) lists its requested targets in request order.

The result only depends on the graph, so every CI job computes the same
split without talking to the others.  Shards may be empty when there are
fewer groups than shards.
"""

from __future__ import annotations

import re
from typing import Dict, List, Set, Tuple

from bakery.errors import BakeryError
from bakery.graph.build import BuildGraph

__all__ = ["parse_shard", "shard", "shards"]

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def _check(i: int, n: int, spec: str = "") -> None:
    shown = spec or f"{i}/{n}"
    if n < 1:
        raise BakeryError(f"invalid shard {shown!r}: the number of shards must be at least 1",
                          hint="write --shard I/N with 1 <= I <= N, e.g. --shard 1/3")
    if not 1 <= i <= n:
        raise BakeryError(f"invalid shard {shown!r}: shard numbers go from 1 to {n}",
                          hint=f"write --shard I/{n} with 1 <= I <= {n} (shards are 1-based)")


def parse_shard(spec: str) -> Tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``; anything else is a :class:`BakeryError`."""
    m = _SPEC.match(spec or "")
    if m is None:
        raise BakeryError(f"invalid shard {spec!r}",
                          hint="write --shard I/N (the I-th of N shards, 1-based), e.g. --shard 2/4")
    i, n = int(m.group(1)), int(m.group(2))
    _check(i, n, spec)
    return i, n


def _groups(graph: BuildGraph) -> List[Tuple[int, List[str]]]:
    """(weight, requested targets) for every group of targets that need each
    other, in request order of their first target."""
    parent: Dict[str, str] = {t: t for t in graph.targets}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            # the smaller name is the root: the result never depends on edge order
            if rb < ra:
                ra, rb = rb, ra
            parent[rb] = ra

    for name, info in graph.targets.items():
        for other in (*info.links, *info.depends_on):
            if other in parent:
                union(name, other)

    needs: Dict[str, Set[str]] = {}
    for key, node in graph.nodes.items():
        for t, _ in node.users:
            if t in parent:
                needs.setdefault(find(t), set()).add(key)

    members: Dict[str, List[str]] = {}
    for t in graph.matrix_targets():
        members.setdefault(find(t), []).append(t)
    return [(len(needs.get(root, ())), ts) for root, ts in members.items()]


def shards(graph: BuildGraph, n: int) -> List[List[str]]:
    """All ``n`` shards (see the module doc)."""
    _check(1, n)
    order = {t: i for i, t in enumerate(graph.matrix_targets())}
    groups = sorted(_groups(graph), key=lambda g: (-g[0], order[g[1][0]]))
    load = [0] * n
    out: List[List[str]] = [[] for _ in range(n)]
    for weight, ts in groups:
        s = min(range(n), key=lambda j: (load[j], j))
        load[s] += weight
        out[s].extend(ts)
    return [sorted(ts, key=order.__getitem__) for ts in out]


def shard(graph: BuildGraph, i: int, n: int) -> List[str]:
    """The requested targets of shard ``i`` of ``n`` (1-based)."""
    if isinstance(i, bool) or isinstance(n, bool) or not isinstance(i, int) \
            or not isinstance(n, int):
        raise BakeryError(f"invalid shard {i!r}/{n!r}",
                          hint="shard numbers are integers: the I-th of N shards, 1-based")
    _check(i, n)
    return shards(graph, n)[i - 1]
