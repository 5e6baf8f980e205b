"""Progress for ``bakery run``: one small interface, five modes.

The engine reports every step through four calls (:class:`Progress`):
``start`` (a step begins to run), ``output`` (bytes its process wrote),
``done`` (it ended: ``status`` is ``done``, ``failed`` or ``cancelled``;
``cached`` when the store had its result and nothing ran) and ``note``
(a line about the run).  ``plan`` tells the reporter, before anything
runs, which steps there are and which targets need each one; ``result``
and ``error`` end the run.

Modes (``--progress``, :func:`make_progress`):

* ``tty``   a tqdm bar of finished/total steps and one line per running
  step (its last output line beside it), redrawn in place; finished steps
  scroll above it.  The default when stderr is a terminal.
* ``plain`` BuildKit's plain format: ``#N description``, ``#N 0.123 log
  line`` (seconds since the step started), ``#N DONE 1.2s``, ``#N CACHED``,
  ``#N ERROR: ...``.  The default otherwise (CI logs).
* ``json``  one JSON object per line on stdout (the machine interface; see
  docs/progress.md and schemas/progress-event.schema.json).
* ``quiet`` nothing but errors and the final result.

Example::

    p = make_progress("plain", sys.stderr)
    p.start("sha256:..", "[2/3] RUN make")
    p.output("sha256:..", b"cc -o app app.c\\n")
    p.done("sha256:..", "[2/3] RUN make", "done", 1.2, False)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from typing import IO, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "MODES",
    "JsonProgress",
    "PlainProgress",
    "Progress",
    "QuietProgress",
    "TtyProgress",
    "make_progress",
]

MODES = ("auto", "tty", "plain", "json", "quiet")


class Progress:
    """The interface (and a reporter that shows nothing)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.numbers: Dict[str, int] = {}
        self.targets: Dict[str, Tuple[str, ...]] = {}  # key -> targets that need it
        self.total = 0
        self.finished = 0

    def _n(self, key: str) -> int:
        with self.lock:
            if key not in self.numbers:
                self.numbers[key] = len(self.numbers) + 1
            return self.numbers[key]

    def plan(self, steps: Mapping[str, Sequence[str]]) -> None:
        """``steps``: key → names of the targets that need it (every step
        the run may execute; sources that are not steps left out)."""
        with self.lock:
            self.targets = {k: tuple(sorted(set(v))) for k, v in steps.items()}
            self.total = len(steps)

    def note(self, text: str) -> None:
        pass

    def start(self, key: str, description: str) -> None:
        pass

    def output(self, key: str, data: bytes) -> None:
        pass

    def done(self, key: str, description: str, status: str, seconds: float, cached: bool,
             error: str = "") -> None:
        pass

    def result(self, text: str) -> None:
        """A line of the final result (always shown, on stdout)."""

    def error(self, message: str, hint: Optional[str] = None) -> None:
        """The run failed (the CLI prints the error itself)."""

    def close(self) -> None:
        pass


class PlainProgress(Progress):
    """BuildKit's ``--progress plain``: numbered lines, timings, CACHED."""

    def __init__(self, out: IO[str], quiet: bool = False, stdout: Optional[IO[str]] = None):
        super().__init__()
        self.out = out
        self.stdout = stdout
        self.quiet = quiet
        self.started: Dict[str, float] = {}

    def _write(self, text: str) -> None:
        with self.lock:
            self.out.write(text)
            self.out.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self._write(text + "\n")

    def start(self, key: str, description: str) -> None:
        self.started[key] = time.monotonic()
        if not self.quiet:
            self._write(f"#{self._n(key)} {description}\n")

    def output(self, key: str, data: bytes) -> None:
        if self.quiet:
            return
        n = self._n(key)
        t = time.monotonic() - self.started.get(key, time.monotonic())
        lines = data.decode("utf-8", "replace").splitlines()
        self._write("".join(f"#{n} {t:.3f} {line}\n" for line in lines))

    def done(self, key: str, description: str, status: str, seconds: float, cached: bool,
             error: str = "") -> None:
        if self.quiet:
            return
        n = self._n(key)
        if cached:
            self._write(f"#{n} {description}\n#{n} CACHED\n")
        elif status == "done":
            self._write(f"#{n} DONE {seconds:.1f}s\n")
        elif status == "cancelled":
            self._write(f"#{n} CANCELED {seconds:.1f}s\n")
        else:
            first = error.splitlines()[0] if error else "failed"
            self._write(f"#{n} ERROR: {first}\n")

    def result(self, text: str) -> None:
        out = self.stdout
        if out is None:
            import sys

            out = sys.stdout
        out.write(text + "\n")
        out.flush()


