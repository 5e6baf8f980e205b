"""Shared pieces of the exporters and importers: records out of the content
store into an index, and one record's layers back into the store."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import shutil
import tempfile
import zlib
from typing import Callable, Dict, Iterable, Optional

from bakery.cache.index import CacheIndex, CacheRecord, LayerEntry
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.oci.media import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from bakery.oci.store import BlobStore

log = logging.getLogger("bakery.cache")

Resolve = Callable[[str, Optional[LayerEntry]], Optional[LayerEntry]]
Fallback = Callable[[str], Optional[CacheRecord]]
CopyFrom = Callable[[LayerEntry, BlobStore], bool]

# what a broken cache blob can raise while it is decompressed and stored
READ_ERRORS = (OSError, EOFError, zlib.error, BakeryError, ValueError)


def collect_index(store: Store, keys: Iterable[str], resolve: Resolve,
                  fallback: Optional[Fallback] = None) -> CacheIndex:
    """The index of the records for ``keys`` (keys without a trustworthy
    record are left out); ``resolve(diff_id, hint)`` gives each layer's
    compressed blob in the destination, making or copying it when needed
    (None: it cannot, and the record is left out).

    A key the store has no record for is taken from ``fallback`` (the
    imported caches): a step restored only through a later step's record is
    still exported, its layers copied as they are, never downloaded just to
    be re-exported when the destination already has them."""
    records: Dict[str, CacheRecord] = {}
    done: Dict[str, LayerEntry] = {}
    for key in sorted(set(keys)):
        rec = store.get_record(key, touch=False)
        hints: Dict[str, LayerEntry] = {}
        if rec is not None:
            diff_ids, config = list(rec.get("layers") or ()), rec.get("config")
        else:
            imported = fallback(key) if fallback is not None else None
            if imported is None:
                continue
            diff_ids, config = list(imported.diff_ids), imported.config
            hints = {la.diff_id: la for la in imported.layers}
        layers = []
        for diff_id in diff_ids:
            entry = done.get(diff_id)
            if entry is None:
                got = resolve(diff_id, hints.get(diff_id))
                if got is None:
                    log.warning("cache: the layer %s of step %s is not available; step not exported",
                                diff_id, key)
                    break
                entry = done[diff_id] = got
            layers.append(entry)
        else:
            records[key] = CacheRecord(tuple(layers), config)
    return CacheIndex(records)


def copy_verified(path: str, la: LayerEntry, blobs: BlobStore) -> bool:
    """Copy the compressed blob at ``path`` into ``blobs`` if it is what
    ``la`` says (digest and size); False, with a warning, when it is not."""
    if blobs.has(la.digest):
        return True
    try:
        with open(path, "rb") as src, blobs.writer(expected=la.digest, expected_size=la.size) as w:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                w.write(chunk)
            w.commit(la.media_type)
        return True
    except READ_ERRORS as e:
        log.warning("cache: the blob %s cannot be copied: %s", la.digest, e)
        return False


def collect_all(store: Store, keys: Iterable[str], resolve: Resolve,
                fallback: Optional[Fallback] = None, mounts: Iterable[str] = ()) -> CacheIndex:
    """:func:`collect_index`, plus the contents of the cache mounts
    ``mounts`` (ids; ``cache-mounts=true``), each as one layer tar."""
    index = collect_index(store, keys, resolve, fallback)
    for cid in sorted(set(mounts)):
        path = store.cache_mount(cid)
        if not os.listdir(path):
            continue
        entry = resolve(tar_mount(store, path), None)
        if entry is not None:
            index.mounts[cid] = entry
    return index


def tar_mount(store: Store, path: str) -> str:
    """The cache mount directory ``path`` as a layer tar in ``store``; its diff_id."""
    from bakery.engine.layers import diff_overlay

    fd, tmp = tempfile.mkstemp(prefix="mount-", dir=os.path.join(store.root, "tmp"))
    try:
        with os.fdopen(fd, "wb") as out:
            diff_overlay(path, out)
        return store.put_file(tmp).digest
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def restore_mount(cache_id: str, la: LayerEntry, store: Store, path: str,
                  open_layer: Callable[[LayerEntry], Optional[str]]) -> bool:
    """Fill the empty cache mount directory ``path`` from the tar ``la``
    (verified against its diff_id first); False, with a warning, when the
    blob is missing or broken (the mount stays empty)."""
    from bakery.engine.layers import apply_layer

    try:
        blob = open_layer(la)
        if blob is None:
            log.warning("cache: the contents of cache mount %s are missing; starting empty", cache_id)
            return False
        if not store.has_blob(la.diff_id):
            _decompress(blob, la, store)
        with store.open_blob(la.diff_id) as fh:
            apply_layer(fh, path)
        return True
    except READ_ERRORS as e:
        msg = e.message if isinstance(e, BakeryError) else str(e)
        log.warning("cache: cannot restore cache mount %s: %s; starting empty", cache_id, msg)
        for name in os.listdir(path):
            full = os.path.join(path, name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(full)
        return False


def compress_into(store: Store, blobs: BlobStore, diff_id: str, compression: str = "gzip",
                  level: Optional[int] = None) -> LayerEntry:
    """Compress the store's layer ``diff_id`` into ``blobs`` (deterministic:
    gzip without mtime or name, level 6 by default; or zstd, or
    uncompressed).  Through :func:`bakery.engine.layers.compressed_layer`:
    a layer the image exporter (or an earlier export) already compressed
    into ``blobs`` is not compressed again, and concurrent calls are safe."""
    from bakery.engine.layers import compressed_layer

    layer = compressed_layer(store, blobs, diff_id, compression, level)
    return LayerEntry(diff_id, layer.digest, layer.size, layer.descriptor().media_type)


def install_record(key: str, rec: CacheRecord, store: Store,
                   open_layer: Callable[[LayerEntry], Optional[str]], strict: bool = False) -> bool:
    """Put ``rec``'s layers (those the store lacks) and then the record into
    ``store``.  ``open_layer`` gives the path of a compressed blob (None when
    it is not there).  False, with a warning, when any blob is missing or
    does not hold the layer it should: a miss, never a wrong result
    (``strict``, from ``ignore-error=false``: a BakeryError instead)."""
    try:
        for la in rec.layers:
            if store.has_blob(la.diff_id):
                continue
            path = open_layer(la)
            if path is None:
                raise BakeryError(f"the layer {la.digest} is missing")
            _decompress(path, la, store)
        store.put_record(key, {"layers": rec.diff_ids, "config": rec.config}, blobs=rec.diff_ids)
        return True
    except READ_ERRORS as e:
        msg = e.message if isinstance(e, BakeryError) else str(e)
        if strict:
            raise BakeryError(f"cache import of step {key}: {msg}",
                              hint="the cache-from entry says ignore-error=false; drop it to build "
                                   "the step instead") from None
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
