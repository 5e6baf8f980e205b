"""``type=local`` caches: an OCI image layout directory.

::

    DIR/oci-layout                    {"imageLayoutVersion":"1.0.0"}
    DIR/index.json                    one manifest per tag (ref.name annotation)
    DIR/blobs/sha256/<manifest>       the cache manifest (see bakery.cache.index)
    DIR/blobs/sha256/<cache index>    the cache index JSON
    DIR/blobs/sha256/<layer>...       gzip-compressed layers

Export (``dest=DIR``) is incremental: a layer whose compressed blob the
previous index of DIR already names (and that is there with its size) is
neither compressed again nor rewritten.  New blobs are written to a temp
file and renamed; ``index.json`` last, also through a temp file and a
rename, so a reader sees the old cache or the new one, never half of one.
Exporting a tag replaces that tag's index (other tags stay); then blobs no
tag names any more are removed, so a directory that is exported to again
and again does not grow (exports to one directory take turns through a
lock file, ``DIR/.bakery-lock``).

Import (``src=DIR``) is lazy: the index is read once, on the first lookup;
a lookup copies only that step's layers into the content store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from typing import Any, Dict, Iterable, List, Optional

from bakery.cache.common import (
    READ_ERRORS,
    CopyFrom,
    Fallback,
    collect_all,
    compress_into,
    copy_verified,
    install_record,
    log,
    restore_mount,
)
from bakery.cache.index import (
    CACHE_INDEX_TYPE,
    CacheIndex,
    LayerEntry,
    build_manifest,
    parse_manifest,
)
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.fsutil import atomic_write
from bakery.oci.media import OCI_INDEX, OCI_MANIFEST, Descriptor, canonical_json
from bakery.oci.store import BlobStore

__all__ = ["LocalCacheSource", "export_local", "read_local_index"]

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
LOCK_NAME = ".bakery-lock"


class ExportResult:
    def __init__(self, records: int, written: int, reused: int, digest: str, mounts: int = 0):
        self.records = records
        self.mounts = mounts  # cache mounts exported
        self.removed = 0  # old blobs removed (type=local)
        self.written = written  # layer blobs compressed and written
        self.reused = reused  # layer blobs already there
        self.digest = digest  # the cache manifest


def _read_verified(blobs: BlobStore, desc: Descriptor) -> bytes:
    data = blobs.read_bytes(desc.digest)
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest or len(data) != desc.size:
        raise BakeryError(f"the cache blob {desc.digest} is corrupt")
    return data


def _index_entries(dest: str) -> List[Dict[str, Any]]:
    path = os.path.join(dest, "index.json")
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return []
    except ValueError as e:
        raise BakeryError(f"{path} is not valid JSON: {e}") from None
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    return [m for m in entries or [] if isinstance(m, dict)]


def read_local_index(path: str, tag: str = "latest") -> CacheIndex:
    """The cache index of the layout ``path`` under ``tag``."""
    entries = _index_entries(path)
    chosen = [m for m in entries if (m.get("annotations") or {}).get(REF_NAME) == tag]
    if not chosen:
        chosen = [m for m in entries if not (m.get("annotations") or {}).get(REF_NAME)]
        if len(chosen) != 1:
            raise BakeryError(f"{path}: no cache tagged {tag!r}")
    blobs = BlobStore(os.path.join(path, "blobs"))
    man = _read_verified(blobs, Descriptor.from_json(chosen[0]))
    return CacheIndex.from_bytes(_read_verified(blobs, parse_manifest(man)))


def export_local(store: Store, keys: Iterable[str], dest: str, tag: str = "latest",
                 fallback: Optional[Fallback] = None, copy_from: Optional[CopyFrom] = None,
                 mounts: Iterable[str] = (), compression: str = "gzip",
                 level: Optional[int] = None) -> ExportResult:
    """Write the store's records for ``keys`` as the cache ``tag`` of ``dest``.

    Keys the store lacks come from ``fallback`` (imported caches), their
    compressed blobs through ``copy_from(layer, blobs)``; ``mounts`` are
    cache mount ids whose contents go along (``cache-mounts=true``).
    New blobs are compressed with ``compression`` (gzip, zstd or
    uncompressed) at ``level``; blobs already there are reused whatever
    their compression (as BuildKit without force-compression).
    Exports to one directory take turns (a lock file, ``.bakery-lock``);
    after the new index is in place, blobs no tag names any more are
    removed (:func:`collect_garbage`)."""
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    fd = os.open(os.path.join(dest, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = _export_local(store, keys, dest, tag, fallback, copy_from, mounts, compression, level)
        res.removed = collect_garbage(dest)
        return res
    finally:
        os.close(fd)


def collect_garbage(dest: str, grace: float = 3600.0) -> int:
    """Remove the blobs of ``dest`` that no tag's manifest names (the
    manifests, their cache indexes and layers are kept; stray temp files
    only when older than ``grace`` seconds); the number removed.  Nothing
    is removed from a layout that holds anything but bakery caches.  A reader
    that read the old index.json just before may then miss a blob: a cache
    miss with a warning, never a wrong result."""
    keep = set()
    blobs = BlobStore(os.path.join(dest, "blobs"))
    for m in _index_entries(dest):
        digest = m.get("digest")
        if not isinstance(digest, str):
            continue
        keep.add(digest)
        try:
            man = json.loads(blobs.read_bytes(digest))
        except (ValueError, BakeryError, OSError):
            return 0  # an index we cannot follow: remove nothing
        if not isinstance(man, dict) or (man.get("config") or {}).get("mediaType") != CACHE_INDEX_TYPE:
            return 0  # not only bakery caches here (an image too?): remove nothing
        for d in [man.get("config") or {}, *(man.get("layers") or [])]:
            if isinstance(d, dict) and isinstance(d.get("digest"), str):
                keep.add(d["digest"])
    removed = 0
    now = time.time()
    bdir = os.path.join(dest, "blobs", "sha256")
    for name in os.listdir(bdir) if os.path.isdir(bdir) else []:
        path = os.path.join(bdir, name)
        if name.startswith("."):
            with contextlib.suppress(OSError):
                if now - os.lstat(path).st_mtime > grace:
                    os.unlink(path)
            continue
        if "sha256:" + name not in keep:
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed += 1
    return removed


def _export_local(store: Store, keys: Iterable[str], dest: str, tag: str,
                  fallback: Optional[Fallback], copy_from: Optional[CopyFrom],
                  mounts: Iterable[str], compression: str, level: Optional[int]) -> ExportResult:
    blobs = BlobStore(os.path.join(dest, "blobs"))
    # what the layout already holds: its previous indexes (any tag)
    known: Dict[str, LayerEntry] = {}
    for m in _index_entries(dest):
        name = (m.get("annotations") or {}).get(REF_NAME) or ""
        try:
            known.update(read_local_index(dest, name).by_diff_id() if name else {})
        except READ_ERRORS as e:
            log.debug("cache %s: ignoring the old index %s: %s", dest, name, e)
    counts = {"written": 0, "reused": 0}

    def present(la: LayerEntry) -> bool:
        p = blobs.path(la.digest)
        return os.path.isfile(p) and os.path.getsize(p) == la.size

    def resolve(diff_id: str, hint: Optional[LayerEntry]) -> Optional[LayerEntry]:
        entry = known.get(diff_id)
        if entry is not None and present(entry):
            counts["reused"] += 1
            return entry
        if store.has_blob(diff_id):
            entry = compress_into(store, blobs, diff_id, compression, level)
            counts["written"] += 1
            return entry
        if hint is not None and present(hint):
            counts["reused"] += 1
            return hint
        if hint is not None and copy_from is not None and copy_from(hint, blobs):
            counts["written"] += 1
            return hint
        return None

    index = collect_all(store, keys, resolve, fallback, mounts)
    idx_desc = blobs.put_bytes(index.to_bytes(), CACHE_INDEX_TYPE)
    man = build_manifest(idx_desc, index.layers())
    man_desc = blobs.put_bytes(man, OCI_MANIFEST)
    entries = [m for m in _index_entries(dest) if (m.get("annotations") or {}).get(REF_NAME) != tag]
    entries.append(man_desc.with_annotations({REF_NAME: tag}).to_json())
    if not os.path.isfile(os.path.join(dest, "oci-layout")):
        atomic_write(os.path.join(dest, "oci-layout"), LAYOUT_VERSION, mode=0o644, sync=True)
    atomic_write(os.path.join(dest, "index.json"),
                 canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}), sync=True)
    return ExportResult(len(index), counts["written"], counts["reused"], man_desc.digest,
                        mounts=len(index.mounts))


class LocalCacheSource:
    """``cache-from type=local,src=DIR[,tag=T]``: a lazy CacheSource."""

    def __init__(self, src: str, tag: str = "latest", strict: bool = False):
        self.src = os.path.abspath(src)
        self.strict = strict  # ignore-error=false: a broken import fails the build
        self.tag = tag
        self._lock = threading.Lock()
        self._index: Optional[CacheIndex] = None
        self.blobs_dir = os.path.join(self.src, "blobs")

    def __repr__(self) -> str:
        return f"LocalCacheSource({self.src!r}, tag={self.tag!r})"

    def index(self) -> CacheIndex:
        with self._lock:
            if self._index is None:
                try:
                    self._index = read_local_index(self.src, self.tag)
                except READ_ERRORS as e:
                    msg = e.message if isinstance(e, BakeryError) else str(e)
                    if self.strict:
                        raise BakeryError(f"cache-from {self.src}: cannot read the cache: {msg}",
                                          hint="the entry says ignore-error=false; drop it to build "
                                               "without this cache") from None
                    log.warning("cache %s: cannot read the cache (%s); importing nothing", self.src, msg)
                    self._index = CacheIndex()
            return self._index

    def _blob(self, la: LayerEntry) -> Optional[str]:
        algo, _, hexd = la.digest.partition(":")
        path = os.path.join(self.blobs_dir, algo, hexd)
        return path if os.path.isfile(path) else None

    def fetch(self, key: str, store: Store) -> bool:
        rec = self.index().get(key)
        if rec is None:
            return False
        return install_record(key, rec, store, self._blob, self.strict)

    def copy_blob(self, la: LayerEntry, blobs: BlobStore) -> bool:
        """Copy the compressed blob ``la`` into ``blobs`` (verified)."""
        path = self._blob(la)
        return path is not None and copy_verified(path, la, blobs)

    def restore_mount(self, cache_id: str, store: Store, path: str) -> bool:
        la = self.index().mounts.get(cache_id)
        return la is not None and restore_mount(cache_id, la, store, path, self._blob)
