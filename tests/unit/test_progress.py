"""Progress modes: plain (BuildKit's format), json (validated against the
schema), quiet, tty (rendering; the pty test is in tests/integration), driven
by the real engine with a fake sandbox."""

from __future__ import annotations

import io
import json
import os
import re

import pytest

from bakery.engine.executor import BuildFailed, Engine
from bakery.engine.snapshots import Snapshotter
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.ui.progress import (
    JsonProgress,
    PlainProgress,
    QuietProgress,
    TtyProgress,
    make_progress,
)
from tests.unit.test_engine import FakeSandbox, base, graph, run_step

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def schema() -> dict:
    with open(os.path.join(ROOT, "schemas", "progress-event.schema.json")) as fh:
        return json.load(fh)  # type: ignore[no-any-return]


def build(tmp_path, progress, *leaves, **kw):  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    ops, deps, roots = graph(*leaves)
    progress.plan({k: ["app"] for k in ops})
    e = Engine(store, FakeSandbox(), snapshotter=Snapshotter(store, "copy"), jobs=1,
               progress=progress, **kw)
    descs = {k: getattr(op, "description", "") or f"step {i}" for i, (k, op) in enumerate(ops.items())}
    return e.run(ops, deps, roots, descs)


class Talker(FakeSandbox):
    def run(self, spec, stdout_cb=None, cancel=None):  # type: ignore[no-untyped-def]
        if stdout_cb:
            stdout_cb(b"line one\nline two\n")
        return super().run(spec, stdout_cb, cancel)


def test_plain_is_buildkits_format(tmp_path) -> None:  # type: ignore[no-untyped-def]
    err = io.StringIO()
    p = PlainProgress(err)
    p.start("k1", "[build 2/3] RUN make")
    p.output("k1", b"cc -o app\nok\n")
    p.done("k1", "[build 2/3] RUN make", "done", 1.25, False)
    p.done("k2", "[build 1/3] FROM base", "done", 0.0, True)
    p.start("k3", "[build 3/3] RUN test")
    p.done("k3", "[build 3/3] RUN test", "failed", 0.5, False, error="exit code: 1\nmore")
    lines = err.getvalue().splitlines()
    assert lines[0] == "#1 [build 2/3] RUN make"
    assert re.fullmatch(r"#1 \d+\.\d{3} cc -o app", lines[1])
    assert re.fullmatch(r"#1 \d+\.\d{3} ok", lines[2])
    assert lines[3] == "#1 DONE 1.2s" or lines[3] == "#1 DONE 1.3s"
    assert lines[4:6] == ["#2 [build 1/3] FROM base", "#2 CACHED"]
    assert lines[6:] == ["#3 [build 3/3] RUN test", "#3 ERROR: exit code: 1"]


def test_quiet_shows_only_the_result(tmp_path) -> None:  # type: ignore[no-untyped-def]
    err, out = io.StringIO(), io.StringIO()
    p = QuietProgress(err, stdout=out)
    build(tmp_path, p, run_step("a", base()))
    p.note("sandbox: runc")
    p.result("app: OCI layout out/app.tar")
    assert err.getvalue() == ""
    assert out.getvalue() == "app: OCI layout out/app.tar\n"