class QuietProgress(PlainProgress):
    """Only errors (printed by the CLI) and the final result."""

    def __init__(self, out: IO[str], stdout: Optional[IO[str]] = None):
        super().__init__(out, quiet=True, stdout=stdout)


class JsonProgress(Progress):
    """One JSON object per line (schemas/progress-event.schema.json).

    Every event has ``v`` (1), ``time`` (Unix seconds) and ``event``; step
    events add ``key``, ``step`` (its number in this run), ``description``
    and ``targets``.  Events: ``plan``, ``note``, ``started``, ``log``,
    ``cached``, ``done``, ``error`` (a step's, with ``key``, or the run's,
    without), ``cancelled``, ``result``.
    """

    def __init__(self, out: IO[str]):
        super().__init__()
        self.out = out
        self.desc: Dict[str, str] = {}

    def _emit(self, event: str, **fields: object) -> None:
        doc = {"v": 1, "time": round(time.time(), 6), "event": event, **fields}
        line = json.dumps(doc, sort_keys=True, ensure_ascii=False)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def _step(self, key: str, description: str) -> Dict[str, object]:
        self.desc[key] = description
        return {"key": key, "step": self._n(key), "description": description,
                "targets": list(self.targets.get(key, ()))}

    def plan(self, steps: Mapping[str, Sequence[str]]) -> None:
        super().plan(steps)
        self._emit("plan", total=self.total,
                   targets=sorted({t for v in self.targets.values() for t in v}))

    def note(self, text: str) -> None:
        self._emit("note", message=text)

    def start(self, key: str, description: str) -> None:
        self._emit("started", **self._step(key, description))

    def output(self, key: str, data: bytes) -> None:
        self._emit("log", **self._step(key, self.desc.get(key, "")),
                   data=data.decode("utf-8", "replace"))

    def done(self, key: str, description: str, status: str, seconds: float, cached: bool,
             error: str = "") -> None:
        step = self._step(key, description)
        if cached:
            self._emit("cached", **step)
        elif status == "done":
            self._emit("done", **step, seconds=round(seconds, 3))
        elif status == "cancelled":
            self._emit("cancelled", **step, seconds=round(seconds, 3))
        else:
            self._emit("error", **step, seconds=round(seconds, 3), message=error or "failed")

    def result(self, text: str) -> None:
        self._emit("result", message=text)

    def error(self, message: str, hint: Optional[str] = None) -> None:
        fields: Dict[str, object] = {"message": message}
        if hint:
            fields["hint"] = hint
        self._emit("error", **fields)


