"""One exception family for everything a user can get wrong.

A :class:`BakeryError` is a user error: the CLI prints it (with the source
line and a caret when it has a position) and exits 1.  Any other exception
is a bug: the CLI reports it as one and exits 2.

Example::

    >>> register_source("a.hcl", 'x = nope\\n')
    >>> print(BakeryError("unknown variable nope", Pos("a.hcl", 1, 5),
    ...                   hint="did you mean \\"none\\"?").render())
    a.hcl:1:5: error: unknown variable nope
        1 | x = nope
          |     ^
    hint: did you mean "none"?
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

__all__ = [
    "BakeryError",
    "Pos",
    "closest",
    "register_source",
    "source_line",
]


@dataclass(frozen=True)
class Pos:
    """A place in a source file: 1-based line and column (in characters)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


# Source texts by file name, so that an error can show its line.  Filled by
# the readers (bake files, Dockerfiles); reading is cheap, so keep whole texts.
_SOURCES: Dict[str, str] = {}


def register_source(name: str, text: str) -> None:
    _SOURCES[name] = text


def source_line(pos: Pos) -> Optional[str]:
    text = _SOURCES.get(pos.file)
    if text is None:
        return None
    lines = text.splitlines()
    if 1 <= pos.line <= len(lines):
        return lines[pos.line - 1]
    return None


class BakeryError(Exception):
    """A user error: bad input, a failed build, a missing file.

    ``pos`` is where in a source file the problem is; ``hint`` is the next
    step the user can take.
    """

    def __init__(self, message: str, pos: Optional[Pos] = None, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint

    def __str__(self) -> str:
        if self.pos is not None:
            return f"{self.pos}: {self.message}"
        return self.message

    def render(self) -> str:
        out: List[str] = []
        if self.pos is not None:
            out.append(f"{self.pos}: error: {self.message}")
            line = source_line(self.pos)
            if line is not None:
                num = str(self.pos.line)
                pad = " " * len(num)
                shown = line.expandtabs(1)
                out.append(f"    {num} | {shown}")
                out.append(f"    {pad} | {' ' * (self.pos.col - 1)}^")
        else:
            out.append(f"error: {self.message}")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


def closest(name: str, candidates: Iterable[str]) -> Optional[str]:
    """A hint naming the candidates closest to ``name``, or None."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f'"{c}"' for c in close) + "?"
