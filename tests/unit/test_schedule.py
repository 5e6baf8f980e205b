"""Multi-node scheduling (bakery/drivers/schedule.py), pure: platform
routing, per-platform splitting, least-busy placement, dependencies and
node affinity, simulated without any process."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import pytest

from bakery.bakefile.model import Target
from bakery.drivers.builders import Builder, Node
from bakery.drivers.schedule import Job, Scheduler, nodes_for, plan_jobs, target_deps
from bakery.errors import BakeryError

AMD = Node("amd", "docker", "unix:///a", ("linux/amd64",))
ARM = Node("arm", "docker", "unix:///b", ("linux/arm64",))
BOTH = Node("both", "docker", "unix:///c", ("linux/amd64", "linux/arm64"))
OPEN = Node("open", "docker", "unix:///d")
HOST = "linux/amd64"


def test_routing_by_declared_platform() -> None:
    nodes = [AMD, ARM, BOTH]
    assert nodes_for("linux/arm64", nodes, HOST) == ("arm", "both")
    assert nodes_for("linux/aarch64", nodes, HOST) == ("arm", "both")  # normalised
    assert nodes_for("linux/amd64", nodes, HOST) == ("amd", "both")
    assert nodes_for(None, nodes, HOST) == ("amd", "both")  # no platform: the host's
    assert nodes_for(None, [ARM], HOST) == ("arm",)  # ...else any node (its default)
    assert nodes_for("linux/s390x", [AMD, OPEN], HOST) == ("open",)  # undeclared nodes take the rest
    with pytest.raises(BakeryError) as ei:
        nodes_for("linux/s390x", nodes, HOST, "fleet")
    assert "no node of builder fleet serves linux/s390x" in ei.value.message
    assert "--platform linux/s390x" in (ei.value.hint or "")


def test_plan_splits_multi_platform_targets() -> None:
    b = Builder("f", (AMD, ARM))
    targets = {
        "one": Target("one"),
        "multi": Target("multi", platforms=["linux/amd64", "linux/arm64", "linux/aarch64"]),
        "arm": Target("arm", platforms=["linux/arm64"]),
    }
    jobs = plan_jobs(targets, ["one", "multi", "arm"], b, HOST)
    assert jobs == [
        Job("one", None, ("amd",)),
        Job("multi", "linux/amd64", ("amd",), split=True),
        Job("multi", "linux/arm64", ("arm",), split=True),  # aarch64 is the same platform: once
        Job("arm", "linux/arm64", ("arm",)),
    ]
    with pytest.raises(BakeryError, match="target x: no node of builder f serves linux/riscv64"):
        plan_jobs({"x": Target("x", platforms=["linux/riscv64", "linux/amd64"])}, ["x"], b, HOST)


def test_target_deps() -> None:
    t = Target("t", depends_on=["a"], contexts={"b": "target:b", "c": "docker-image://x", "d": "target:a"})
    assert target_deps(t) == ["a", "b"]


def _simulate(s: Scheduler, durations: Dict[str, int]) -> List[Tuple[int, str, Optional[str], str]]:
    """Run the schedule in simulated time: each job takes durations[target]
    ticks.  Returns (start tick, target, platform, node) per job."""
    log: List[Tuple[int, str, Optional[str], str]] = []
    running: List[Tuple[int, Job]] = []
    now = 0
    while True:
        while True:
            nxt = s.next()
            if nxt is None:
                break
            job, node = nxt
            log.append((now, job.target, job.platform, node))
            running.append((now + durations.get(job.target, 1), job))
        if not running:
            break
        running.sort(key=lambda r: r[0])
        end, job = running.pop(0)
        now = end
        if s.job_done(job):
            s.complete(job.target)
    assert s.idle()
    return log


def test_independent_targets_spread_least_busy_first() -> None:
    jobs = [Job(n, None, ("amd", "both")) for n in ("a", "b", "c", "d")]
    s = Scheduler(jobs, {}, ["amd", "both"], slots=1)
    log = _simulate(s, {"a": 5, "b": 1, "c": 1, "d": 1})
    where = {t: n for _, t, _, n in log}
    assert where["a"] == "amd" and where["b"] == "both"
    # a is long: the free node takes c and d
    assert where["c"] == "both" and where["d"] == "both"
    assert [t for _, t, _, _ in log] == ["a", "b", "c", "d"]


def test_ties_go_to_the_node_given_fewer_jobs() -> None:
    jobs = [Job(n, None, ("x", "y")) for n in ("a", "b", "c", "d")]
    s = Scheduler(jobs, {}, ["x", "y"], slots=2)
    started = [s.next() for _ in range(4)]
    assert [(j.target, n) for j, n in started if j] == [("a", "x"), ("b", "y"), ("c", "x"), ("d", "y")]
    assert s.next() is None  # all four slots busy, nothing pending


def test_dependencies_wait_and_stay_near() -> None:
    jobs = [Job("base", None, ("x", "y")), Job("other", None, ("x", "y")),
            Job("app", None, ("x", "y"))]
    s = Scheduler(jobs, {"app": ["base"]}, ["x", "y"], slots=2)
    j1, n1 = s.next() or (None, "")
    j2, n2 = s.next() or (None, "")
    assert (j1 and j1.target, n1, j2 and j2.target, n2) == ("base", "x", "other", "y")
    assert s.next() is None  # app waits for base
    assert j2 is not None and j1 is not None
    s.job_done(j2)
    s.complete("other")
    assert s.next() is None  # still waiting: base is not complete
    s.job_done(j1)
    s.complete("base")
    j3, n3 = s.next() or (None, "")
    # y is idle, but base's image lives in x's engine: app goes to x
    assert j3 is not None and (j3.target, n3) == ("app", "x")


def test_split_target_completes_after_all_platforms() -> None:
    jobs = [Job("m", "linux/amd64", ("amd",), True), Job("m", "linux/arm64", ("arm",), True),
            Job("after", None, ("amd", "arm"))]
    s = Scheduler(jobs, {"after": ["m"]}, ["amd", "arm"], slots=1)
    a = s.next()
    b = s.next()
    assert a is not None and b is not None
    assert {(a[0].platform, a[1]), (b[0].platform, b[1])} == {("linux/amd64", "amd"),
                                                              ("linux/arm64", "arm")}
    assert s.next() is None
    assert s.job_done(a[0]) is False  # one platform left
    assert s.next() is None
    assert s.job_done(b[0]) is True  # the last one: the driver joins, then completes
    assert s.next() is None
    s.complete("m")
    nxt = s.next()
    assert nxt is not None and nxt[0].target == "after"


def test_simulated_monorepo_on_two_nodes() -> None:
    b = Builder("f", (AMD, BOTH))
    targets = {n: Target(n) for n in ("api", "worker", "web", "docs")}
    targets["multi"] = Target("multi", platforms=["linux/amd64", "linux/arm64"])
    targets["api"] = Target("api", depends_on=["docs"])
    names = ["docs", "api", "worker", "web", "multi"]
    s = Scheduler(plan_jobs(targets, names, b, HOST), {n: target_deps(t) for n, t in targets.items()},
                  ["amd", "both"], slots=1)
    log = _simulate(s, {})
    nodes = {n for _, _, _, n in log}
    assert nodes == {"amd", "both"}
    arm = [n for _, t, p, n in log if p == "linux/arm64"]
    assert arm == ["both"]  # only "both" serves arm64
    start = {(t, p): tick for tick, t, p, _ in log}
    assert start[("api", None)] > start[("docs", None)]


def test_split_dependents_stay_on_the_node_of_the_same_platform() -> None:
    # both nodes serve both platforms: each platform of app goes where that platform of base
    # was built (its temporary context tag lives there), whatever the load says
    jobs = [Job("base", "linux/amd64", ("x", "y"), True), Job("base", "linux/arm64", ("x", "y"), True),
            Job("app", "linux/arm64", ("x", "y"), True), Job("app", "linux/amd64", ("x", "y"), True)]
    s = Scheduler(jobs, {"app": ["base"]}, ["x", "y"], slots=2)
    a, b = s.next(), s.next()
    assert a is not None and b is not None
    assert (a[0].platform, a[1], b[0].platform, b[1]) == ("linux/amd64", "x", "linux/arm64", "y")
    s.job_done(a[0])
    s.job_done(b[0])
    s.complete("base")
    got = {}
    for _ in range(2):
        nxt = s.next()
        assert nxt is not None
        got[nxt[0].platform] = nxt[1]
    assert got == {"linux/arm64": "y", "linux/amd64": "x"}
