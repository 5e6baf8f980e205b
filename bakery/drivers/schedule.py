"""Which node of a builder builds what, and when: pure scheduling.

:func:`plan_jobs` turns targets into jobs: one per target, or one per
platform for a multi-platform target (each routed to the nodes that declare
that platform; the driver joins their images into one index afterwards).
:class:`Scheduler` hands out ready jobs to nodes as slots free up:

* a job is ready when every target its target depends on (``depends_on``
  and ``target:`` contexts) is complete;
* among the nodes that may build it, the least busy one wins (fewest
  running jobs, then fewest jobs given so far, then the builder's order);
* a target whose dependencies were built on some of its candidate nodes is
  kept on those nodes (for one platform of a split target: the nodes that
  built that platform of them, when any did): an image a dependency left in
  a Docker engine (its tag) exists only there.

Nothing here runs a process; the driver calls :meth:`Scheduler.next`,
:meth:`Scheduler.job_done` and :meth:`Scheduler.complete`.

Example::

    jobs = plan_jobs(targets, ["base", "app"], builder, host="linux/amd64")
    s = Scheduler(jobs, [n.name for n in builder.nodes], slots=1)
    job, node = s.next()          # ("base", None) on the least busy node
    s.job_done(job); s.complete("base")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from bakery.bakefile.model import Target
from bakery.drivers.builders import Builder, Node
from bakery.errors import BakeryError
from bakery.oci.media import parse_platform

__all__ = ["Job", "Scheduler", "nodes_for", "plan_jobs", "target_deps"]


@dataclass(frozen=True)
class Job:
    """Build ``target`` for ``platform`` (None: the node's default) on one of
    ``candidates``; ``split`` when it is one platform of a multi-platform
    target whose images the driver joins into one index."""

    target: str
    platform: Optional[str]
    candidates: Tuple[str, ...]
    split: bool = False


def target_deps(t: Target) -> List[str]:
    """What ``t`` needs built first: ``depends_on`` and ``target:`` contexts."""
    out = list(t.depends_on or [])
    for v in (t.contexts or {}).values():
        if isinstance(v, str) and v.startswith("target:"):
            name = v[len("target:"):]
            if name not in out:
                out.append(name)
    return out


def nodes_for(platform: Optional[str], nodes: Sequence[Node], host: str,
              builder: str = "") -> Tuple[str, ...]:
    """The nodes that build ``platform`` natively: those declaring it, else
    those declaring no platforms.  ``None`` (the target names no platform)
    means ``host``, the platform bakery runs on, but falls back to any node
    (which then builds its own default, as buildx does)."""
    want = str(parse_platform(platform or host))
    declared = tuple(n.name for n in nodes if want in n.platforms)
    if declared:
        return declared
    open_ = tuple(n.name for n in nodes if not n.platforms)
    if open_:
        return open_
    if platform is None:
        return tuple(n.name for n in nodes)
    served = sorted({p for n in nodes for p in n.platforms})
    raise BakeryError(f"no node of builder {builder} serves {want}",
                      hint=f"its nodes serve {', '.join(served)}; add one: bakery builder add "
                      f"{builder} --driver docker --endpoint ... --platform {want}")


def plan_jobs(targets: Mapping[str, Target], names: Sequence[str], builder: Builder,
              host: str) -> List[Job]:
    """Jobs for ``names`` (already in dependency order) on ``builder``."""
    jobs: List[Job] = []
    for n in names:
        plats = list(targets[n].build_platforms or [])
        if len(plats) <= 1:
            p = plats[0] if plats else None
            try:
                jobs.append(Job(n, p, nodes_for(p, builder.nodes, host, builder.name)))
            except BakeryError as e:
                raise BakeryError(f"target {n}: {e.message}", hint=e.hint) from None
            continue
        seen: Set[str] = set()
        for p in plats:
            norm = str(parse_platform(p))
            if norm in seen:
                continue
            seen.add(norm)
            try:
                cands = nodes_for(p, builder.nodes, host, builder.name)
            except BakeryError as e:
                raise BakeryError(f"target {n}: {e.message}", hint=e.hint) from None
            jobs.append(Job(n, p, cands, split=True))
    return jobs


def _norm(platform: Optional[str]) -> str:
    if platform is None:
        return ""
    try:
        return str(parse_platform(platform))
    except (ValueError, BakeryError):
        return platform


class Scheduler:
    """Hands ready jobs to the least busy node with a free slot (see the
    module doc).  ``slots``: jobs one node runs at once."""

    def __init__(self, jobs: Sequence[Job], deps: Mapping[str, Sequence[str]],
                 nodes: Sequence[str], slots: int = 1):
        self.pending: List[Job] = list(jobs)
        self.deps = {t: [d for d in ds if any(j.target == d for j in jobs)]
                     for t, ds in deps.items()}
        self.order = list(nodes)
        self.slots = max(1, slots)
        self.running: Dict[str, int] = {n: 0 for n in nodes}
        self.given: Dict[str, int] = {n: 0 for n in nodes}
        self.built_on: Dict[str, Set[str]] = {}  # target -> nodes that built (part of) it
        # (target, platform) -> nodes that built it for that platform
        self.built_for: Dict[Tuple[str, str], Set[str]] = {}
        self.where: Dict[Job, str] = {}
        self.left: Dict[str, int] = {}
        for j in jobs:
            self.left[j.target] = self.left.get(j.target, 0) + 1
        self.completed: Set[str] = set()

    def _ready(self, job: Job) -> bool:
        return all(d in self.completed for d in self.deps.get(job.target, ()))

    def _nodes(self, job: Job) -> List[str]:
        cands = [n for n in self.order if n in job.candidates]
        near: Set[str] = set()
        plat = _norm(job.platform)
        for d in self.deps.get(job.target, ()):
            # the node that built the dependency for this platform, else any that built it
            near |= self.built_for.get((d, plat), set()) or self.built_on.get(d, set())
        pinned = [n for n in cands if n in near]
        return pinned or cands

    def next(self) -> Optional[Tuple[Job, str]]:
        """The next job to start and its node, or None when nothing can start
        now (all slots busy, or every pending job waits for a dependency)."""
        for job in self.pending:
            if not self._ready(job):
                continue
            free = [n for n in self._nodes(job) if self.running[n] < self.slots]
            if not free:
                continue
            node = min(free, key=lambda n: (self.running[n], self.given[n], self.order.index(n)))
            self.pending.remove(job)
            self.running[node] += 1
            self.given[node] += 1
            self.where[job] = node
            self.built_on.setdefault(job.target, set()).add(node)
            self.built_for.setdefault((job.target, _norm(job.platform)), set()).add(node)
            return job, node
        return None

    def job_done(self, job: Job) -> bool:
        """Free ``job``'s slot; True when it was its target's last job (the
        driver then joins a split target and calls :meth:`complete`)."""
        self.running[self.where[job]] -= 1
        self.left[job.target] -= 1
        return self.left[job.target] == 0

    def complete(self, target: str) -> None:
        self.completed.add(target)

    def idle(self) -> bool:
        return not self.pending and all(v == 0 for v in self.running.values())
