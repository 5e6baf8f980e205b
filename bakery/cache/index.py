"""The cache index: the one JSON blob that says what a build cache holds.

Media type :data:`CACHE_INDEX_TYPE` (``application/vnd.bakery.cache.v1+json``)::

    {
      "schemaVersion": 1,
      "mediaType": "application/vnd.bakery.cache.v1+json",
      "records": {
        "<step key>": {
          "layers": [
            {"diff_id": "sha256:<uncompressed tar>",
             "digest": "sha256:<compressed blob>",
             "size": 1234,
             "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
          ],
          "config": {... the image config of image sources, else null ...}
        }
      },
      "mounts": {            (only with cache-mounts=true)
        "<cache mount id>": {"diff_id": ..., "digest": ..., "size": ..., "mediaType": ...}
      }
    }

A record is a step's result as the content store holds it (the layers bottom
first, by diff_id) plus, per layer, the compressed blob that carries it in
the cache.  The JSON is canonical (sorted keys, no spaces), so the same
records always give the same blob digest.

The index and the compressed layers travel in an OCI image manifest
(image-manifest form): ``config`` is the index blob (its media type is the
artifact's type), ``layers`` every compressed layer blob once, sorted by
digest (so registries keep them and garbage collection sees them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from bakery.errors import BakeryError
from bakery.oci.media import (
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    canonical_json,
    check_digest,
)

__all__ = [
    "CACHE_INDEX_TYPE",
    "CacheIndex",
    "CacheRecord",
    "LayerEntry",
    "build_manifest",
    "parse_manifest",
]

CACHE_INDEX_TYPE = "application/vnd.bakery.cache.v1+json"
_LAYER_TYPES = (OCI_LAYER_GZIP, OCI_LAYER, OCI_LAYER_ZSTD)


class CacheFormatError(BakeryError):
    """A cache index or manifest that is not what this format says."""


@dataclass(frozen=True)
class LayerEntry:
    diff_id: str
    digest: str
    size: int
    media_type: str = OCI_LAYER_GZIP

    def to_json(self) -> Dict[str, Any]:
        return {"diff_id": self.diff_id, "digest": self.digest, "size": self.size,
                "mediaType": self.media_type}

    @classmethod
    def from_json(cls, obj: Any) -> LayerEntry:
        if not isinstance(obj, Mapping):
            raise CacheFormatError(f"invalid cache layer entry {obj!r}")
        try:
            diff_id = check_digest(obj["diff_id"])
            digest = check_digest(obj["digest"])
            size = obj["size"]
            media = obj.get("mediaType", OCI_LAYER_GZIP)
        except (KeyError, BakeryError) as e:
            raise CacheFormatError(f"invalid cache layer entry {obj!r}: {e}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CacheFormatError(f"invalid cache layer size {size!r}")
        if media not in _LAYER_TYPES:
            raise CacheFormatError(f"unsupported cache layer media type {media!r}")
        return cls(diff_id, digest, size, media)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)


@dataclass(frozen=True)
class CacheRecord:
    layers: Tuple[LayerEntry, ...]
    config: Optional[Dict[str, Any]] = None

    @property
    def diff_ids(self) -> List[str]:
        return [la.diff_id for la in self.layers]

    def to_json(self) -> Dict[str, Any]:
        return {"layers": [la.to_json() for la in self.layers], "config": self.config}

    @classmethod
    def from_json(cls, obj: Any) -> CacheRecord:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("layers", []), list):
            raise CacheFormatError(f"invalid cache record {obj!r}")
        config = obj.get("config")
        if config is not None and not isinstance(config, dict):
            raise CacheFormatError("invalid cache record: config is not an object")
        return cls(tuple(LayerEntry.from_json(la) for la in obj.get("layers", [])), config)


class CacheIndex:
    """Step key → :class:`CacheRecord`."""

    def __init__(self, records: Optional[Mapping[str, CacheRecord]] = None,
                 mounts: Optional[Mapping[str, LayerEntry]] = None):
        self.records: Dict[str, CacheRecord] = dict(records or {})
        self.mounts: Dict[str, LayerEntry] = dict(mounts or {})  # cache mount id -> its tar

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: object) -> bool:
        return key in self.records

    def get(self, key: str) -> Optional[CacheRecord]:
        return self.records.get(key)

    def layers(self) -> List[LayerEntry]:
        """Every layer blob once, sorted by digest."""
        seen: Dict[str, LayerEntry] = {}
        for rec in self.records.values():
            for la in rec.layers:
                seen.setdefault(la.digest, la)
        for la in self.mounts.values():
            seen.setdefault(la.digest, la)
        return [seen[d] for d in sorted(seen)]

    def by_diff_id(self) -> Dict[str, LayerEntry]:
        out: Dict[str, LayerEntry] = {}
        for rec in self.records.values():
            for la in rec.layers:
                out.setdefault(la.diff_id, la)
        return out

    def to_bytes(self) -> bytes:
        doc: Dict[str, Any] = {
            "schemaVersion": 1,
            "mediaType": CACHE_INDEX_TYPE,
            "records": {k: self.records[k].to_json() for k in sorted(self.records)},
        }
        if self.mounts:
            doc["mounts"] = {k: self.mounts[k].to_json() for k in sorted(self.mounts)}
        return canonical_json(doc)

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheIndex:
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise CacheFormatError(f"the cache index is not valid JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("mediaType") != CACHE_INDEX_TYPE:
            raise CacheFormatError("not a bakery cache index",
                                   hint=f"expected a blob of type {CACHE_INDEX_TYPE}")
        if doc.get("schemaVersion") != 1:
            raise CacheFormatError(f"unsupported cache index version {doc.get('schemaVersion')!r}")
        recs = doc.get("records")
        if not isinstance(recs, dict):
            raise CacheFormatError("invalid cache index: no records")
        out: Dict[str, CacheRecord] = {}
        for k, v in recs.items():
            check_digest(k)
            out[k] = CacheRecord.from_json(v)
        mounts = doc.get("mounts") or {}
        if not isinstance(mounts, dict):
            raise CacheFormatError("invalid cache index: mounts is not an object")
        return cls(out, {str(k): LayerEntry.from_json(v) for k, v in mounts.items()})


def build_manifest(index_desc: Descriptor, layers: Iterable[LayerEntry]) -> bytes:
    """The OCI image manifest (canonical JSON) of a cache."""
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor(CACHE_INDEX_TYPE, index_desc.digest, index_desc.size).to_json(),
        "layers": [la.descriptor().to_json() for la in layers],
    })


def parse_manifest(data: bytes) -> Descriptor:
    """The cache index descriptor of a cache manifest."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise CacheFormatError(f"the cache manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), Mapping):
        raise CacheFormatError("the cache manifest has no config")
    desc = Descriptor.from_json(doc["config"])
    if desc.media_type != CACHE_INDEX_TYPE:
        raise CacheFormatError(f"not a bakery cache: config type {desc.media_type!r}",
                               hint=f"a bakery cache's config has the type {CACHE_INDEX_TYPE}")
    return desc
