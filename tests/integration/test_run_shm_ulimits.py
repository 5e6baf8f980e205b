"""A target's ``shm-size`` and ``ulimits`` reach RUN steps under runc and the
namespace sandbox, through ``bakery run`` (bake file → step → sandbox)."""

from __future__ import annotations

import re

import pytest

from tests.integration import test_run_steps
from tests.integration.test_run_steps import Project

base = test_run_steps.base  # the fixtures: a busybox base image in a local registry
project = test_run_steps.project
SANDBOX_LINE = {"runc": "sandbox: runc ", "namespace": "sandbox: Linux namespaces"}

pytestmark = pytest.mark.integration

STEP = """\
ARG BASE
FROM $BASE
RUN echo "limits=$(ulimit -Sn):$(ulimit -Hn) procs=$(ulimit -Su)" && grep " /dev/shm " /proc/mounts \\
    && df -k /dev/shm | tail -n 1
"""


def _limits(stderr: str) -> str:
    m = re.search(r"limits=(\d+:\d+) procs=(\d+)", stderr)
    assert m, stderr[-3000:]
    return f"{m.group(1)} {m.group(2)}"


def _shm(stderr: str) -> str:
    m = re.search(r"/dev/shm tmpfs (\S+)", stderr)
    assert m, stderr[-3000:]
    return m.group(1)


@pytest.mark.parametrize("sandbox", ["runc", "namespace"])
def test_shm_size_and_ulimits_reach_the_step(project: Project, sandbox: str) -> None:
    project.write(STEP, extra='  shm-size = "128m"\n  ulimits = ["nofile=1024:2048", "nproc=300"]\n')
    r = project.run("app", BAKERY_SANDBOX=sandbox)
    assert SANDBOX_LINE[sandbox] in r.stderr, r.stderr[:500]
    assert _limits(r.stderr) == "1024:2048 300"
    opts = _shm(r.stderr).split(",")
    assert "size=131072k" in opts and "noexec" in opts and "nosuid" in opts, opts
    assert re.search(r"\s131072\s", r.stderr), r.stderr[-3000:]  # df's 1K-blocks

    # another size is another step (the values are in the key), not a cache hit
    project.write(STEP, extra='  shm-size = "32m"\n  ulimits = ["nofile=1024:2048", "nproc=300"]\n')
    r = project.run("app", BAKERY_SANDBOX=sandbox)
    assert "size=32768k" in _shm(r.stderr).split(",")
    # the same values again: cached, the step does not run
    r = project.run("app", BAKERY_SANDBOX=sandbox)
    assert "0 steps run, 1 from the cache" in r.stderr, r.stderr[-3000:]
    assert not re.search(r"limits=\d", r.stderr)


def test_defaults_without_the_attributes(project: Project) -> None:
    project.write(STEP)
    r = project.run("app")
    assert "size=65536k" in _shm(r.stderr).split(",")  # BuildKit's and Docker's 64 MiB


def test_bad_values_are_errors_naming_the_attribute(project: Project) -> None:
    project.write(STEP, extra='  shm-size = "lots"\n')
    r = project.run("app", check=False)
    assert r.returncode == 1
    assert "target app: invalid value 'lots' for membytes key shm-size" in r.stderr
    assert "Traceback" not in r.stderr
    project.write(STEP, extra='  ulimits = ["nofile=2048:1024"]\n')
    r = project.run("app", check=False)
    assert r.returncode == 1
    assert "target app: ulimits: ulimit soft limit must be less than or equal to hard limit" in r.stderr
    assert "Traceback" not in r.stderr
