"""Build cache import (``cache-from``) and export (``cache-to``).

A cache is an OCI image layout (``type=local``) or an OCI artifact in a
registry (``type=registry``) holding one *cache index* JSON blob, media type
``application/vnd.bakery.cache.v1+json``, that maps step keys to their
results (layers by diff_id, each with its compressed blob, gzip unless
``compression`` says otherwise, and the image config of image sources),
plus the compressed layer blobs.  The format is in
:mod:`bakery.cache.index`, the layout in :mod:`bakery.cache.local`, the
registry artifact in :mod:`bakery.cache.registry`, the inline cache in
:mod:`bakery.cache.inline`.

Supported entries (bake's ``cache-to`` / ``cache-from``)::

    type=local,dest=DIR[,tag=T][,mode=min|max][,ignore-error=true][,cache-mounts=true]
                   [,compression=gzip|zstd|uncompressed][,compression-level=N]
    type=local,src=DIR[,tag=T][,ignore-error=false]
    type=registry,ref=REPO:TAG[,mode=min|max][,ignore-error=true][,cache-mounts=true]
    type=inline                    (cache-to: in the image config, see bakery.cache.inline)
    REPO:TAG                       (cache-from / cache-to shorthand: registry; cache-from
                                    also reads an image exported with type=inline)

``tag`` defaults to ``latest``.  ``mode=min`` (the default) exports, as
BuildKit, the records of the final images' layers: every step whose result
is a prefix of an exported image's layers (:func:`result_chain`: the final
stage, not a build stage whose files were only copied out); ``mode=max``
exports every step of every target that names the cache.  Targets that
name the same destination write one merged cache (the union of their
steps, each blob once), exported once after the build succeeded.  Steps
this run did not load (the engine looks records up top-down, so an
unchanged run restores only its final steps) are exported from the
imported caches, their blobs copied as they are.

``cache-mounts=true`` (beyond BuildKit) also exports the contents of the
``RUN --mount=type=cache`` directories the targets use, one tar each under
the index's ``mounts``; an import restores a mount, lazily, when a step
that uses it runs and the local mount is empty (never over local contents).

Errors: by default an import never fails a build; a cache that cannot be
read, a record whose blob is missing, truncated or not the layer it claims
to be is a cache miss (the step is built) with a warning.  ``ignore-error=
false`` on a ``cache-from`` entry makes those an error instead.  An export
that fails fails the run, unless the entry says ``ignore-error=true``, when
it is a warning.

Not supported (a warning, the entry is skipped): ``gha``, ``s3``,
``azblob``.  ``compression=estargz`` is an error; ``force-compression`` is
not supported (blobs already in the destination are reused as they are).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from bakery.cache.index import CACHE_INDEX_TYPE, CacheIndex, CacheRecord, LayerEntry
from bakery.cache.local import LocalCacheSource, export_local, read_local_index
from bakery.cache.registry import RegistryCacheSource, export_registry, read_registry_index
from bakery.errors import BakeryError

__all__ = [
    "CACHE_INDEX_TYPE",
    "CacheIndex",
    "CacheRecord",
    "LayerEntry",
    "LocalCacheSource",
    "RegistryCacheSource",
    "cache_sources",
    "export_caches",
    "export_local",
    "export_registry",
    "plan_exports",
    "read_local_index",
    "read_registry_index",
    "result_chain",
    "sources_for_targets",
]

log = logging.getLogger("bakery.cache")

Note = Callable[[str], None]


def _entry(e: Any) -> Tuple[str, Dict[str, str]]:
    """(type, attrs) of a CacheOptionsEntry, a string or a mapping."""
    from bakery.bakefile.buildflags import CacheOptionsEntry

    if isinstance(e, (str, Mapping)):
        e = CacheOptionsEntry.from_value(e)
    return str(e.type), {str(k).lower(): str(v) for k, v in dict(e.attrs).items()}


def _path(cwd: str, p: str) -> str:
    return os.path.abspath(os.path.join(cwd, os.path.expanduser(p)))


def _warn(note: Optional[Note], text: str) -> None:
    log.warning("%s", text)
    if note is not None:
        note(f"warning: {text}")


def cache_sources(entries: Iterable[Any], cwd: str, client: Any = None, blobs: Any = None,
                  note: Optional[Note] = None) -> List[Any]:
    """The CacheSources of ``cache-from`` entries (duplicates once)."""
    out: List[Any] = []
    seen: Set[Tuple[str, ...]] = set()
    for e in entries:
        typ, attrs = _entry(e)
        strict = (attrs.get("ignore-error") or "").strip().lower() == "false"
        if typ == "local":
            src = attrs.get("src")
            if not src:
                _warn(note, "cache-from type=local needs src=DIR; skipped")
                continue
            ident: Tuple[str, ...] = ("local", _path(cwd, src), attrs.get("tag") or "latest")
            if ident not in seen:
                seen.add(ident)
                out.append(LocalCacheSource(ident[1], ident[2], strict))
        elif typ == "registry":
            ref = attrs.get("ref")
            if not ref or client is None or blobs is None:
                _warn(note, f"cache-from type=registry{',ref=' + ref if ref else ''}: "
                            "needs ref= and registry access; skipped")
                continue
            ident = ("registry", ref)
            if ident not in seen:
                seen.add(ident)
                out.append(RegistryCacheSource(client, ref, blobs, strict))
        else:
            _warn(note, f"cache-from type={typ} is not supported by the embedded driver; skipped")
    return out


@dataclass
class ExportPlan:
    type: str  # local | registry
    where: str  # the directory or the ref
    tag: str = "latest"
    ignore_error: bool = False
    keys: Set[str] = field(default_factory=set)  # mode=max: every step
    roots: Set[str] = field(default_factory=set)  # mode=min: the images' root steps
    mounts: bool = False  # cache-mounts=true
    targets: List[str] = field(default_factory=list)
    compression: str = "gzip"
    level: Optional[int] = None


def _level(target: str, raw: Optional[str]) -> Optional[int]:
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BakeryError(f"target {target}: cache-to compression-level={raw} is not a number") from None


def _true(v: Optional[str]) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def plan_exports(graph: Any, targets: Mapping[str, Any], cwd: str,
                 note: Optional[Note] = None) -> List[ExportPlan]:
    """One plan per destination: the keys every target naming it exports."""
    plans: Dict[Tuple[str, str, str], ExportPlan] = {}
    for name in graph.targets:
        t = targets.get(name)
        if t is None:
            continue
        for e in getattr(t, "cache_to", None) or ():
            typ, attrs = _entry(e)
            if typ == "local":
                if not attrs.get("dest"):
                    _warn(note, f"target {name}: cache-to type=local needs dest=DIR; skipped")
                    continue
                ident = ("local", _path(cwd, attrs["dest"]), attrs.get("tag") or "latest")
            elif typ == "registry":
                if not attrs.get("ref"):
                    _warn(note, f"target {name}: cache-to type=registry needs ref=; skipped")
                    continue
                ident = ("registry", attrs["ref"], "")
            elif typ == "inline":
                continue  # written into the image config (bakery.cache.inline)
            else:
                _warn(note, f"target {name}: cache-to type={typ} is not supported by the "
                            "embedded driver; skipped")
                continue
            mode = (attrs.get("mode") or "min").lower()
            if mode not in ("min", "max"):
                raise BakeryError(f"target {name}: cache-to mode={mode} is not min or max",
                                  hint="mode=min exports the images' layers, mode=max every step")
            comp = (attrs.get("compression") or "gzip").lower()
            if comp not in ("gzip", "zstd", "uncompressed"):
                raise BakeryError(f"target {name}: cache-to compression={comp} is not supported",
                                  hint="use compression=gzip, zstd or uncompressed")
            level = _level(name, attrs.get("compression-level"))
            plan = plans.get(ident)
            if plan is None:
                plan = plans[ident] = ExportPlan(ident[0], ident[1], ident[2] or "latest",
                                                 compression=comp, level=level)
            elif (comp, level) != (plan.compression, plan.level):
                _warn(note, f"target {name}: cache-to {plan.where} is shared with "
                            f"{', '.join(plan.targets)}, which set compression={plan.compression}; "
                            "using that")
            plan.ignore_error = plan.ignore_error or _true(attrs.get("ignore-error"))
            plan.mounts = plan.mounts or _true(attrs.get("cache-mounts"))
            if name not in plan.targets:
                plan.targets.append(name)
            if mode == "max":
                plan.keys.update(graph.target_nodes(name))
            else:
                plan.roots.update(ex.root for ex in graph.exports.values() if ex.target == name)
    return list(plans.values())


LayersOf = Callable[[str], Optional[Sequence[str]]]


def result_chain(graph: Any, root: str, layers_of: LayersOf) -> Set[str]:
    """``mode=min``'s steps for one image: as BuildKit, the records of the
    layers the image holds.  A step belongs when its result (its layers,
    ``layers_of(key)``; None when there is no record) is a prefix of the
    root's layers: the final stage's FROM and every step of it, not a
    build stage whose files were only copied out.  Example: for
    ``FROM base AS b; RUN make`` and ``FROM base; COPY --from=b /out /``
    it is {FROM base, COPY --from=b}, without ``RUN make``."""
    top = layers_of(root)
    if top is None:
        return set()
    top = list(top)
    out = {root}
    seen = {root}
    stack = list(graph.nodes[root].deps) if root in graph.nodes else []
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        layers = layers_of(k)
        if layers is not None and list(layers) == top[:len(layers)]:
            out.add(k)
        if k in graph.nodes:
            stack.extend(graph.nodes[k].deps)
    return out


def mount_ids(graph: Any, names: Iterable[str]) -> Set[str]:
    """The ids of the ``RUN --mount=type=cache`` mounts the targets use."""
    from bakery.graph.ops import Exec

    keys: Set[str] = set()
    for name in names:
        keys.update(graph.target_nodes(name))
    out: Set[str] = set()
    for k in keys:
        op = graph.nodes[k].op
        if isinstance(op, Exec):
            out.update(m.cache_id or m.target for m in op.mounts if m.type == "cache")
    return out


def export_caches(graph: Any, targets: Mapping[str, Any], store: Any, cwd: str,
                  client: Any = None, blobs: Any = None, note: Optional[Note] = None,
                  sources: Sequence[Any] = ()) -> List[str]:
    """Export every ``cache-to`` of the graph's targets; lines for the report.

    ``sources`` are the run's imported caches: steps restored only through
    a later step's record (the engine does not load what it does not need)
    are exported from there, so importing and re-exporting keeps them."""

    def fallback(key: str) -> Optional[CacheRecord]:
        for src in sources:
            rec = src.index().get(key)
            if rec is not None:
                return rec
        return None

    def layers_of(key: str) -> Optional[Sequence[str]]:
        rec = store.get_record(key, touch=False)
        if rec is not None:
            return list(rec.get("layers") or ())
        imported = fallback(key)
        return imported.diff_ids if imported is not None else None

    def copy_from(la: LayerEntry, dest: Any) -> bool:
        return any(src.copy_blob(la, dest) for src in sources)

    done: List[str] = []
    for plan in plan_exports(graph, targets, cwd, note):
        who = ", ".join(plan.targets)
        keys = set(plan.keys)
        for root in sorted(plan.roots):
            keys |= result_chain(graph, root, layers_of)
        mounts = mount_ids(graph, plan.targets) if plan.mounts else set()
        try:
            if plan.type == "local":
                res = export_local(store, keys, plan.where, plan.tag, fallback, copy_from, mounts,
                                   plan.compression, plan.level)
                where = f"{plan.where} (tag {plan.tag})"
            else:
                if client is None or blobs is None:
                    raise BakeryError("no registry access configured")
                res = export_registry(store, keys, client, plan.where, blobs, fallback, copy_from, mounts,
                                      plan.compression, plan.level)
                where = plan.where
        except (BakeryError, OSError) as e:
            msg = e.message if isinstance(e, BakeryError) else str(e)
            if plan.ignore_error:
                _warn(note, f"{who}: cache export to {plan.where} failed: {msg} (ignore-error=true)")
                continue
            raise BakeryError(f"{who}: cache export to {plan.where} failed: {msg}",
                              hint="set ignore-error=true on the cache-to entry to build anyway") from e
        extra = f", {res.mounts} cache mounts" if plan.mounts else ""
        extra += f", {res.removed} old blobs removed" if res.removed else ""
        done.append(f"{who}: cache {where}: {res.records} steps{extra}, "
                    f"{res.written} layers written, {res.reused} already there")
    return done


def sources_for_targets(targets: Mapping[str, Any], names: Sequence[str], cwd: str,
                        client: Any = None, blobs: Any = None, note: Optional[Note] = None) -> List[Any]:
    """The CacheSources of the ``cache-from`` entries of ``names``."""
    entries: List[Any] = []
    for name in names:
        t = targets.get(name)
        if t is not None:
            entries.extend(getattr(t, "cache_from", None) or ())
    return cache_sources(entries, cwd, client, blobs, note)
