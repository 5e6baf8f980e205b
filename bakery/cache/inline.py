"""``type=inline`` caches: the cache index inside the exported image's config.

BuildKit's inline cache keeps its metadata in the image config under
``moby.buildkit.cache.v0``; bakery's is under :data:`INLINE_KEY`, a cache
index (see :mod:`bakery.cache.index`) as a JSON object::

    {"architecture": "amd64", ..., "rootfs": {...},
     "bakery.cache.v1": {"schemaVersion": 1, "mediaType": "application/vnd.bakery.cache.v1+json",
                         "records": {"<step key>": {"layers": [...], "config": ...}}}}

As BuildKit, inline is ``mode=min`` only: the records of the steps whose
results are the image's layers (:func:`bakery.cache.result_chain`), each
layer pointing at the image's own compressed blob, so the image carries its
cache and nothing else is pushed.  ``cache-from type=registry,ref=<image>``
reads it back: an image manifest, or every manifest of a multi-platform
index, each config's records merged.

The hook: run.py wraps the image exporter's ``config_extras`` with
:func:`with_inline_cache` once per run; for each image it writes, the
exporter calls ``hook(target, platform, layers)`` and adds the keys it
returns to the image config (none when the target did not ask for
``cache-to type=inline``).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.cache.index import (
    CACHE_INDEX_TYPE,
    CacheFormatError,
    CacheIndex,
    CacheRecord,
    LayerEntry,
)

__all__ = ["INLINE_KEY", "InlineHook", "index_from_config", "inline_cache_hook", "inline_records",
           "with_inline_cache"]

INLINE_KEY = "bakery.cache.v1"

# (target name, platform, the image's layers) -> extra config keys, as
# bakery.export.image.ConfigExtras
InlineHook = Callable[[str, Any, Sequence[Any]], Mapping[str, Any]]


def inline_records(chain: Mapping[str, Sequence[str]], configs: Mapping[str, Any],
                   layers: Sequence[Any]) -> CacheIndex:
    """The inline index of one image: ``chain`` maps each step key to its
    result's diff_ids (prefixes of the image's), ``layers`` are the image's
    compressed layers (``digest``, ``size``, ``diff_id``, ``descriptor()``).
    A step with a layer the image does not hold is left out."""
    by_diff: Dict[str, LayerEntry] = {}
    for la in layers:
        by_diff.setdefault(la.diff_id, LayerEntry(la.diff_id, la.digest, la.size,
                                                  la.descriptor().media_type))
    records: Dict[str, CacheRecord] = {}
    for key in sorted(chain):
        entries = [by_diff.get(d) for d in chain[key]]
        if all(e is not None for e in entries):
            records[key] = CacheRecord(tuple(e for e in entries if e is not None), configs.get(key))
    return CacheIndex(records)


def inline_cache_hook(graph: Any, targets: Mapping[str, Any], store: Any,
                      sources: Sequence[Any] = ()) -> Optional[InlineHook]:
    """The hook for this run (None when no target asks for an inline cache)."""
    from bakery.cache import _entry, result_chain

    wanted = {name for name in graph.targets
              if any(_entry(e)[0] == "inline" for e in getattr(targets.get(name), "cache_to", None) or ())}
    if not wanted:
        return None

    def record(key: str) -> Optional[Tuple[List[str], Any]]:
        """(diff_ids, config) of the step, from the store or an imported cache."""
        rec = store.get_record(key, touch=False)
        if rec is not None:
            return list(rec.get("layers") or ()), rec.get("config")
        for src in sources:
            got = src.index().get(key)
            if got is not None:
                return got.diff_ids, got.config
        return None

    def layers_of(key: str) -> Optional[Sequence[str]]:
        rec = record(key)
        return rec[0] if rec is not None else None

    def hook(target: str, platform: Any, layers: Sequence[Any]) -> Dict[str, Any]:
        if target not in wanted:
            return {}
        roots = [ex.root for ex in graph.exports.values()
                 if ex.target == target and str(ex.export.platform) == str(platform)]
        if len(roots) != 1:
            return {}
        chain: Dict[str, Sequence[str]] = {}
        configs: Dict[str, Any] = {}
        for key in result_chain(graph, roots[0], layers_of):
            rec = record(key)
            if rec is not None:
                chain[key], configs[key] = rec
        index = inline_records(chain, configs, layers)
        return {INLINE_KEY: json.loads(index.to_bytes())}

    return hook


def with_inline_cache(extras: Optional[InlineHook], graph: Any, targets: Mapping[str, Any],
                      store: Any, sources: Sequence[Any] = ()) -> Optional[InlineHook]:
    """The image exporter's ``config_extras`` hook with the inline cache
    added (``extras`` itself when no target asks for one)."""
    inline = inline_cache_hook(graph, targets, store, sources)
    if inline is None:
        return extras

    def combined(target: str, platform: Any, layers: Sequence[Any]) -> Mapping[str, Any]:
        out = dict(extras(target, platform, layers) or {}) if extras is not None else {}
        out.update(inline(target, platform, layers))
        return out

    return combined


def index_from_config(config: Mapping[str, Any]) -> CacheIndex:
    """The inline cache of an image config (empty when it has none)."""
    doc = config.get(INLINE_KEY)
    if doc is None:
        return CacheIndex()
    if not isinstance(doc, dict) or doc.get("mediaType") != CACHE_INDEX_TYPE:
        raise CacheFormatError(f"the image config's {INLINE_KEY} is not a bakery cache index")
    return CacheIndex.from_bytes(json.dumps(doc).encode())
