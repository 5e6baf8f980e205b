"""SIGKILL of bakery during a RUN step in the namespace sandbox takes the
step's whole process tree along (parent-death signals on the helper and on
the PID namespace's init; the init's death empties the namespace), and the
next run cleans up and succeeds."""

from __future__ import annotations

import os
import random
import subprocess
import time
from typing import Iterator, List

import pytest

from tests.integration import test_run_steps
from tests.integration.test_run_steps import Project

pytestmark = pytest.mark.integration

base = test_run_steps.base  # the fixtures: a busybox base image in a local registry
project = test_run_steps.project


def _procs(needle: str) -> List[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if needle in line and "ps -ww" not in line]


def _sleepers(n: int) -> List[str]:
    """The test's `sleep 60<n><i>` processes (not the shell that started them)."""
    return [line for line in _procs(f"sleep 60{n}") if line.split(None, 2)[2].startswith("sleep ")]


def _unmount_under(path: str) -> None:
    """Undo what a killed run left mounted (a failed test must not leave
    mounts in pytest's temporary directory)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(path + "/")]
    for p in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


@pytest.fixture()
def ns_project(project: Project) -> Iterator[Project]:
    try:
        yield project
    finally:
        _unmount_under(project.path)


def test_sigkill_during_a_namespace_run_step_leaves_no_process(ns_project: Project) -> None:
    project = ns_project
    # three sleepers: the init's child, one ignoring HUP/TERM/INT, one in its own
    # session; all unique to this test run
    n = random.randrange(10000, 99999)
    d1, d2, d3 = (f"60{n}{i}" for i in range(3))
    tag = f"nskill-{n}"
    project.write(
        f"ARG BASE\nFROM $BASE\nRUN echo {tag}; (trap '' HUP TERM INT; sleep {d1}) & "
        f"setsid sleep {d2} & sleep {d3}; echo {tag}-woke > /woke\n")
    proc = subprocess.Popen(project.cmd("app"), cwd=project.path, env=project.env(BAKERY_SANDBOX="namespace"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(_sleepers(n)) < 3:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert len(_sleepers(n)) == 3, _sleepers(n)
        helpers = [p for p in _procs("_nschild.py") if "bakery-reaper" not in p
                   and f" {proc.pid}" in p.split("_nschild.py")[1]]
        assert len(helpers) == 1, _procs("_nschild.py")
        helper = helpers[0].split()[0]
        # its reaper watches bakery, with the run's private directories
        reapers = [p.split() for p in _procs("bakery-reaper") if f"bakery-reaper {helper} {proc.pid} " in p]
        assert len(reapers) == 1, _procs("bakery-reaper")
        dirs = reapers[0][-2:]
        assert all(os.path.basename(d).startswith("bakery-run-") and os.path.isdir(d) for d in dirs), dirs
        time.sleep(0.3)
    finally:
        proc.kill()  # SIGKILL to bakery alone (the helper runs in its own session)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -9
    assert "sandbox: Linux namespaces" in err, err[:500]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _sleepers(n):
        time.sleep(0.1)
    assert _sleepers(n) == []
    assert [p for p in _procs("_nschild.py") if p.split()[0] == helper] == []
    assert [p for p in _procs("bakery-reaper") if f"bakery-reaper {helper} " in p] == []
    while time.monotonic() < deadline and any(os.path.exists(d) for d in dirs):
        time.sleep(0.1)
    assert [d for d in dirs if os.path.exists(d)] == []  # hosts, resolv.conf, secrets: removed
    # the next run cleans up what the killed one left (mounts, temporary files) and succeeds
    project.write(f"ARG BASE\nFROM $BASE\nRUN echo {tag}; sleep 0; echo {tag}-woke > /woke\n")
    project.run("app", BAKERY_SANDBOX="namespace")
    files = {name: entry[1] for layer in project.layers() for name, entry in layer.items()}
    assert files.get("woke", b"").strip() == f"{tag}-woke".encode(), sorted(files)[:20]
    store = os.path.join(project.cache, "store")
    with open("/proc/self/mountinfo") as f:
        assert store not in f.read()
    assert os.listdir(os.path.join(store, "tmp")) == []
