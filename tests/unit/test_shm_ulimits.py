"""A target's ``shm-size`` and ``ulimits`` reach RUN steps: bake target →
BuildRequest → Exec (and its cache key) → RunSpec, and the docker driver."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, List

import pytest

from bakery.bakefile.model import Target
from bakery.dockerfile.convert import convert
from bakery.dockerfile.request import BuildRequest, parse_shm_size, parse_ulimits
from bakery.drivers import docker_build_args
from bakery.drivers.docker import check_engine_limits
from bakery.engine.executor import Engine
from bakery.engine.sandbox.spec import DEFAULT_SHM_SIZE, RunResult
from bakery.engine.snapshots import Snapshotter
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.graph.build import build_graph
from bakery.graph.keys import canonical, op_key
from bakery.graph.ops import Exec, FileOp, ImageSource, Mkfile, Platform, Ref, ScratchSource

AMD64 = Platform("linux", "amd64")
BUSYBOX = "docker.io/library/busybox:latest"


# -- parsing the target's attributes --------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    (None, 0), ("", 0), ("128m", 128 << 20), ("1g", 1 << 30), ("64MiB", 64 << 20),
    ("65536", 65536), ("512k", 512 << 10), ("2GB", 2 << 30),
])
def test_shm_size_is_go_units_ram_in_bytes(value: Any, expected: int) -> None:
    assert parse_shm_size("app", value) == expected


@pytest.mark.parametrize("value", ["lots", "-1", "12x", "1.5.5q"])
def test_bad_shm_size_names_the_target_attribute(value: str) -> None:
    with pytest.raises(BakeryError, match=r"target app: invalid value .* for membytes key shm-size") as e:
        parse_shm_size("app", value)
    assert e.value.hint and "128m" in e.value.hint


def test_ulimits_are_normalised_sorted_and_deduplicated() -> None:
    assert parse_ulimits("app", None) == ()
    assert parse_ulimits("app", ["nofile=1024:2048", "NPROC=512", "core=-1", "nofile=10"]) == (
        "core=-1:-1", "nofile=10:10", "nproc=512:512")
    # equivalent spellings are one value (one cache key)
    assert parse_ulimits("app", ["nofile=5"]) == parse_ulimits("app", ["nofile = 5:5"])


@pytest.mark.parametrize("bad,msg", [
    ("nofile", "invalid ulimit argument"),
    ("bogus=1", "invalid ulimit type: bogus"),
    ("nofile=3:2", "soft limit must be less than or equal to hard limit"),
    ("nofile=a", "invalid ulimit value"),
    ("nofile=1:2:3", "too many limit value arguments"),
])
def test_bad_ulimits_name_the_target_attribute(bad: str, msg: str) -> None:
    with pytest.raises(BakeryError, match=f"target app: ulimits: .*{msg}"):
        parse_ulimits("app", ["nproc=1", bad])


# -- bake target → BuildRequest -------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.requests: List[BuildRequest] = []

    def __call__(self, request: BuildRequest, image_config: object = None) -> Any:
        self.requests.append(request)
        return convert(request, lambda img: None)


def _graph(tmp_path: Any, **attrs: Any) -> Any:
    d = str(tmp_path)
    with open(os.path.join(d, "Dockerfile"), "w") as fh:
        fh.write("FROM busybox\nRUN echo hi\n")
    rec = Recorder()
    t = Target("app", context=".", **attrs)
    g = build_graph({"app": t}, ["app"], d, convert=rec, file_digest=lambda s, p: "sha256:" + "0" * 64,
                    build_platform=AMD64)
    return rec.requests[0], g


def _execs(g: Any) -> List[Exec]:
    return [n.op for n in g.nodes.values() if isinstance(n.op, Exec)]


def test_request_and_exec_carry_the_targets_values(tmp_path: Any) -> None:
    r, g = _graph(tmp_path, shm_size="128m", ulimits=["nofile=1024:2048", "nproc=100"])
    assert r.shm_size == 128 << 20
    assert r.ulimits == ("nofile=1024:2048", "nproc=100:100")
    (ex,) = _execs(g)
    assert ex.shm_size == 128 << 20
    assert ex.ulimits == ("nofile=1024:2048", "nproc=100:100")


def test_a_target_without_them_keeps_the_defaults(tmp_path: Any) -> None:
    r, g = _graph(tmp_path)
    assert (r.shm_size, r.ulimits) == (0, ())
    (ex,) = _execs(g)
    assert (ex.shm_size, ex.ulimits) == (0, ())
    assert b"shm_size" not in canonical(ex) and b"ulimits" not in canonical(ex)


def test_bad_values_in_the_bake_target_are_errors(tmp_path: Any) -> None:
    with pytest.raises(BakeryError, match="target app: invalid value 'huge' for membytes key shm-size"):
        _graph(tmp_path, shm_size="huge")
    with pytest.raises(BakeryError, match="target app: ulimits: invalid ulimit type: files"):
        _graph(tmp_path, ulimits=["files=10"])


def test_convert_puts_them_on_every_run_step() -> None:
    req = BuildRequest(target="t", dockerfile="FROM busybox\nRUN a\nRUN b\n", dockerfile_name="Dockerfile",
                       context="/ctx", platform=AMD64, build_platform=AMD64, shm_size=1 << 20,
                       ulimits=("nofile=1:2",))
    e = convert(req, lambda img: None)
    execs = []
    ref = e.rootfs
    while isinstance(ref.op, Exec):
        execs.append(ref.op)
        ref = ref.op.rootfs
    assert len(execs) == 2
    assert all(x.shm_size == 1 << 20 and x.ulimits == ("nofile=1:2",) for x in execs)


# -- cache keys --------------------------------------------------------------------


def _exec(**kw: Any) -> Exec:
    return Exec(rootfs=Ref(ImageSource(BUSYBOX, AMD64)), args=("/bin/sh", "-c", "echo hi > /f"),
                env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",), cwd="/", platform=AMD64, **kw)


# the key of this step before shm_size and ulimits existed (tests/unit/test_graph_keys.py)
PINNED = "sha256:f886382c925d9f427055a1bbe093771c362add8bb53ea4f31f75975797617c02"


def test_a_step_without_them_keeps_its_key() -> None:
    assert op_key(_exec(), None) == PINNED
    assert op_key(_exec(shm_size=0, ulimits=()), None) == PINNED


def test_they_are_part_of_the_key() -> None:
    keys = {op_key(_exec(**kw), None) for kw in (
        {}, {"shm_size": 128 << 20}, {"shm_size": 256 << 20}, {"ulimits": ("nofile=1:2",)},
        {"ulimits": ("nofile=1:3",)}, {"shm_size": 128 << 20, "ulimits": ("nofile=1:2",)})}
    assert len(keys) == 6


# -- Exec → RunSpec ----------------------------------------------------------------


@pytest.mark.parametrize("kw,shm,ulimits", [
    ({}, DEFAULT_SHM_SIZE, ()),
    ({"shm_size": 1 << 20, "ulimits": ("nofile=64:128",)}, 1 << 20, ("nofile=64:128",)),
])
def test_the_executor_puts_them_in_the_run_spec(tmp_path: Any, kw: Any, shm: int, ulimits: Any) -> None:
    seen: List[Any] = []

    class SpecSandbox:
        def run(self, spec: Any, stdout_cb: Any = None, cancel: Any = None) -> RunResult:
            seen.append(spec)
            return RunResult(0, b"", 0.0)

    store = Store(str(tmp_path / "store"))
    scratch = ScratchSource()
    base = FileOp(Ref(scratch), (Mkfile("/etc/os", b"fake\n"),))
    step = Exec(Ref(base), ("x",), ("PATH=/bin",), "/", AMD64, **kw)
    k0, k1, k2 = (op_key(op, None) for op in (scratch, base, step))
    ops = {k0: scratch, k1: base, k2: step}
    deps = {k0: (), k1: (k0,), k2: (k1,)}
    Engine(store, SpecSandbox(), snapshotter=Snapshotter(store, "copy")).run(
        ops, deps, [k2])
    assert [(s.shm_size, s.ulimits) for s in seen] == [(shm, ulimits)]


# -- the docker driver ---------------------------------------------------------------


def test_docker_driver_checks_the_values_before_passing_them(tmp_path: Any) -> None:
    t = Target("app", context=str(tmp_path), shm_size="128m", ulimits=["nofile=1024:2048"])
    argv = docker_build_args(t, None, "unix:///run/d.sock", str(tmp_path)).argv
    assert argv[argv.index("--shm-size") + 1] == "128m"
    assert argv[argv.index("--ulimit") + 1] == "nofile=1024:2048"
    for bad in (dataclasses.replace(t, shm_size="big"), dataclasses.replace(t, ulimits=["x=1"])):
        with pytest.raises(BakeryError, match="target app: "):
            docker_build_args(bad, None, "unix:///run/d.sock", str(tmp_path))


@pytest.mark.parametrize("version,refused", [
    ("20.10.24+dfsg1", True), ("22.06.0-beta.0", True), ("23.0.0", False), ("28.2.2", False),
    (None, False), ("", False), ("dev", False),
])
def test_docker_engines_that_drop_the_limits_are_refused(version: Any, refused: bool) -> None:
    if not refused:
        check_engine_limits("app", version)
        return
    with pytest.raises(BakeryError, match=f"target app: shm-size and ulimits are ignored by "
                                          f"Docker Engine {re.escape(version)}") as e:
        check_engine_limits("app", version)
    assert e.value.hint and "bakery run" in e.value.hint
