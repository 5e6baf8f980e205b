"""``type=registry`` caches: the cache as an OCI artifact in a repository.

``ref=REPO:TAG`` names an OCI image manifest (image-manifest form, OCI
media types) whose config is the cache index (``application/vnd.bakery.
cache.v1+json``) and whose layers are the gzip-compressed layer blobs.

Export: the previous cache under the same ref (if any) says which layers
already have a compressed blob in the repository; those are checked with a
HEAD and not compressed or uploaded again.  The rest are compressed into
the local OCI blob store and pushed, then the index blob, then the manifest
(the tag moves only once everything it names is there).

Import is lazy: the manifest and the index are fetched on the first lookup;
a lookup downloads only that step's layers.  ``ref`` may also name an image
exported with ``cache-to type=inline`` (see :mod:`bakery.cache.inline`).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Dict, Iterable, Optional

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
from bakery.cache.inline import index_from_config
from bakery.cache.local import ExportResult
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.oci.media import (
    DOCKER_CONFIG,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
)
from bakery.oci.reference import parse_reference
from bakery.oci.store import BlobStore

__all__ = ["RegistryCacheSource", "export_registry", "read_registry_index"]


def read_registry_index(client: Any, ref: str, blobs: BlobStore) -> CacheIndex:
    """The cache index ``ref`` names (fetched into ``blobs``, verified): a
    bakery cache artifact, or an image with an inline cache (an image
    manifest, or an index whose every manifest's config is read)."""
    data, _ = client.get_manifest(ref)
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise BakeryError(f"{ref}: the manifest is not a JSON object")
    media = doc.get("mediaType")
    if media in INDEX_TYPES or (media is None and "manifests" in doc):
        return _inline_of_index(client, ref, doc, blobs)
    if media not in (None, *MANIFEST_TYPES):
        raise BakeryError(f"{ref} is not a bakery cache (a {media})")
    config = doc.get("config")
    if isinstance(config, dict) and config.get("mediaType") in (OCI_CONFIG, DOCKER_CONFIG):
        return _inline_of_manifest(client, ref, doc, blobs)
    desc = parse_manifest(data)
    client.fetch_blob(ref, desc, blobs)
    return CacheIndex.from_bytes(blobs.read_bytes(desc.digest))


def _inline_of_manifest(client: Any, ref: str, doc: Dict[str, Any], blobs: BlobStore) -> CacheIndex:
    desc = Descriptor.from_json(doc["config"])
    client.fetch_blob(ref, desc, blobs)
    return index_from_config(blobs.read_json(desc.digest))


def _inline_of_index(client: Any, ref: str, doc: Dict[str, Any], blobs: BlobStore) -> CacheIndex:
    name = parse_reference(ref).name
    merged = CacheIndex()
    for m in doc.get("manifests") or []:
        desc = Descriptor.from_json(m)
        if desc.media_type not in MANIFEST_TYPES:
            continue
        data, _ = client.get_manifest(f"{name}@{desc.digest}")
        one = _inline_of_manifest(client, ref, json.loads(data), blobs)
        merged.records.update(one.records)
    return merged


def export_registry(store: Store, keys: Iterable[str], client: Any, ref: str, blobs: BlobStore,
                    fallback: Optional[Fallback] = None, copy_from: Optional[CopyFrom] = None,
                    mounts: Iterable[str] = (), compression: str = "gzip",
                    level: Optional[int] = None) -> ExportResult:
    """Push the store's records for ``keys`` as the cache ``ref`` (for the
    other arguments see :func:`export_local`)."""
    known: Dict[str, LayerEntry] = {}
    try:
        known = read_registry_index(client, ref, blobs).by_diff_id()
    except READ_ERRORS as e:
        log.debug("cache %s: no previous cache (%s)", ref, e)
    counts = {"written": 0, "reused": 0}

    def resolve(diff_id: str, hint: Optional[LayerEntry]) -> Optional[LayerEntry]:
        entry = known.get(diff_id)
        if entry is not None and client.blob_exists(ref, entry.digest, push=True):
            counts["reused"] += 1
            return entry
        if store.has_blob(diff_id):
            entry = compress_into(store, blobs, diff_id, compression, level)
            client.push_blob(ref, blobs, entry.descriptor())
            counts["written"] += 1
            return entry
        if hint is not None and client.blob_exists(ref, hint.digest, push=True):
            counts["reused"] += 1
            return hint
        if hint is not None and copy_from is not None and copy_from(hint, blobs):
            client.push_blob(ref, blobs, hint.descriptor())
            counts["written"] += 1
            return hint
        return None

    index = collect_all(store, keys, resolve, fallback, mounts)
    idx_desc = blobs.put_bytes(index.to_bytes(), CACHE_INDEX_TYPE)
    client.push_blob(ref, blobs, idx_desc)
    man = build_manifest(idx_desc, index.layers())
    desc = client.put_manifest(ref, man, OCI_MANIFEST)
    return ExportResult(len(index), counts["written"], counts["reused"], desc.digest,
                        mounts=len(index.mounts))


class RegistryCacheSource:
    """``cache-from type=registry,ref=REPO:TAG``: a lazy CacheSource.

    Blobs are downloaded into ``blobs`` (the store's OCI blob store), then
    decompressed into the content store."""

    def __init__(self, client: Any, ref: str, blobs: BlobStore, strict: bool = False):
        self.strict = strict  # ignore-error=false: a broken import fails the build
        self.client = client
        self.ref = ref
        self.blobs = blobs
        self._lock = threading.Lock()
        self._index: Optional[CacheIndex] = None

    def __repr__(self) -> str:
        return f"RegistryCacheSource({self.ref!r})"

    def index(self) -> CacheIndex:
        with self._lock:
            if self._index is None:
                try:
                    self._index = read_registry_index(self.client, self.ref, self.blobs)
                except READ_ERRORS as e:
                    msg = e.message if isinstance(e, BakeryError) else str(e)
                    if self.strict:
                        raise BakeryError(f"cache-from {self.ref}: cannot read the cache: {msg}",
                                          hint="the entry says ignore-error=false; drop it to build "
                                               "without this cache") from None
                    log.warning("cache %s: cannot read the cache (%s); importing nothing", self.ref, msg)
                    self._index = CacheIndex()
            return self._index

    def _blob(self, la: LayerEntry) -> Optional[str]:
        try:
            self.client.fetch_blob(self.ref, la.descriptor(), self.blobs)
        except READ_ERRORS as e:
            log.warning("cache %s: cannot fetch %s: %s", self.ref, la.digest, e)
            return None
        return self.blobs.path(la.digest)

    def fetch(self, key: str, store: Store) -> bool:
        rec = self.index().get(key)
        if rec is None:
            return False
        return install_record(key, rec, store, self._blob, self.strict)

    def copy_blob(self, la: LayerEntry, blobs: BlobStore) -> bool:
        """Download the compressed blob ``la`` into ``blobs`` (verified)."""
        path = self._blob(la)
        if path is None:
            return False
        return blobs.root == self.blobs.root or copy_verified(path, la, blobs)

    def restore_mount(self, cache_id: str, store: Store, path: str) -> bool:
        la = self.index().mounts.get(cache_id)
        return la is not None and restore_mount(cache_id, la, store, path, self._blob)
