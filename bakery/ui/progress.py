"""Progress for ``bakery run``: one line per step as it starts and ends.

Plain text on stderr (CI logs read it as is).  A step's output is shown as
it arrives, prefixed with the step's number, so a failing RUN's log is
right above the error.
"""

from __future__ import annotations

import threading
from typing import IO, Dict

__all__ = ["PlainProgress"]


class PlainProgress:
    def __init__(self, out: IO[str], quiet: bool = False):
        self.out = out
        self.quiet = quiet
        self.lock = threading.Lock()
        self.numbers: Dict[str, int] = {}

    def _n(self, key: str) -> int:
        if key not in self.numbers:
            self.numbers[key] = len(self.numbers) + 1
        return self.numbers[key]

    def _write(self, text: str) -> None:
        with self.lock:
            self.out.write(text)
            self.out.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self._write(text + "\n")

    def start(self, key: str, description: str) -> None:
        if not self.quiet:
            with self.lock:
                n = self._n(key)
            self._write(f"#{n} {description}\n")

    def output(self, key: str, data: bytes) -> None:
        if self.quiet:
            return
        with self.lock:
            n = self._n(key)
        text = data.decode("utf-8", "replace")
        lines = text.splitlines()
        self._write("".join(f"#{n} {line}\n" for line in lines))

    def done(self, key: str, description: str, status: str, seconds: float, cached: bool) -> None:
        if self.quiet:
            return
        with self.lock:
            n = self._n(key)
        if cached:
            self._write(f"#{n} CACHED {description}\n")
        else:
            self._write(f"#{n} {status.upper()} {description} ({seconds:.1f}s)\n")
