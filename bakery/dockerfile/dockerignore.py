""".dockerignore files: reading, choosing and matching, with the rules of
moby's ``patternmatcher`` (and its ``ignorefile`` reader) that BuildKit uses.

Reading (:func:`read_ignore_patterns`): a line whose very first character
is ``#`` is a comment; other lines are trimmed, blank ones dropped; a
leading ``!`` marks an exception; the rest is cleaned like Go's
``filepath.Clean`` (``./a//b/`` -> ``a/b``) and a leading ``/`` dropped.

Matching (:class:`IgnoreMatcher`): paths are slash-separated and relative to
the context root.  ``*`` and ``?`` do not cross ``/``; ``**`` matches any
number of directories (including none); ``[...]`` classes and ``\\`` escapes
work as in Go's ``filepath.Match``.  A pattern matches a path when it
matches the path itself or one of its parent directories, and the *last*
pattern that matches decides: excluded unless it is an ``!`` exception.
So ``docs`` then ``!docs/README.md`` keeps only that file of ``docs``.

Choosing (:func:`ignore_file_for`): ``<Dockerfile name>.dockerignore`` next to
the Dockerfile wins over ``.dockerignore`` at the context root.
"""

from __future__ import annotations

import os
import re
from typing import Callable, List, Optional, Sequence, Tuple

from bakery.errors import BakeryError, Pos, register_source

__all__ = [
    "IgnoreMatcher",
    "clean_path",
    "ignore_file_for",
    "read_ignore_patterns",
]

_BOM = "\ufeff"


class BadPattern(ValueError):
    """filepath.ErrBadPattern."""

    def __init__(self) -> None:
        super().__init__("syntax error in pattern")


def clean_path(path: str) -> str:
    """Go's ``path.Clean`` (slash-separated)."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: List[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    s = "/".join(out)
    if rooted:
        return "/" + s
    return s or "."


def read_ignore_patterns(text: str) -> List[str]:
    """The patterns of a .dockerignore file, as moby's ``ReadAll`` gives them."""
    out: List[str] = []
    for n, line in enumerate(text.split("\n")):
        if n == 0 and line.startswith(_BOM):
            line = line[1:]
        if line.endswith("\r"):
            line = line[:-1]
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if pattern == "":
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


# -- Go's filepath.Match, used to validate patterns ---------------------------


def _scan_chunk(pattern: str) -> Tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    inrange = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _get_esc(chunk: str) -> Tuple[str, str]:
    if chunk == "" or chunk[0] in "-]":
        raise BadPattern()
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if chunk == "":
            raise BadPattern()
    r, rest = chunk[0], chunk[1:]
    if rest == "":
        raise BadPattern()
    return r, rest