def test_json_events_follow_the_schema(tmp_path) -> None:  # type: ignore[no-untyped-def]
    jsonschema = pytest.importorskip("jsonschema")
    out = io.StringIO()
    p = JsonProgress(out)
    store = Store(str(tmp_path / "store"))
    b = base()
    ops, deps, roots = graph(run_step("a", b), run_step("bad", b, fail=True))
    p.plan({k: ["app", "tool"] for k in ops})
    e = Engine(store, Talker(), snapshotter=Snapshotter(store, "copy"), jobs=1, progress=p,
               keep_going=True)
    descs = {k: getattr(op, "description", "") or "base" for k, op in ops.items()}
    with pytest.raises(BuildFailed) as ei:
        e.run(ops, deps, roots, descs)
    p.error(ei.value.message, "look at the step's output")
    # a second run: the good steps are cached now
    e2 = Engine(store, Talker(), snapshotter=Snapshotter(store, "copy"), jobs=1, progress=p)
    e2.run(ops, deps, [roots[0]], descs)
    p.result("done")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    validator = jsonschema.Draft202012Validator(schema())
    jsonschema.Draft202012Validator.check_schema(schema())
    for ev in events:
        validator.validate(ev)
    kinds = [ev["event"] for ev in events]
    assert kinds[0] == "plan" and events[0]["total"] == len(ops) == 4 and events[0]["targets"] == ["app", "tool"]
    for kind in ("started", "log", "done", "error", "cached", "result"):
        assert kind in kinds, kinds
    log = next(ev for ev in events if ev["event"] == "log")
    assert log["data"] == "line one\nline two\n" and log["targets"] == ["app", "tool"]
    step_err = next(ev for ev in events if ev["event"] == "error" and "key" in ev)
    assert step_err["description"] == "RUN bad" and "exit code: 3" in step_err["message"]
    run_err = [ev for ev in events if ev["event"] == "error" and "key" not in ev]
    assert run_err and run_err[0]["hint"] == "look at the step's output"
    started = {ev["key"]: ev["step"] for ev in events if ev["event"] == "started"}
    for ev in events:  # a step keeps its number in every event
        if ev.get("key") in started:
            assert ev["step"] == started[ev["key"]]
    # the schema rejects what is not an event
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"v": 1, "time": 1.0, "event": "started", "key": "sha256:00"})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"v": 1, "time": 1.0, "event": "log", "key": "sha256:" + "0" * 64,
                            "step": 1, "description": "x", "targets": []})


def test_tty_draws_a_bar_and_the_running_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    err, out = io.StringIO(), io.StringIO()
    p = TtyProgress(err, stdout=out, interval=3600)  # redrawn on events only
    p.plan({"k1": ["app"], "k2": ["app"], "k3": ["app"]})
    p.start("k1", "[build 2/3] RUN make")
    p.output("k1", b"compiling foo.c\n")
    p.start("k2", "[build 3/3] RUN test")  # redraw: shows k1's last line
    screen = err.getvalue()
    assert "[+] Building" in screen and "0/3" in screen
    assert "=> [build 2/3] RUN make | compiling foo.c" in screen
    assert "\x1b[" in screen  # redrawn in place
    p.done("k1", "[build 2/3] RUN make", "done", 2.0, False)
    p.done("k2", "[build 3/3] RUN test", "failed", 1.0, False, error="boom")
    p.done("k3", "[1/3] FROM x", "done", 0.0, True)
    p.result("app: image")
    p.close()
    screen = err.getvalue()
    assert "#1 DONE [build 2/3] RUN make (2.0s)" in screen
    assert "#2 ERROR [build 3/3] RUN test" in screen
    assert "#3 CACHED [1/3] FROM x" in screen
    assert "3/3" in screen.rsplit("\x1b[", 1)[-1]  # the final bar
    assert out.getvalue() == "app: image\n"


def test_make_progress_modes() -> None:
    err = io.StringIO()  # not a terminal: auto is plain
    assert type(make_progress("auto", err, io.StringIO())) is PlainProgress
    assert type(make_progress("plain", err, io.StringIO())) is PlainProgress
    assert type(make_progress("json", err, io.StringIO())) is JsonProgress
    assert type(make_progress("quiet", err, io.StringIO())) is QuietProgress
    t = make_progress("tty", err, io.StringIO())
    assert type(t) is TtyProgress
    t.close()
    with pytest.raises(BakeryError, match="unknown progress mode"):
        make_progress("fancy", err)


def test_tty_view_strips_escape_sequences_from_step_output() -> None:
    err = io.StringIO()
    p = TtyProgress(err, stdout=io.StringIO(), interval=3600)
    p.plan({"k1": ["app"]})
    p.start("k1", "[2/2] RUN colourful\\\nthing")
    p.output("k1", b"\x1b[31mred\x1b[0m text\x07\n")
    p.start("k2", "other")  # redraw
    view = err.getvalue().rsplit("\x1b[J", 1)[-1]
    assert "=> [2/2] RUN colourful\\ thing | red text " in view and "\x07" not in view
    p.output("k1", b"50%\r100%\n")  # after a carriage return: what the terminal would show
    p.start("k3", "third")
    assert "| 100% " in err.getvalue().rsplit("\x1b[J", 1)[-1]
    p.close()
