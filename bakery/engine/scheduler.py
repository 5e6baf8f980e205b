"""The scheduler: every node runs once, as soon as its inputs are done.

Nodes are identified by their cache keys, so a step that several targets,
platforms or matrix entries ask for is one node and runs once; everyone else
waits on it.  Concurrency is bounded by ``jobs`` (threads: the work is
processes, I/O and hashing, which release the GIL).

Failure policy:

* fail fast (default): the first failure stops new work; running nodes are
  cancelled through the ``cancel`` event they receive, and the run ends;
* keep going: nodes that do not depend on a failed one still run; nodes that
  do are marked ``skipped``.

Ctrl-C (KeyboardInterrupt in the calling thread) sets ``cancel``, waits for
running nodes to stop, and re-raises.

Example::

    deps = {"a": (), "b": ("a",), "c": ("a",)}
    results = Scheduler(jobs=2).run(deps, lambda key, inputs, cancel: key.upper())
    results["b"].value  # "B"; "a" ran once, before b and c
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Set

__all__ = ["NodeResult", "Scheduler"]

Execute = Callable[[str, Mapping[str, Any], threading.Event], Any]


@dataclass
class NodeResult:
    key: str
    status: str  # "done" | "failed" | "skipped" | "cancelled"
    value: Any = None
    error: Optional[BaseException] = None


class Scheduler:
    def __init__(self, jobs: int = 4, keep_going: bool = False):
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.jobs = jobs
        self.keep_going = keep_going
        self.cancel = threading.Event()

    def run(
        self,
        deps: Mapping[str, Sequence[str]],
        execute: Execute,
        wanted: Optional[Iterable[str]] = None,
    ) -> Dict[str, NodeResult]:
        """Run ``execute(key, {dep: value}, cancel)`` for every node needed
        by ``wanted`` (default: all), dependencies first."""
        needed = self._closure(deps, wanted if wanted is not None else deps.keys())
        waiting: Dict[str, Set[str]] = {k: set(deps[k]) for k in needed}
        users: Dict[str, Set[str]] = {k: set() for k in needed}
        for k in needed:
            for d in deps[k]:
                users[d].add(k)
        results: Dict[str, NodeResult] = {}
        running: Dict[Future, str] = {}
        stop = False

        def submit_ready(pool: ThreadPoolExecutor) -> None:
            for k in sorted(k for k, w in waiting.items() if not w and k not in results
                            and k not in running.values()):
                inputs = {d: results[d].value for d in deps[k]}
                running[pool.submit(execute, k, inputs, self.cancel)] = k

        def skip_users(k: str) -> None:
            for u in sorted(users[k]):
                if u not in results:
                    results[u] = NodeResult(u, "skipped", error=None)
                    waiting.pop(u, None)
                    skip_users(u)

        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="bakery-job")
        try:
            submit_ready(pool)
            while running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    k = running.pop(fut)
                    waiting.pop(k, None)
                    exc = fut.exception()
                    if exc is None:
                        results[k] = NodeResult(k, "done", fut.result())
                        for u in users[k]:
                            if u in waiting:
                                waiting[u].discard(k)
                    else:
                        status = "cancelled" if self.cancel.is_set() and not results_failed(results) else "failed"
                        results[k] = NodeResult(k, status, error=exc)
                        skip_users(k)
                        if not self.keep_going:
                            stop = True
                            self.cancel.set()
                if not stop:
                    submit_ready(pool)
        except BaseException:
            self.cancel.set()
            for fut in list(running):
                fut.cancel()
            wait(list(running))
            raise
        finally:
            pool.shutdown(wait=True)
        if not stop and any(k not in results for k in needed):
            stuck = sorted(k for k in needed if k not in results)
            raise ValueError(f"dependency cycle among {', '.join(stuck)}")
        for k in needed:
            if k not in results:
                results[k] = NodeResult(k, "cancelled")
        return results

    @staticmethod
    def _closure(deps: Mapping[str, Sequence[str]], wanted: Iterable[str]) -> Set[str]:
        out: Set[str] = set()
        stack = list(wanted)
        while stack:
            k = stack.pop()
            if k in out:
                continue
            if k not in deps:
                raise KeyError(f"unknown node {k}")
            out.add(k)
            stack.extend(deps[k])
        return out


def results_failed(results: Mapping[str, NodeResult]) -> bool:
    return any(r.status == "failed" for r in results.values())