class TtyProgress(Progress):
    """A live view for terminals: a tqdm bar and the running steps.

    The view (bar + one line per running step) is redrawn in place ten
    times a second by a daemon thread; lines that stay (finished steps,
    notes, a failed step's output) are printed above it.
    """

    def __init__(self, out: IO[str], stdout: Optional[IO[str]] = None, interval: float = 0.1):
        super().__init__()
        self.out = out
        self.stdout = stdout
        self.interval = interval
        self.t0 = time.monotonic()
        self.running: Dict[str, Tuple[str, float, str]] = {}  # key -> (desc, started, last line)
        self.logs: Dict[str, List[str]] = {}
        self.cached = 0
        self.drawn = 0  # lines of the live view on screen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bakery-progress", daemon=True)
        self._thread.start()

    def _width(self) -> int:
        cols = 0
        with contextlib.suppress(OSError, ValueError, AttributeError):
            cols = os.get_terminal_size(self.out.fileno()).columns
        if cols <= 0:  # a terminal that does not know its size (a fresh pty)
            env = os.environ.get("COLUMNS", "")
            cols = int(env) if env.isdigit() else 80
        return max(20, cols)

    def _view(self) -> List[str]:
        from tqdm import tqdm

        width = self._width()
        total = max(self.total, self.finished)
        bar = tqdm.format_meter(self.finished, total or None, time.monotonic() - self.t0,
                                ncols=width - 1, prefix="[+] Building", unit=" steps")
        lines = [bar]
        now = time.monotonic()
        for desc, started, last in list(self.running.values()):
            left = f" => {_printable(desc)}"
            right = f" {now - started:5.1f}s"
            room = width - 1 - len(right)
            if last and len(left) + 3 < room:
                left = f"{left} | {last}"
            lines.append(left[:room].ljust(room) + right)
        return lines

    def _clear(self) -> str:
        if not self.drawn:
            return ""
        return f"\x1b[{self.drawn}F\x1b[J"  # to the view's first line, erase below

    def _redraw(self, above: str = "") -> None:
        with self.lock:
            if self._stop.is_set() and not above:
                return
            view = [] if self._stop.is_set() else self._view()
            self.out.write(self._clear() + above + "".join(line + "\n" for line in view))
            self.out.flush()
            self.drawn = len(view)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._redraw()

    def note(self, text: str) -> None:
        self._redraw(text + "\n")

    def start(self, key: str, description: str) -> None:
        with self.lock:
            self.running[key] = (description, time.monotonic(), "")
        self._redraw()

    def output(self, key: str, data: bytes) -> None:
        lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
        if not lines:
            return
        with self.lock:
            kept = self.logs.setdefault(key, [])
            kept.extend(lines)
            del kept[:-20]
            if key in self.running:
                desc, started, _ = self.running[key]
                self.running[key] = (desc, started, _printable(lines[-1]).strip())

    def done(self, key: str, description: str, status: str, seconds: float, cached: bool,
             error: str = "") -> None:
        with self.lock:
            self.running.pop(key, None)
            self.finished += 1
            logs = self.logs.pop(key, [])
        n = self._n(key)
        if cached:
            self.cached += 1
            line = f"#{n} CACHED {description}\n"
        elif status == "done":
            line = f"#{n} DONE {description} ({seconds:.1f}s)\n"
        elif status == "cancelled":
            line = f"#{n} CANCELED {description} ({seconds:.1f}s)\n"
        else:
            tail = "".join(f"#{n}   {ln}\n" for ln in logs[-10:])
            line = f"#{n} ERROR {description} ({seconds:.1f}s)\n{tail}"
        self._redraw(line)

    def result(self, text: str) -> None:
        self.close()
        out = self.stdout
        if out is None:
            import sys

            out = sys.stdout
        out.write(text + "\n")
        out.flush()

    def error(self, message: str, hint: Optional[str] = None) -> None:
        self.close()

    def close(self) -> None:
        if self._stop.is_set():
            return
        with self.lock:
            view = self._view()  # the final state of the bar stays on screen
            self.out.write(self._clear() + "".join(line + "\n" for line in view[:1]))
            self.out.flush()
            self.drawn = 0
            self._stop.set()
        self._thread.join(2)


_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x1f\x7f]")


def _printable(text: str) -> str:
    """One line without escape sequences or control characters (a step's
    colours or carriage returns must not break the live view)."""
    return _CONTROL.sub("", text.replace("\n", " ").replace("\t", " "))


def make_progress(mode: str, err: IO[str], out: Optional[IO[str]] = None) -> Progress:
    """The reporter for ``--progress MODE``: progress on ``err`` (stderr),
    results (and json events) on ``out`` (stdout)."""
    import sys

    out = out if out is not None else sys.stdout
    if mode == "auto":
        try:
            tty = err.isatty() and os.environ.get("TERM", "") != "dumb"
        except (AttributeError, ValueError):
            tty = False
        mode = "tty" if tty else "plain"
    if mode == "tty":
        return TtyProgress(err, stdout=out)
    if mode == "plain":
        return PlainProgress(err, stdout=out)
    if mode == "json":
        return JsonProgress(out)
    if mode == "quiet":
        return QuietProgress(err, stdout=out)
    from bakery.errors import BakeryError

    raise BakeryError(f"unknown progress mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
