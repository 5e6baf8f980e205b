"""Content cache keys of build operations.

A step's key names what it computes, so that identical work (in one target,
in several targets, in a later run) gets the same key and is done once::

    key = "sha256:" + hex(sha256(canonical(op)))

The canonical form (version 1)
------------------------------

``canonical(op)`` is the bytes ``b"bakery-op-v1\\n"`` followed by the JSON
text (``sort_keys``, separators ``,`` and ``:``, ASCII only) of the op
encoded by these rules:

* a dataclass (an op, a Mount, a Copy/Mkdir/... action, a Platform) is an
  object ``{"@": ClassName, field: value, ...}`` holding the fields declared
  ``compare=True`` whose value differs from the field's default (so adding a
  defaulted field to :mod:`bakery.graph.ops` keeps existing keys); fields
  declared ``compare=False`` (descriptions, source locations) never appear;
* ``str``, ``int``, ``bool`` and ``None`` are themselves, tuples are lists,
  ``bytes`` (a ``Mkfile``'s data) are ``{"@bytes": base64}``, mappings are
  lists of ``[key, value]`` pairs sorted by key;
* an input (a :class:`~bakery.graph.ops.Ref`) is ``{"@ref": key-of-input}``,
  so a key covers its whole input DAG;
* an input that is a :class:`~bakery.graph.ops.LocalSource` is instead
  ``{"@local": digest}`` where ``digest`` is the content digest of exactly
  the files the step reads (``file_digest(source, patterns)``; see
  :mod:`bakery.graph.context`): a ``Copy`` reads its ``src`` patterns, a
  bind mount its ``selector`` (``"."`` when empty), anything else (a local
  directory used as a rootfs or a merge input) the whole directory.  So
  keys do not depend on where the repository is checked out, only on the
  content.  The ``LocalSource`` node itself is keyed by its definition
  (name, path, include, exclude): two directories are two nodes.

Remote sources are keyed by their definition: an ``HttpSource`` by its URL,
file name and ``checksum``, a ``GitSource`` by its remote and ref.  When the
checksum is missing (or the ref is a name), the key says what to fetch, not
what comes back: the engine then keys the steps after it by the fetched
content at run time (see bakery.engine.executor, "run-time pins").

Secrets and SSH agents appear as their ids only (``Mount.secret_id``); ops
never hold secret contents and the key computation reads no secret files.

Keys are deterministic across processes: no ``hash()``, no ``id()`` and no
set iteration order reaches the digest.  :class:`Keyer` memoises by object
identity and by canonical form, so equal ops in separately built DAGs get
the same key (and the same string) without being serialised twice, and
reads each (source, patterns) file digest once.  The computation is
iterative, so deep chains of steps do not hit Python's recursion limit.

Example::

    >>> from bakery.graph.ops import ImageSource, Platform
    >>> op_key(ImageSource("docker.io/library/busybox:latest",
    ...                    Platform("linux", "amd64")), None)[:7]
    'sha256:'
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any, Callable, Dict, List, Optional, Tuple

from bakery.errors import BakeryError
from bakery.graph.ops import Copy, Exec, FileOp, LocalSource, Merge, Mount, Op, Ref

__all__ = [
    "CANONICAL_PREFIX",
    "FileDigest",
    "Keyer",
    "canonical",
    "op_inputs",
    "op_key",
    "short_key",
]

# file_digest(local_source, patterns) -> "sha256:..." of the files selected
FileDigest = Callable[[LocalSource, Tuple[str, ...]], str]

CANONICAL_PREFIX = b"bakery-op-v1\n"

_WHOLE = (".",)


def op_inputs(op: Op) -> List[Tuple[Ref, Tuple[str, ...]]]:
    """The inputs of ``op`` in a fixed order, each with the patterns of the
    files read from it when it is a local source (``(".",)`` = all)."""
    out: List[Tuple[Ref, Tuple[str, ...]]] = []
    if isinstance(op, Exec):
        out.append((op.rootfs, _WHOLE))
        for m in op.mounts:
            if m.source is not None:
                out.append((m.source, (m.selector or ".",)))
    elif isinstance(op, FileOp):
        if op.base is not None:
            out.append((op.base, _WHOLE))
        for a in op.actions:
            if isinstance(a, Copy):
                out.append((a.source, tuple(a.src) or _WHOLE))
    elif isinstance(op, Merge):
        out.extend((r, _WHOLE) for r in op.inputs)
    return out


def short_key(key: str, n: int = 12) -> str:
    """``sha256:0123abcd...`` -> ``0123abcd4567`` (for people, not for lookups)."""
    return key.split(":", 1)[-1][:n]


class _Encoder:
    """Encodes one op with its inputs' keys (see the module docstring)."""

    def __init__(self, ref_value: Callable[[Ref, Tuple[str, ...]], Dict[str, str]]):
        self.ref_value = ref_value
        self.patterns: Tuple[str, ...] = _WHOLE

    def encode(self, v: Any) -> Any:
        if v is None or isinstance(v, (str, bool, int)):
            return v
        if isinstance(v, Ref):
            return self.ref_value(v, self.patterns)
        if isinstance(v, bytes):
            return {"@bytes": base64.b64encode(v).decode("ascii")}
        if isinstance(v, (tuple, list)):
            return [self.encode(x) for x in v]
        if isinstance(v, dict):
            return [[str(k), self.encode(v[k])] for k in sorted(v, key=str)]
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out: Dict[str, Any] = {"@": type(v).__name__}
            saved = self.patterns
            if isinstance(v, Copy):
                self.patterns = tuple(v.src) or _WHOLE
            elif isinstance(v, Mount):
                self.patterns = (v.selector or ".",)
            else:
                self.patterns = _WHOLE
            try:
                for f in dataclasses.fields(v):
                    if not f.compare:
                        continue
                    value = getattr(v, f.name)
                    if f.default is not dataclasses.MISSING and value == f.default \
                            and type(value) is type(f.default):
                        continue
                    out[f.name] = self.encode(value)
            finally:
                self.patterns = saved
            return out
        raise TypeError(f"cannot encode {type(v).__name__} in a cache key")


