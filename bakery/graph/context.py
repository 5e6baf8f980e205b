"""Content digests of the local files a step reads.

``ContextHasher(cache_path)(source, patterns)`` is the ``file_digest``
callback of :mod:`bakery.graph.keys`: the digest of the files of a
:class:`~bakery.graph.ops.LocalSource` that COPY source ``patterns`` select.

What is hashed, per entry (never the mtime): the type (file, directory,
symlink, other), the permission bits (``S_IMODE``: mode, setuid, setgid,
sticky), uid, gid, and for a file its size and the sha256 of its content,
for a symlink its target text, for a directory its entries (name and
digest, sorted by name; a directory's own size is filesystem noise and is
left out).  The digest of a pattern set is the sha256 of, for each pattern
in order, the pattern and the (path, entry digest) of each path it selects.

Selection follows BuildKit:

* a pattern is relative to the source root; a leading ``/`` and ``./`` are
  dropped and the path is cleaned (``a/../b`` -> ``b``); ``.`` is the root;
* a pattern with ``*``, ``?`` or ``[`` is a wildcard, matched one path
  segment at a time with Go's ``filepath.Match`` (``*`` never crosses
  ``/``); a wildcard that matches nothing selects nothing (COPY decides
  whether that is an error); any other path that does not exist is an
  error: ``failed to compute cache key: "/x": not found``;
* symlinks in the components of a named path are followed inside the source
  root (an absolute target or ``..`` never leaves it); the final component,
  when a symlink, contributes both its target text and what it points to;
  symlinks found while walking a directory are recorded, not followed;
* the source's ``exclude`` patterns (.dockerignore rules) are applied with
  :class:`~bakery.dockerfile.dockerignore.IgnoreMatcher`: excluded paths do
  not exist (an excluded directory is still entered when an ``!`` exception
  may bring something inside it back); the source's ``include`` patterns
  (the frontend's list of the paths the build reads, BuildKit's
  FollowPaths) are not applied: the patterns asked for already name exactly
  what a step reads, and narrowing further could only hide files (a symlink
  target outside the list) and turn them into false "not found" errors.

Work is lazy and done once: only the paths asked for are visited; entry
digests are memoised for the run; file contents are read only when the
file's (size, mtime_ns, inode, ctime_ns) is not in the persistent metadata
cache at ``cache_path`` (JSON, written atomically by :meth:`save` with a
temp file and a rename).  A file modified within ``racy_window`` seconds
of being hashed is not remembered across runs, because a later change in
the same timestamp tick could go unnoticed (git's "racily clean" problem).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from bakery.dockerfile.dockerignore import BadPattern, IgnoreMatcher, clean_path, go_match
from bakery.errors import BakeryError
from bakery.graph.ops import LocalSource

__all__ = ["ContextHasher", "has_wildcards", "normalize_pattern"]

_CACHE_VERSION = 1
_MAX_LINKS = 255
_CHUNK = 1 << 20


def has_wildcards(pattern: str) -> bool:
    """BuildKit's ``containsWildcards``: ``*``, ``?`` or ``[`` not escaped."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c in "*?[":
            return True
        i += 1
    return False


def normalize_pattern(pattern: str) -> str:
    """A COPY source as a path relative to the source root (``.`` = root)."""
    return clean_path("/" + pattern).lstrip("/") or "."


def _not_found(pattern: str) -> BakeryError:
    shown = "/" + normalize_pattern(pattern) if normalize_pattern(pattern) != "." else "/"
    return BakeryError(
        f'failed to compute cache key: "{shown}": not found',
        hint="check the path against the build context and its .dockerignore",
    )


