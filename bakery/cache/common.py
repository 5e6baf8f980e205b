"""Shared pieces of the exporters and importers: records out of the content
store into an index, and one record's layers back into the store."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from typing import Callable, Dict, Iterable, Optional

from bakery.cache.index import CacheIndex, CacheRecord, LayerEntry
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.oci.media import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from bakery.oci.store import BlobStore

log = logging.getLogger("bakery.cache")

Resolve = Callable[[str], LayerEntry]

# what a broken cache blob can raise while it is decompressed and stored
READ_ERRORS = (OSError, EOFError, zlib.error, BakeryError, ValueError)


def collect_index(store: Store, keys: Iterable[str], resolve: Resolve) -> CacheIndex:
    """The index of the store's records for ``keys`` (keys without a
    trustworthy record are left out); ``resolve(diff_id)`` gives each layer's
    compressed blob, making it when needed."""
    records: Dict[str, CacheRecord] = {}
    done: Dict[str, LayerEntry] = {}
    for key in sorted(set(keys)):
        rec = store.get_record(key, touch=False)
        if rec is None:
            continue
        layers = []
        for diff_id in rec.get("layers") or ():
            entry = done.get(diff_id)
            if entry is None:
                entry = done[diff_id] = resolve(diff_id)
            layers.append(entry)
        records[key] = CacheRecord(tuple(layers), rec.get("config"))
    return CacheIndex(records)


def compress_into(store: Store, blobs: BlobStore, diff_id: str) -> LayerEntry:
    """gzip the store's layer ``diff_id`` into ``blobs`` (deterministic: no
    mtime, no name, level 6)."""
    from bakery.oci.image import add_layer

    layer = add_layer(blobs, store.blob_path(diff_id), "gzip")
    if layer.diff_id != diff_id:  # the store's blob is corrupt
        raise BakeryError(f"the store's layer {diff_id} has the digest {layer.diff_id}",
                          hint="run `bakery cache prune` and build again")
    return LayerEntry(diff_id, layer.digest, layer.size, OCI_LAYER_GZIP)


def install_record(key: str, rec: CacheRecord, store: Store,
                   open_layer: Callable[[LayerEntry], Optional[str]]) -> bool:
    """Put ``rec``'s layers (those the store lacks) and then the record into
    ``store``.  ``open_layer`` gives the path of a compressed blob (None when
    it is not there).  False, with a warning, when any blob is missing or
    does not hold the layer it should: a miss, never a wrong result."""
    try:
        for la in rec.layers:
            if store.has_blob(la.diff_id):
                continue
            path = open_layer(la)
            if path is None:
                log.warning("cache: the layer %s of step %s is missing; building the step", la.digest, key)
                return False
            _decompress(path, la, store)
        store.put_record(key, {"layers": rec.diff_ids, "config": rec.config}, blobs=rec.diff_ids)
        return True
    except READ_ERRORS as e:
        msg = e.message if isinstance(e, BakeryError) else str(e)
        log.warning("cache: cannot import step %s: %s; building the step", key, msg)
        return False


def _decompress(path: str, la: LayerEntry, store: Store) -> None:
    if os.path.getsize(path) != la.size:
        raise BakeryError(f"the cache blob {la.digest} has {os.path.getsize(path)} bytes, "
                          f"not {la.size}")
    with open(path, "rb") as raw:
        if la.media_type == OCI_LAYER_GZIP:
            with gzip.GzipFile(fileobj=raw) as src:
                store.put_stream(src, expected=la.diff_id)
        elif la.media_type == OCI_LAYER:
            store.put_stream(raw, expected=la.diff_id)
        elif la.media_type == OCI_LAYER_ZSTD:
            from bakery.oci.image import _zstandard

            with _zstandard().ZstdDecompressor().stream_reader(raw) as src:
                store.put_stream(src, expected=la.diff_id)
        else:  # pragma: no cover - LayerEntry.from_json rejects these
            raise BakeryError(f"unsupported cache layer type {la.media_type}")
