"""type=registry build caches against a real registry (distribution 2.8)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from bakery.cache import CACHE_INDEX_TYPE, RegistryCacheSource, export_registry, read_registry_index
from bakery.engine.store import Store
from bakery.oci.media import OCI_LAYER_GZIP, OCI_MANIFEST
from bakery.oci.registry import RegistryClient
from bakery.oci.store import BlobStore
from tests.integration.registry import running_registry

pytestmark = pytest.mark.integration


def key(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture
def registry(tmp_path):  # type: ignore[no-untyped-def]
    with running_registry(str(tmp_path / "registry")) as reg:
        yield reg


def test_export_then_lazy_import(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    base = store.put_bytes(b"base" * 1000)
    a = store.put_bytes(b"a" * 1000)
    b = store.put_bytes(b"b" * 1000)
    store.put_record(key("base"), {"layers": [base], "config": {"os": "linux"}}, blobs=[base])
    store.put_record(key("a"), {"layers": [base, a], "config": None}, blobs=[base, a])
    store.put_record(key("b"), {"layers": [base, b], "config": None}, blobs=[base, b])
    client = RegistryClient()
    ref = f"{registry.host}/cache/app:buildcache"
    res = export_registry(store, [key("a")], client, ref, BlobStore(str(tmp_path / "oci")))
    assert (res.records, res.written, res.reused) == (1, 2, 0)
    # incremental: the layers already there are not compressed nor pushed again
    res = export_registry(store, [key("base"), key("a"), key("b")], client, ref,
                          BlobStore(str(tmp_path / "oci2")))
    assert (res.records, res.written, res.reused) == (3, 1, 2)

    if shutil.which("skopeo"):
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                             capture_output=True, text=True, check=True).stdout
        doc = json.loads(raw)
        assert doc["mediaType"] == OCI_MANIFEST
        assert doc["config"]["mediaType"] == CACHE_INDEX_TYPE
        assert {la["mediaType"] for la in doc["layers"]} == {OCI_LAYER_GZIP}
        assert len(doc["layers"]) == 3

    fresh = Store(str(tmp_path / "fresh"))
    src = RegistryCacheSource(RegistryClient(), ref, BlobStore(str(tmp_path / "fresh-oci")))
    assert src.fetch(key("a"), fresh)
    assert fresh.get_record(key("a"), verify=True) == store.get_record(key("a"))
    assert not fresh.has_blob(b)  # lazy: only key a's layers
    assert src.fetch(key("base"), fresh)
    assert fresh.get_record(key("base"))["config"] == {"os": "linux"}
    assert not src.fetch(key("nope"), fresh)
    assert len(read_registry_index(client, ref, BlobStore(str(tmp_path / "x")))) == 3

    # a ref with no cache: misses, never an error
    empty = RegistryCacheSource(client, f"{registry.host}/cache/none:latest",
                                BlobStore(str(tmp_path / "y")))
    assert not empty.fetch(key("a"), fresh)
