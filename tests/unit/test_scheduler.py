"""The scheduler with fake nodes that count executions (as BuildKit's solver tests do)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Mapping

import pytest

from bakery.engine.scheduler import Scheduler


class Recorder:
    def __init__(self, fail: str = "", slow: float = 0.0):
        self.count: Counter = Counter()
        self.order: list = []
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.fail = fail
        self.slow = slow

    def __call__(self, key: str, inputs: Mapping[str, Any], cancel: threading.Event) -> Any:
        with self.lock:
            self.count[key] += 1
            self.order.append(key)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            deadline = time.time() + self.slow
            while time.time() < deadline:
                if cancel.is_set():
                    raise RuntimeError(f"{key} cancelled")
                time.sleep(0.005)
            if key == self.fail:
                raise RuntimeError(f"{key} failed")
            return key + "(" + ",".join(sorted(str(v) for v in inputs.values())) + ")"
        finally:
            with self.lock:
                self.active -= 1


def test_diamond_runs_each_node_once_in_order() -> None:
    deps = {"base": (), "l": ("base",), "r": ("base",), "top": ("l", "r")}
    rec = Recorder()
    res = Scheduler(jobs=4).run(deps, rec)
    assert set(rec.count.values()) == {1}
    assert res["top"].value == "top(l(base()),r(base()))"
    assert rec.order[0] == "base" and rec.order[-1] == "top"


def test_concurrency_is_bounded_and_used() -> None:
    deps = {f"n{i}": () for i in range(8)}
    rec = Recorder(slow=0.05)
    Scheduler(jobs=3).run(deps, rec)
    assert rec.peak == 3


def test_only_wanted_closure_runs() -> None:
    deps = {"a": (), "b": ("a",), "unrelated": ()}
    rec = Recorder()
    res = Scheduler().run(deps, rec, wanted=["b"])
    assert set(res) == {"a", "b"} and "unrelated" not in rec.count


def test_fail_fast_cancels_running_work() -> None:
    deps = {"bad": (), "slow": (), "after": ("bad",)}
    rec = Recorder(fail="bad", slow=0.0)
    slow_rec = Recorder(slow=5.0)

    def ex(key: str, inputs: Mapping[str, Any], cancel: threading.Event) -> Any:
        return (slow_rec if key == "slow" else rec)(key, inputs, cancel)

    t0 = time.time()
    res = Scheduler(jobs=2).run(deps, ex)
    assert time.time() - t0 < 2
    assert res["bad"].status == "failed" and res["after"].status == "skipped"
    assert res["slow"].status in ("cancelled", "failed")


def test_keep_going_runs_independent_work() -> None:
    deps = {"bad": (), "after": ("bad",), "ok": (), "ok2": ("ok",)}
    res = Scheduler(jobs=1, keep_going=True).run(deps, Recorder(fail="bad"))
    assert res["bad"].status == "failed" and res["after"].status == "skipped"
    assert res["ok2"].status == "done"


def test_cycle_is_reported() -> None:
    with pytest.raises(ValueError, match="dependency cycle among a, b"):
        Scheduler().run({"a": ("b",), "b": ("a",)}, Recorder())


def test_an_interrupted_worker_fails_its_node_and_cancels_the_rest() -> None:
    started = threading.Event()

    def ex(key: str, inputs: Mapping[str, Any], cancel: threading.Event) -> Any:
        if key == "boom":
            started.wait(2)
            raise KeyboardInterrupt
        started.set()
        while not cancel.is_set():
            time.sleep(0.01)
        raise RuntimeError("cancelled")

    s = Scheduler(jobs=2)
    # KeyboardInterrupt raised in a worker surfaces as that node's failure
    res = s.run({"boom": (), "wait": ()}, ex)
    assert res["boom"].status == "failed" and s.cancel.is_set()