def _sha(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


class _Tree:
    """One source root with its exclude/include rules and per-run memos."""

    def __init__(self, hasher: ContextHasher, source: LocalSource) -> None:
        self.hasher = hasher
        self.root = os.path.abspath(source.path)
        self.name = source.name
        self.exclude = IgnoreMatcher(list(source.exclude)) if source.exclude else None
        self.entries: Dict[str, Optional[str]] = {}

    # -- rules --------------------------------------------------------------

    def excluded(self, rel: str) -> bool:
        return self.exclude is not None and self.exclude.matches(rel)

    def may_hold_included(self, rel: str) -> bool:
        """Whether walking excluded directory ``rel`` could find kept paths."""
        return self.exclude is None or not self.exclude.can_skip_dir(rel)

    def abspath(self, rel: str) -> str:
        return self.root if rel == "." else os.path.join(self.root, *rel.split("/"))

    # -- resolution ---------------------------------------------------------

    def resolve(self, rel: str, follow_last: bool) -> Tuple[Optional[str], List[str]]:
        """``rel`` with symlinks resolved inside the root: (real rel path or
        None when missing, the link targets met on the way)."""
        todo = [s for s in rel.split("/") if s not in ("", ".")]
        done: List[str] = []
        links: List[str] = []
        while todo:
            seg = todo.pop(0)
            if seg == "..":
                if done:
                    done.pop()
                continue
            cur = "/".join([*done, seg])
            try:
                st = os.lstat(self.abspath(cur))
            except OSError:
                return None, links
            if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                if len(links) >= _MAX_LINKS:
                    return None, links
                target = os.readlink(self.abspath(cur))
                links.append(target)
                if target.startswith("/"):
                    done = []
                todo = [s for s in target.split("/") if s not in ("", ".")] + todo
                continue
            done.append(seg)
        return ("/".join(done) or "."), links

    def expand(self, pattern: str) -> List[str]:
        """The paths (relative, not resolved) a wildcard pattern selects."""
        segs = [s for s in normalize_pattern(pattern).split("/") if s != "."]
        found = ["."]
        for seg in segs:
            nxt: List[str] = []
            for base in found:
                if not has_wildcards(seg):
                    cand = seg if base == "." else base + "/" + seg
                    real, _ = self.resolve(cand, follow_last=False)
                    if real is not None:
                        nxt.append(cand)
                    continue
                real, _ = self.resolve(base, follow_last=True)
                if real is None:
                    continue
                try:
                    names = sorted(os.listdir(self.abspath(real)))
                except OSError:
                    continue
                for n in names:
                    try:
                        ok = go_match(seg, n)
                    except BadPattern:
                        raise BakeryError(f"syntax error in pattern: {pattern}") from None
                    if ok:
                        nxt.append(n if base == "." else base + "/" + n)
            found = nxt
        return [p for p in found if not self._gone(p)]

    def _gone(self, rel: str) -> bool:
        real, _ = self.resolve(rel, follow_last=True)
        return real is None or self.entry(real) is None

    # -- digests ------------------------------------------------------------

    def entry(self, rel: str) -> Optional[str]:
        """The digest of entry ``rel`` (a real path: no symlinks above it),
        or None when it does not exist or is excluded (with nothing kept)."""
        if rel in self.entries:
            return self.entries[rel]
        d = self._entry(rel)
        self.entries[rel] = d
        return d

    def _entry(self, rel: str) -> Optional[str]:
        path = self.abspath(rel)
        try:
            st = os.lstat(path)
        except OSError:
            return None
        excluded = rel != "." and self.excluded(rel)
        mode = st.st_mode
        head = [f"mode={stat.S_IMODE(mode):o}", f"uid={st.st_uid}", f"gid={st.st_gid}"]
        if stat.S_ISDIR(mode):
            if excluded and not self.may_hold_included(rel):
                return None
            children: List[str] = []
            try:
                names = sorted(os.listdir(path))
            except OSError as e:
                raise BakeryError(f"failed to compute cache key: {path}: {e.strerror}") from None
            for n in names:
                child = n if rel == "." else rel + "/" + n
                d = self.entry(child)
                if d is not None:
                    children.append(f"{json.dumps(n)} {d}")
            if excluded and not children:
                return None
            return _sha(["dir", *head, *children])
        if excluded:
            return None
        if stat.S_ISLNK(mode):
            return _sha(["symlink", *head, "target=" + os.readlink(path)])
        if stat.S_ISREG(mode):
            content = self.hasher.content_digest(path, st)
            return _sha(["file", *head, f"size={st.st_size}", content])
        return _sha(["other", f"type={stat.S_IFMT(mode):o}", *head])

    def digest(self, patterns: Sequence[str]) -> str:
        parts: List[str] = []
        for pattern in patterns:
            norm = normalize_pattern(pattern)
            parts.append("pattern " + json.dumps(norm))
            if has_wildcards(norm):
                paths = self.expand(norm)
            else:
                paths = [norm]
            for p in paths:
                real, links = self.resolve(p, follow_last=True)
                d = self.entry(real) if real is not None else None
                if d is None:
                    if has_wildcards(norm):
                        continue
                    raise _not_found(pattern)
                parts.append(f"path {json.dumps(p)} {d}")
                parts.extend("link " + json.dumps(t) for t in links)
        return _sha(parts)


class ContextHasher:
    """Digests of local files, memoised for a run and across runs.

    ``reads`` counts the regular files whose content was read.
    """

    def __init__(self, cache_path: Optional[str] = None, racy_window: float = 2.0) -> None:
        self.cache_path = cache_path
        self.racy_window_ns = int(racy_window * 1e9)
        self.reads = 0
        self._loaded: Optional[Dict[str, List[object]]] = None
        self._fresh: Dict[str, List[object]] = {}
        self._seen: Dict[str, Tuple[Tuple[int, int, int, int], str]] = {}
        self._trees: Dict[LocalSource, _Tree] = {}
        self._digests: Dict[Tuple[LocalSource, Tuple[str, ...]], str] = {}

    def __call__(self, source: LocalSource, patterns: Sequence[str]) -> str:
        return self.digest(source, patterns)

    def digest(self, source: LocalSource, patterns: Sequence[str]) -> str:
        """The digest of the files of ``source`` that ``patterns`` select."""
        pats = tuple(patterns) or (".",)
        k = (source, pats)
        hit = self._digests.get(k)
        if hit is not None:
            return hit
        tree = self._trees.get(source)
        if tree is None:
            if not os.path.isdir(source.path):
                raise BakeryError(
                    f'failed to compute cache key: "{source.path}": not found',
                    hint=f"the {source.name} directory does not exist",
                )
            tree = self._trees[source] = _Tree(self, source)
        d = tree.digest(pats)
        self._digests[k] = d
        return d

    # -- file contents ------------------------------------------------------

    def _cache(self) -> Dict[str, List[object]]:
        if self._loaded is None:
            self._loaded = {}
            if self.cache_path:
                try:
                    with open(self.cache_path, encoding="utf-8") as fh:
                        data = json.load(fh)
                    if isinstance(data, dict) and data.get("version") == _CACHE_VERSION:
                        entries = data.get("entries")
                        if isinstance(entries, dict):
                            self._loaded = entries
                except (OSError, ValueError):
                    pass
        return self._loaded

    def content_digest(self, path: str, st: os.stat_result) -> str:
        sig = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        seen = self._seen.get(path)
        if seen is not None and seen[0] == sig:
            return seen[1]
        cached = self._cache().get(path)
        if (
            isinstance(cached, list)
            and len(cached) == 5
            and tuple(cached[:4]) == sig
            and isinstance(cached[4], str)
        ):
            d = cached[4]
        else:
            d = self._read(path)
        self._seen[path] = (sig, d)
        if st.st_mtime_ns < time.time_ns() - self.racy_window_ns:
            self._fresh[path] = [*sig, d]
        else:
            self._fresh.pop(path, None)
        return d

    def _read(self, path: str) -> str:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                while True:
                    chunk = fh.read(_CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
        except OSError as e:
            raise BakeryError(f"failed to compute cache key: {path}: {e.strerror}") from None
        self.reads += 1
        return "sha256:" + h.hexdigest()

    def save(self) -> None:
        """Write the metadata cache (temp file + rename); never fails."""
        if not self.cache_path:
            return
        entries = dict(self._cache())
        for path in self._seen:
            entries.pop(path, None)
        entries.update(self._fresh)
        d = os.path.dirname(os.path.abspath(self.cache_path))
        try:
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-context-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"version": _CACHE_VERSION, "entries": entries}, fh,
                              separators=(",", ":"), sort_keys=True)
                os.replace(tmp, self.cache_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            pass
