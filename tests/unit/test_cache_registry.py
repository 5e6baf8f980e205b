"""type=registry build caches against an in-memory registry client."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Dict, List, Tuple

import pytest

from bakery.cache import CACHE_INDEX_TYPE, RegistryCacheSource, export_registry
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.oci.media import OCI_MANIFEST, Descriptor, digest_bytes
from bakery.oci.store import BlobStore


def key(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


class FakeClient:
    """The RegistryClient calls the cache uses, over dicts."""

    def __init__(self) -> None:
        self.blobs: Dict[str, bytes] = {}
        self.manifests: Dict[str, Tuple[bytes, str]] = {}
        self.pushed: List[str] = []

    def get_manifest(self, ref: str) -> Tuple[bytes, Descriptor]:
        if ref not in self.manifests:
            raise BakeryError(f"{ref}: not found")
        data, media = self.manifests[ref]
        return data, Descriptor(media, digest_bytes(data), len(data))

    def put_manifest(self, ref: str, data: bytes, media_type: str) -> Descriptor:
        self.manifests[ref] = (data, media_type)
        return Descriptor(media_type, digest_bytes(data), len(data))

    def blob_exists(self, ref: str, digest: str, push: bool = False) -> bool:
        return digest in self.blobs

    def push_blob(self, ref: str, store: BlobStore, desc: Descriptor) -> str:
        self.blobs[desc.digest] = store.read_bytes(desc.digest)
        self.pushed.append(desc.digest)
        return "uploaded"

    def fetch_blob(self, ref: str, desc: Descriptor, store: BlobStore) -> None:
        if desc.digest not in self.blobs:
            raise BakeryError(f"blob {desc.digest} not found")
        with store.writer(desc.digest, desc.size) as w:
            w.write(self.blobs[desc.digest])
            w.commit(desc.media_type)


@pytest.fixture
def store(tmp_path) -> Store:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path / "store"))
    base = s.put_bytes(b"base" * 500)
    a = s.put_bytes(b"a" * 500)
    b = s.put_bytes(b"b" * 500)
    s.put_record(key("a"), {"layers": [base, a], "config": None}, blobs=[base, a])
    s.put_record(key("b"), {"layers": [base, b], "config": None}, blobs=[base, b])
    return s


def test_export_pushes_blobs_then_the_manifest_incrementally(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = FakeClient()
    res = export_registry(store, [key("a")], c, "r/cache:t", BlobStore(str(tmp_path / "o1")))
    assert (res.records, res.written, res.reused) == (1, 2, 0)
    data, media = c.manifests["r/cache:t"]
    doc = json.loads(data)
    assert media == OCI_MANIFEST and doc["config"]["mediaType"] == CACHE_INDEX_TYPE
    assert all(la["digest"] in c.blobs for la in doc["layers"]) and doc["config"]["digest"] in c.blobs
    c.pushed.clear()
    res = export_registry(store, [key("a"), key("b")], c, "r/cache:t", BlobStore(str(tmp_path / "o2")))
    assert (res.records, res.written, res.reused) == (2, 1, 2)
    assert len(c.pushed) == 2  # the new layer and the new index


def test_import_is_lazy_and_a_missing_blob_is_a_miss(store, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    c = FakeClient()
    export_registry(store, [key("a"), key("b")], c, "r/cache:t", BlobStore(str(tmp_path / "o")))
    fresh = Store(str(tmp_path / "fresh"))
    src = RegistryCacheSource(c, "r/cache:t", BlobStore(str(tmp_path / "fo")))
    assert src.fetch(key("a"), fresh)
    assert fresh.get_record(key("a"), verify=True) == store.get_record(key("a"))
    assert not fresh.has_blob(store.get_record(key("b"))["layers"][1])
    b_digest = src.index().records[key("b")].layers[1].digest
    del c.blobs[b_digest]
    with caplog.at_level(logging.WARNING, logger="bakery.cache"):
        assert not src.fetch(key("b"), fresh)
    assert fresh.get_record(key("b")) is None
    c.blobs[b_digest] = b"\x1f\x8b" + b"x" * 30  # corrupt
    src2 = RegistryCacheSource(c, "r/cache:t", BlobStore(str(tmp_path / "fo2")))
    assert not src2.fetch(key("b"), Store(str(tmp_path / "fresh2")))


def test_no_cache_under_the_ref_is_a_miss(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    src = RegistryCacheSource(FakeClient(), "r/none:t", BlobStore(str(tmp_path / "o")))
    with caplog.at_level(logging.WARNING, logger="bakery.cache"):
        assert not src.fetch(key("a"), Store(str(tmp_path / "s")))
    assert "cannot read the cache" in caplog.text


def test_reexport_passes_imported_records_through(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = FakeClient()
    export_registry(store, [key("a"), key("b")], client, "r/app:cache", BlobStore(str(tmp_path / "o1")))
    src = RegistryCacheSource(client, "r/app:cache", BlobStore(str(tmp_path / "o2")))
    empty = Store(str(tmp_path / "empty"))  # a runner that loaded nothing
    # to another repository: the blobs are there already (same fake registry), nothing is
    # compressed nor pushed again
    client.pushed.clear()
    res = export_registry(empty, [key("a"), key("b")], client, "r/other:cache",
                          BlobStore(str(tmp_path / "o3")), fallback=lambda k: src.index().get(k),
                          copy_from=lambda la, blobs: src.copy_blob(la, blobs))
    assert (res.records, res.written, res.reused) == (2, 0, 3)
    assert len(client.pushed) == 1  # the new cache index only
    # to another registry: the compressed blobs are copied as they are, verified
    other = FakeClient()
    res = export_registry(empty, [key("a")], other, "s/app:cache", BlobStore(str(tmp_path / "o4")),
                          fallback=lambda k: src.index().get(k),
                          copy_from=lambda la, blobs: src.copy_blob(la, blobs))
    assert (res.records, res.written) == (1, 2)
    assert RegistryCacheSource(other, "s/app:cache", BlobStore(str(tmp_path / "o5"))).fetch(
        key("a"), Store(str(tmp_path / "s2")))


def test_an_image_with_an_inline_cache_is_a_cache_source(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.cache.inline import INLINE_KEY, inline_records
    from bakery.oci.image import add_layer
    from bakery.oci.media import OCI_CONFIG, OCI_INDEX

    client = FakeClient()
    work = BlobStore(str(tmp_path / "work"))
    rec = store.get_record(key("a"))
    layers = [add_layer(work, store.blob_path(d)) for d in rec["layers"]]
    for la in layers:
        client.blobs[la.digest] = work.read_bytes(la.digest)
    idx = inline_records({key("a"): rec["layers"]}, {}, layers)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", INLINE_KEY: json.loads(idx.to_bytes())}).encode()
    client.blobs[digest_bytes(cfg)] = cfg
    man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": digest_bytes(cfg), "size": len(cfg)},
                      "layers": [la.descriptor().to_json() for la in layers]}).encode()
    client.manifests["r/app:v1"] = (man, OCI_MANIFEST)
    client.manifests[f"docker.io/r/app@{digest_bytes(man)}"] = (man, OCI_MANIFEST)  # the full name
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest_bytes(man), "size": len(man),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    client.manifests["r/app:multi"] = (index, OCI_INDEX)
    for ref in ("r/app:v1", "r/app:multi"):
        fresh = Store(str(tmp_path / ref.replace("/", "_").replace(":", "_")))
        src = RegistryCacheSource(client, ref, BlobStore(str(tmp_path / ("b" + ref[-2:]))))
        assert src.fetch(key("a"), fresh)
        assert fresh.get_record(key("a"), verify=True)["layers"] == rec["layers"]
        assert not src.fetch(key("b"), fresh)