def _match_chunk(chunk: str, s: str) -> Tuple[str, bool]:
    failed = False
    while chunk:
        if not failed and s == "":
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = False
            if chunk.startswith("^"):
                negated = True
                chunk = chunk[1:]
            match = False
            nrange = 0
            while True:
                if chunk.startswith("]") and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if r and lo <= r <= hi:
                    match = True
                nrange += 1
            if match == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if chunk == "":
                    raise BadPattern()
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` (``/`` separator); raises BadPattern."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        t, ok = _match_chunk(chunk, name)
        if ok and (t == "" or pattern):
            name = t
            continue
        if star:
            found = False
            i = 0
            while i < len(name) and name[i] != "/":
                t, ok = _match_chunk(chunk, name[i + 1:])
                if ok:
                    if not pattern and t:
                        i += 1
                        continue
                    name = t
                    found = True
                    break
                i += 1
            if found:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return name == ""


# -- patterns -------------------------------------------------------------------

_ESCAPE = frozenset(".+()|{}$")


class _Pattern:
    def __init__(self, cleaned: str, exclusion: bool) -> None:
        self.cleaned = cleaned
        self.exclusion = exclusion
        self.kind = ""
        self.regexp: Optional[re.Pattern[str]] = None

    def __repr__(self) -> str:
        return ("!" if self.exclusion else "") + self.cleaned

    def compile(self) -> None:
        reg = ["^"]
        kind = "exact"
        p = self.cleaned
        i = 0
        n = len(p)
        while i < n:
            start = i
            ch = p[i]
            i += 1
            if ch == "*":
                if i < n and p[i] == "*":
                    # some flavour of "**"; "**/" is treated as "**"
                    i += 1
                    if i < n and p[i] == "/":
                        i += 1
                    if i >= n:
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            reg.append(".*")
                            kind = "regexp"
                    else:
                        reg.append("(.*/)?")
                        kind = "regexp"
                    if start == 0:
                        kind = "suffix"
                else:
                    reg.append("[^/]*")
                    kind = "regexp"
            elif ch == "?":
                reg.append("[^/]")
                kind = "regexp"
            elif ch in _ESCAPE:
                reg.append("\\" + ch)
            elif ch == "\\":
                if i < n:
                    reg.append("\\" + p[i])
                    i += 1
                    kind = "regexp"
                else:
                    reg.append("\\\\")
            elif ch in "[]":
                reg.append(ch)
                kind = "regexp"
            else:
                reg.append(ch)
        if kind == "regexp":
            reg.append(r"\Z")
            try:
                self.regexp = re.compile("".join(reg))
            except re.error:
                raise BadPattern() from None
        self.kind = kind

    def match(self, path: str) -> bool:
        if not self.kind:
            self.compile()
        if self.kind == "exact":
            return path == self.cleaned
        if self.kind == "prefix":
            return path.startswith(self.cleaned[:-2])
        if self.kind == "suffix":
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix[:1] == "/" and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None


def _without_trailing_glob(p: _Pattern) -> str:
    s = p.cleaned
    if s.endswith("/**"):
        s = s[:-3]
    elif s.endswith("/*"):
        s = s[:-2]
    return s


class IgnoreMatcher:
    """Decides which context paths a list of .dockerignore patterns excludes.

    ``IgnoreMatcher(patterns).matches("a/b")`` is True when ``a/b`` is
    excluded.  A bad pattern (``[``, a lone ``!``, a trailing ``\\``) is a
    :class:`BakeryError`, at its line when the patterns came from
    :meth:`from_text`.
    """

    def __init__(self, patterns: Sequence[str], *, source: str = ".dockerignore",
                 lines: Optional[Sequence[int]] = None) -> None:
        self.patterns: List[_Pattern] = []
        self.has_exclusions = False
        for idx, raw in enumerate(patterns):
            pos = Pos(source, lines[idx], 1) if lines is not None else None
            p = raw.strip()
            if p == "":
                continue
            p = clean_path(p)
            exclusion = False
            if p[0] == "!":
                if len(p) == 1:
                    raise BakeryError('illegal exclusion pattern: "!"', pos)
                exclusion = True
                p = p[1:]
                self.has_exclusions = True
            try:
                go_match(p, ".")
            except BadPattern:
                raise BakeryError(f"syntax error in pattern: {raw}", pos) from None
            pat = _Pattern(p, exclusion)
            try:
                pat.compile()
            except BadPattern:
                raise BakeryError(f"syntax error in pattern: {raw}", pos) from None
            self.patterns.append(pat)
        self._only_prefix_exceptions = not any(
            p.exclusion and any(c in _without_trailing_glob(p) for c in "*?[]\\")
            for p in self.patterns
        )

    @classmethod
    def from_text(cls, text: str, source: str = ".dockerignore") -> IgnoreMatcher:
        register_source(source, text)
        patterns: List[str] = []
        lines: List[int] = []
        for n, line in enumerate(text.split("\n"), 1):
            got = read_ignore_patterns(line)
            if got:
                patterns.append(got[0])
                lines.append(n)
        return cls(patterns, source=source, lines=lines)

    def matches(self, path: str) -> bool:
        """True when ``path`` (relative, slash-separated) is excluded."""
        path = clean_path(path.replace(os.sep, "/") if os.sep != "/" else path)
        if path == ".":
            return False
        parent = clean_path(path.rsplit("/", 1)[0]) if "/" in path else "."
        parent_dirs = parent.split("/")
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue
            m = pat.match(path)
            if not m and parent != ".":
                for i in range(len(parent_dirs)):
                    if pat.match("/".join(parent_dirs[: i + 1])):
                        m = True
                        break
            if m:
                matched = not pat.exclusion
        return matched

    def can_skip_dir(self, path: str) -> bool:
        """True when directory ``path`` is excluded and no exception could
        bring back anything inside it, so a walk need not enter it.  False
        is always safe (walk it and match each entry)."""
        if not self.matches(path):
            return False
        if not self.has_exclusions:
            return True
        if not self._only_prefix_exceptions:
            return False
        dir_slash = clean_path(path) + "/"
        for pat in self.patterns:
            if pat.exclusion and (_without_trailing_glob(pat) + "/").startswith(dir_slash):
                return False
        return True


def ignore_file_for(
    dockerfile_path: str,
    context_dir: str,
    exists: Callable[[str], bool] = os.path.isfile,
) -> Optional[str]:
    """The .dockerignore file that applies: ``<Dockerfile>.dockerignore``
    beside the Dockerfile if it exists, else ``<context>/.dockerignore`` if it
    exists, else None.  ``exists`` can be replaced (e.g. in tests)."""
    beside = os.path.join(
        os.path.dirname(dockerfile_path), os.path.basename(dockerfile_path) + ".dockerignore"
    )
    if exists(beside):
        return beside
    root = os.path.join(context_dir, ".dockerignore")
    if exists(root):
        return root
    return None
