"""The executor with a fake sandbox: caching, dedup, failures (no root needed)."""

from __future__ import annotations

import os
import threading
from typing import Any, List

import pytest

from bakery.engine.executor import BuildFailed, Engine
from bakery.engine.sandbox.spec import RunResult
from bakery.engine.snapshots import Snapshotter
from bakery.engine.store import Store
from bakery.graph.keys import op_key
from bakery.graph.ops import Exec, FileOp, Mkfile, Platform, Ref, ScratchSource, SourceLocation

AMD64 = Platform("linux", "amd64")


class FakeSandbox:
    """Runs "commands" by writing files into the rootfs: args[0] is a file name."""

    def __init__(self) -> None:
        self.runs: List[tuple] = []
        self.lock = threading.Lock()

    def run(self, spec: Any, stdout_cb: Any = None, cancel: Any = None) -> RunResult:
        with self.lock:
            self.runs.append(spec.args)
        if spec.args[0] == "fail":
            if stdout_cb:
                stdout_cb(b"something went wrong\n")
            return RunResult(3, b"something went wrong\n", 0.0)
        with open(os.path.join(spec.rootfs, spec.args[0]), "w") as fh:
            fh.write(" ".join(spec.args[1:]))
        return RunResult(0, b"", 0.0)


def graph(*leaves: Any) -> tuple:
    ops, deps = {}, {}

    def add(op: Any) -> str:
        k = op_key(op, lambda src, pats: "files")
        if k in ops:
            return k
        inputs: List[str] = []
        if isinstance(op, Exec):
            inputs.append(add(op.rootfs.op))
        if isinstance(op, FileOp) and op.base is not None:
            inputs.append(add(op.base.op))
        ops[k], deps[k] = op, tuple(inputs)
        return k

    roots = [add(leaf) for leaf in leaves]
    return ops, deps, roots


def base() -> FileOp:
    return FileOp(Ref(ScratchSource()), (Mkfile("/etc/os", b"fake\n"),))


def run_step(name: str, on: Any, fail: bool = False) -> Exec:
    return Exec(Ref(on), ("fail",) if fail else (name, "hello"), ("PATH=/bin",), "/", AMD64,
                location=SourceLocation("Dockerfile", 3, 3), description=f"RUN {name}")


@pytest.fixture()
def engine_parts(tmp_path):  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    return store, FakeSandbox(), Snapshotter(store, "copy")


def test_shared_steps_run_once_and_cache_across_runs(engine_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, sandbox, snaps = engine_parts
    b = base()
    a1, a2 = run_step("a", b), run_step("b", b)
    ops, deps, roots = graph(a1, a2, run_step("a", b))  # the third equals the first
    assert len(roots) == 3 and roots[0] == roots[2]
    e = Engine(store, sandbox, snapshotter=snaps, jobs=2)
    states = e.run(ops, deps, roots)
    assert sorted(sandbox.runs) == [("a", "hello"), ("b", "hello")]
    layers = states[roots[0]].layers
    assert len(layers) == 2  # the base file and the step's change
    out = tmp_path / "out"
    snaps.materialize(layers, str(out))
    assert (out / "a").read_text() == "hello" and (out / "etc" / "os").read_text() == "fake\n"
    # a new engine on the same store: everything comes from the records
    e2 = Engine(store, sandbox, snapshotter=snaps)
    assert e2.run(ops, deps, roots)[roots[1]].layers == states[roots[1]].layers
    assert e2.executed == {} and len(sandbox.runs) == 2
    # --no-cache runs everything again
    Engine(store, sandbox, snapshotter=snaps, no_cache=True).run(ops, deps, roots)
    assert len(sandbox.runs) == 4


def test_a_failed_step_names_its_line_and_records_nothing(engine_parts) -> None:  # type: ignore[no-untyped-def]
    store, sandbox, snaps = engine_parts
    bad = run_step("x", base(), fail=True)
    ops, deps, roots = graph(bad)
    with pytest.raises(BuildFailed) as e:
        Engine(store, sandbox, snapshotter=snaps).run(ops, deps, roots)
    assert "exit code: 3 (Dockerfile:3)" in e.value.message and "something went wrong" in e.value.message
    assert store.get_record(roots[0]) is None
    assert store.get_record(deps[roots[0]][0]) is not None  # the base step before it is kept
    assert os.listdir(store.session_dir()) == []  # this process's temporary files: none left
    store.end_session()
    assert os.listdir(os.path.join(store.root, "tmp")) == []


def test_network_host_needs_the_entitlement(engine_parts) -> None:  # type: ignore[no-untyped-def]
    store, sandbox, snaps = engine_parts
    step = Exec(Ref(base()), ("h",), (), "/", AMD64, network="host")
    ops, deps, roots = graph(step)
    with pytest.raises(BuildFailed, match=r"network\.host entitlement"):
        Engine(store, sandbox, snapshotter=snaps).run(ops, deps, roots)
    Engine(store, sandbox, snapshotter=snaps, allow_network_host=True).run(ops, deps, roots)


def test_proxy_env_reaches_the_process_after_the_env(engine_parts) -> None:  # type: ignore[no-untyped-def]
    store, _, snaps = engine_parts
    seen: List[tuple] = []

    class EnvSandbox:
        def run(self, spec: Any, stdout_cb: Any = None, cancel: Any = None) -> RunResult:
            seen.append(tuple(spec.env))
            return RunResult(0, b"", 0.0)

    step = Exec(Ref(base()), ("x",), ("PATH=/bin", "http_proxy=declared"), "/", AMD64,
                proxy_env=("HTTP_PROXY=http://p", "http_proxy=http://p"))
    ops, deps, roots = graph(step)
    Engine(store, EnvSandbox(), snapshotter=snaps).run(ops, deps, roots)
    # a declared ARG of the same name wins, as it is part of the step's definition
    assert seen == [("PATH=/bin", "http_proxy=declared", "HTTP_PROXY=http://p")]


def test_progress_names_carry_the_platform_of_multi_platform_targets() -> None:
    from bakery.engine.run import progress_name

    assert progress_name("[build 2/3] RUN make", "linux/arm64", True) == "[linux/arm64 build 2/3] RUN make"
    assert progress_name("[1/2] FROM busybox", "linux/amd64", True) == "[linux/amd64 1/2] FROM busybox"
    assert progress_name("[build 2/3] RUN make", "linux/arm64", False) == "[build 2/3] RUN make"
    assert progress_name("[internal] load build context", "linux/arm64", True) == "[internal] load build context"
    assert progress_name("[build 2/3] RUN make", None, True) == "[build 2/3] RUN make"


def test_step_counts_per_target() -> None:
    from types import SimpleNamespace as N

    from bakery.engine.run import step_counts
    from bakery.graph.ops import LocalSource

    g = N(nodes={
        "ctx": N(op=LocalSource("context", "/src"), users=[("x", "p")]),
        "a": N(op=None, users=[("x", "linux/amd64"), ("x", "linux/arm64")]),
        "b": N(op=None, users=[("x", "p"), ("y", "p")]),
        "c": N(op=None, users=[("y", "p")]),  # made unnecessary by a cached later step
    })
    states = {"ctx": N(cached=False), "a": N(cached=False), "b": N(cached=True)}
    assert step_counts(g, states, {"a": 1, "ctx": 1}) == {"x": {"run": 1, "cached": 1},
                                                         "y": {"run": 0, "cached": 1}}