def _dumps(obj: Any) -> bytes:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return CANONICAL_PREFIX + text.encode("ascii")


class Keyer:
    """Computes and memoises keys; one per run (or per graph).

    ``file_digest`` may be None when no op reads local files (a
    :class:`BakeryError` is raised if one does).
    """

    def __init__(self, file_digest: Optional[FileDigest]) -> None:
        self.file_digest = file_digest
        # id(op) -> (op, key): the op is kept alive so that its id is not reused
        self._by_id: Dict[int, Tuple[Op, str]] = {}
        # canonical form -> key: equal ops share one key string
        self._by_form: Dict[bytes, str] = {}
        self._files: Dict[Tuple[LocalSource, Tuple[str, ...]], str] = {}

    # -- public -------------------------------------------------------------

    def key(self, op: Op) -> str:
        hit = self._by_id.get(id(op))
        if hit is not None:
            return hit[1]
        # iterative post-order over inputs not yet keyed
        stack: List[Tuple[Op, bool]] = [(op, False)]
        while stack:
            cur, expanded = stack.pop()
            if id(cur) in self._by_id:
                continue
            if not expanded:
                stack.append((cur, True))
                for ref, _ in reversed(op_inputs(cur)):
                    if id(ref.op) not in self._by_id and not isinstance(ref.op, LocalSource):
                        stack.append((ref.op, False))
                continue
            form = self._canonical(cur)
            k = self._by_form.get(form)
            if k is None:
                k = "sha256:" + hashlib.sha256(form).hexdigest()
                self._by_form[form] = k
            self._by_id[id(cur)] = (cur, k)
        return self._by_id[id(op)][1]

    def canonical(self, op: Op) -> bytes:
        """The canonical form of ``op`` (its inputs are keyed as needed)."""
        for ref, _ in op_inputs(op):
            if not isinstance(ref.op, LocalSource):
                self.key(ref.op)
        return self._canonical(op)

    def files(self, source: LocalSource, patterns: Tuple[str, ...]) -> str:
        """The digest of the files of ``source`` that ``patterns`` select."""
        k = (source, patterns)
        d = self._files.get(k)
        if d is None:
            if self.file_digest is None:
                raise BakeryError(
                    f"failed to compute cache key: local files of {source.name!r} "
                    "cannot be hashed here (no file digest function)"
                )
            d = self.file_digest(source, patterns)
            self._files[k] = d
        return d

    # -- internals ----------------------------------------------------------

    def _ref_value(self, ref: Ref, patterns: Tuple[str, ...]) -> Dict[str, str]:
        if isinstance(ref.op, LocalSource):
            return {"@local": self.files(ref.op, patterns)}
        hit = self._by_id.get(id(ref.op))
        if hit is None:  # pragma: no cover - inputs are keyed first
            return {"@ref": self.key(ref.op)}
        return {"@ref": hit[1]}

    def _canonical(self, op: Op) -> bytes:
        return _dumps(_Encoder(self._ref_value).encode(op))


def canonical(op: Op, file_digest: Optional[FileDigest] = None) -> bytes:
    """The canonical serialisation of ``op`` that its key is the digest of."""
    return Keyer(file_digest).canonical(op)


def op_key(op: Op, file_digest: Optional[FileDigest], keyer: Optional[Keyer] = None) -> str:
    """``"sha256:<hex>"``: the content cache key of ``op``.

    Pass a shared ``keyer`` to memoise across calls (a graph does).
    """
    if keyer is None:
        keyer = Keyer(file_digest)
    return keyer.key(op)
