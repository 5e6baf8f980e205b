"""Build cache export/import: the index format and type=local caches."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest

from bakery.cache import (
    CACHE_INDEX_TYPE,
    CacheIndex,
    CacheRecord,
    LayerEntry,
    LocalCacheSource,
    cache_sources,
    export_caches,
    export_local,
    plan_exports,
    read_local_index,
)
from bakery.cache.index import build_manifest, parse_manifest
from bakery.engine.executor import Engine
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.oci.media import OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def key(name: str) -> str:
    return sha(b"key:" + name.encode())


def layer(store: Store, content: bytes) -> str:
    return store.put_bytes(content * 100)


@pytest.fixture
def store(tmp_path) -> Store:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path / "store"))
    base = layer(s, b"base")
    a = layer(s, b"a-layer")
    b = layer(s, b"b-layer")
    s.put_record(key("base"), {"layers": [base], "config": {"config": {"Env": ["X=1"]}}}, blobs=[base])
    s.put_record(key("a"), {"layers": [base, a], "config": None}, blobs=[base, a])
    s.put_record(key("b"), {"layers": [base, b], "config": None}, blobs=[base, b])
    return s


def blob_files(d: str) -> Dict[str, float]:
    bdir = os.path.join(d, "blobs", "sha256")
    return {n: os.stat(os.path.join(bdir, n)).st_mtime_ns for n in os.listdir(bdir)}


# -- the format ----------------------------------------------------------------


def test_index_round_trips_and_is_canonical() -> None:
    la = LayerEntry(sha(b"u"), sha(b"c"), 12, OCI_LAYER_GZIP)
    idx = CacheIndex({key("x"): CacheRecord((la,), {"config": {}}), key("y"): CacheRecord(())})
    data = idx.to_bytes()
    doc = json.loads(data)
    assert doc["mediaType"] == CACHE_INDEX_TYPE and doc["schemaVersion"] == 1
    assert doc["records"][key("x")]["layers"] == [
        {"diff_id": sha(b"u"), "digest": sha(b"c"), "size": 12, "mediaType": OCI_LAYER_GZIP}]
    back = CacheIndex.from_bytes(data)
    assert back.records == idx.records
    # same records, same bytes, whatever the insertion order
    assert CacheIndex(dict(reversed(list(idx.records.items())))).to_bytes() == data
    assert back.layers() == [la]


@pytest.mark.parametrize("data", [
    b"not json",
    b'{"mediaType": "application/json", "schemaVersion": 1, "records": {}}',
    b'{"mediaType": "application/vnd.bakery.cache.v1+json", "schemaVersion": 9, "records": {}}',
    b'{"mediaType": "application/vnd.bakery.cache.v1+json", "schemaVersion": 1, '
    b'"records": {"sha256:zz": {"layers": []}}}',
    b'{"mediaType": "application/vnd.bakery.cache.v1+json", "schemaVersion": 1, '
    b'"records": {"' + ("sha256:" + "a" * 64).encode() + b'": {"layers": [{"diff_id": "x"}]}}}',
])
def test_bad_indexes_are_rejected(data: bytes) -> None:
    with pytest.raises(BakeryError):
        CacheIndex.from_bytes(data)


def test_manifest_names_the_index_as_config_and_every_layer() -> None:
    la = LayerEntry(sha(b"u"), sha(b"c"), 12)
    idx = Descriptor(CACHE_INDEX_TYPE, sha(b"i"), 5)
    data = build_manifest(idx, [la])
    doc = json.loads(data)
    assert doc["mediaType"] == OCI_MANIFEST and doc["schemaVersion"] == 2
    assert doc["config"] == {"mediaType": CACHE_INDEX_TYPE, "digest": sha(b"i"), "size": 5}
    assert doc["layers"] == [{"mediaType": OCI_LAYER_GZIP, "digest": sha(b"c"), "size": 12}]
    assert parse_manifest(data).digest == sha(b"i")
    other = json.dumps({"config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": sha(b"i"), "size": 5}}).encode()
    with pytest.raises(BakeryError, match="not a bakery cache"):
        parse_manifest(other)


# -- export --------------------------------------------------------------------


def test_export_writes_an_oci_layout_with_the_records(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "cache")
    res = export_local(store, [key("base"), key("a"), sha(b"no such record")], dest)
    assert res.records == 2 and res.written == 2 and res.reused == 0
    with open(os.path.join(dest, "oci-layout")) as fh:
        assert json.load(fh) == {"imageLayoutVersion": "1.0.0"}
    with open(os.path.join(dest, "index.json")) as fh:
        index = json.load(fh)
    (m,) = index["manifests"]
    assert m["mediaType"] == OCI_MANIFEST and m["digest"] == res.digest
    assert m["annotations"] == {"org.opencontainers.image.ref.name": "latest"}
    idx = read_local_index(dest)
    assert sorted(idx.records) == sorted([key("base"), key("a")])
    assert idx.records[key("base")].config == {"config": {"Env": ["X=1"]}}
    assert idx.records[key("a")].diff_ids == store.get_record(key("a"))["layers"]
    # the shared base layer is one blob; blobs: 2 layers + index + manifest
    assert len(blob_files(dest)) == 4
    assert not [n for n in os.listdir(dest) if n.startswith(".tmp")]


def test_export_is_incremental(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "cache")
    export_local(store, [key("a")], dest)
    before = blob_files(dest)
    res = export_local(store, [key("a"), key("b")], dest)
    assert res.written == 1 and res.reused == 2
    after = blob_files(dest)
    layers = {la.digest.split(":")[1] for la in read_local_index(dest).layers()}
    for name, mtime in before.items():
        if name in layers:
            assert after[name] == mtime  # not rewritten
    assert len(layers & set(before)) == 2  # base and a, kept
    assert res.removed == 2  # the old manifest and cache index
    assert sorted(read_local_index(dest).records) == sorted([key("a"), key("b")])


def test_export_replaces_the_tag_and_keeps_other_tags(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "cache")
    export_local(store, [key("a")], dest, tag="one")
    export_local(store, [key("b")], dest, tag="two")
    export_local(store, [key("base")], dest, tag="one")
    assert list(read_local_index(dest, "one").records) == [key("base")]
    assert list(read_local_index(dest, "two").records) == [key("b")]
    with pytest.raises(BakeryError, match="no cache tagged"):
        read_local_index(dest, "three")


def test_index_json_is_replaced_atomically(store, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "cache")
    export_local(store, [key("a")], dest)
    with open(os.path.join(dest, "index.json"), "rb") as fh:
        old = fh.read()
    real = os.replace

    def failing(src: str, dst: str) -> None:
        if os.path.basename(dst) == "index.json":
            raise OSError("disk on fire")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk on fire"):
        export_local(store, [key("a"), key("b")], dest)
    monkeypatch.setattr(os, "replace", real)
    with open(os.path.join(dest, "index.json"), "rb") as fh:
        assert fh.read() == old  # the old cache, whole
    assert list(read_local_index(dest).records) == [key("a")]
    assert not [n for n in os.listdir(dest) if n.startswith(".tmp")]


# -- import --------------------------------------------------------------------


def test_import_is_lazy_and_installs_one_record(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "cache")
    export_local(store, [key("base"), key("a"), key("b")], dest)
    fresh = Store(str(tmp_path / "fresh"))
    src = LocalCacheSource(dest)
    assert src._index is None  # nothing read yet
    assert src.fetch(key("a"), fresh)
    rec = fresh.get_record(key("a"), verify=True)
    assert rec == store.get_record(key("a"))
    b_layer = store.get_record(key("b"))["layers"][1]
    assert not fresh.has_blob(b_layer)  # only what the fetched key needs
    assert not src.fetch(sha(b"unknown"), fresh)
    assert fresh.get_record(key("base")) is None  # not fetched yet
    assert src.fetch(key("base"), fresh)
    assert fresh.get_record(key("base"))["config"] == {"config": {"Env": ["X=1"]}}


def _layer_blob(dest: str, diff_id: str) -> str:
    entry = read_local_index(dest).by_diff_id()[diff_id]
    return os.path.join(dest, "blobs", "sha256", entry.digest.split(":")[1])


def test_missing_blob_is_a_miss(store, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "cache")
    export_local(store, [key("a")], dest)
    os.unlink(_layer_blob(dest, store.get_record(key("a"))["layers"][1]))
    fresh = Store(str(tmp_path / "fresh"))
    with caplog.at_level(logging.WARNING, logger="bakery.cache"):
        assert not LocalCacheSource(dest).fetch(key("a"), fresh)
    assert fresh.get_record(key("a")) is None
    assert "missing" in caplog.text


@pytest.mark.parametrize("how", ["garbage", "truncated", "other-layer"])
def test_corrupt_blob_is_a_miss(store, tmp_path, caplog, how) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "cache")
    export_local(store, [key("a"), key("b")], dest)
    rec_a, rec_b = store.get_record(key("a")), store.get_record(key("b"))
    path = _layer_blob(dest, rec_a["layers"][1])
    size = os.path.getsize(path)
    os.chmod(path, 0o644)
    if how == "garbage":
        data = os.urandom(size)
    elif how == "truncated":
        with open(path, "rb") as fh:
            data = fh.read()[: size // 2]
    else:  # a valid gzip of another layer, claiming to be this one
        with open(_layer_blob(dest, rec_b["layers"][1]), "rb") as fh:
            data = fh.read()
    os.unlink(path)
    with open(path, "wb") as fh:
        fh.write(data)
    fresh = Store(str(tmp_path / "fresh"))
    with caplog.at_level(logging.WARNING, logger="bakery.cache"):
        assert not LocalCacheSource(dest).fetch(key("a"), fresh)
    assert fresh.get_record(key("a")) is None
    assert not fresh.has_blob(rec_a["layers"][1])
    assert "cannot import" in caplog.text
    assert os.listdir(fresh.session_dir()) == []  # no temp file left


def test_unreadable_cache_imports_nothing(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    fresh = Store(str(tmp_path / "fresh"))
    with caplog.at_level(logging.WARNING, logger="bakery.cache"):
        assert not LocalCacheSource(str(tmp_path / "nowhere")).fetch(key("a"), fresh)
    os.makedirs(tmp_path / "bad")
    (tmp_path / "bad" / "index.json").write_text("{")
    assert not LocalCacheSource(str(tmp_path / "bad")).fetch(key("a"), fresh)
    assert "cannot read the cache" in caplog.text


def test_engine_loads_through_the_cache_source(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "cache")
    export_local(store, [key("a")], dest)
    fresh = Store(str(tmp_path / "fresh"))
    eng = Engine(fresh, sandbox=None, cache_sources=[LocalCacheSource(dest)])
    st = eng.load(key("a"))
    assert st is not None and st.cached
    assert list(st.layers) == store.get_record(key("a"))["layers"]
    assert eng.load(key("b")) is None


# -- entries and plans ---------------------------------------------------------


class FakeGraph:
    def __init__(self) -> None:
        self.targets = {"api": None, "web": None, "plain": None}
        self.exports = {
            "export:api@linux/amd64": SimpleNamespace(target="api", root=key("a")),
            "export:web@linux/amd64": SimpleNamespace(target="web", root=key("b")),
            "export:plain@linux/amd64": SimpleNamespace(target="plain", root=key("b")),
        }
        self.nodes_of = {"api": {key("base"), key("a")}, "web": {key("base"), key("b")},
                         "plain": {key("b")}}
        self.nodes = {key("base"): SimpleNamespace(deps=(), op=None),
                      key("a"): SimpleNamespace(deps=(key("base"),), op=None),
                      key("b"): SimpleNamespace(deps=(key("base"),), op=None)}

    def target_nodes(self, target: str) -> set:
        return set(self.nodes_of[target])


def test_plans_merge_targets_sharing_a_dest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    targets = {
        "api": SimpleNamespace(cache_to=["type=local,dest=c,mode=max"]),
        "web": SimpleNamespace(cache_to=["type=local,dest=./c,mode=min"]),
        "plain": SimpleNamespace(cache_to=None),
    }
    notes: List[str] = []
    (plan,) = plan_exports(FakeGraph(), targets, str(tmp_path), notes.append)
    assert plan.where == str(tmp_path / "c") and plan.tag == "latest"
    assert plan.targets == ["api", "web"]
    assert plan.keys == {key("base"), key("a")}  # api: mode=max, every step
    assert plan.roots == {key("b")}  # web: mode=min, its image (layers known at export time)
    targets["api"] = SimpleNamespace(cache_to=["type=gha", "type=local,dest=c,tag=v2"])
    plans = plan_exports(FakeGraph(), targets, str(tmp_path), notes.append)
    assert sorted(p.tag for p in plans) == ["latest", "v2"]
    assert [(p.keys, p.roots) for p in plans if p.tag == "v2"] == [(set(), {key("a")})]  # mode=min
    assert any("type=gha is not supported" in n for n in notes)
    targets["api"] = SimpleNamespace(cache_to=["type=local,dest=c,mode=all"])
    with pytest.raises(BakeryError, match="mode=all"):
        plan_exports(FakeGraph(), targets, str(tmp_path))


def test_export_caches_writes_once_per_dest_and_honours_ignore_error(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    targets: Dict[str, Any] = {
        "api": SimpleNamespace(cache_to=["type=local,dest=c,mode=max"]),
        "web": SimpleNamespace(cache_to=["type=local,dest=c,mode=max"]),
        "plain": SimpleNamespace(cache_to=None),
    }
    lines = export_caches(FakeGraph(), targets, store, str(tmp_path))
    assert len(lines) == 1 and lines[0].startswith("api, web: cache")
    assert sorted(read_local_index(str(tmp_path / "c")).records) == sorted([key("base"), key("a"), key("b")])
    (tmp_path / "file").write_text("not a directory")
    targets["plain"] = SimpleNamespace(cache_to=["type=local,dest=file/sub"])
    with pytest.raises(BakeryError, match="cache export to"):
        export_caches(FakeGraph(), targets, store, str(tmp_path))
    notes: List[str] = []
    targets["plain"] = SimpleNamespace(cache_to=["type=local,dest=file/sub,ignore-error=true"])
    lines = export_caches(FakeGraph(), targets, store, str(tmp_path), note=notes.append)
    assert len(lines) == 1 and any("ignore-error" in n for n in notes)


def test_cache_sources_from_entries(tmp_path) -> None:  # type: ignore[no-untyped-def]
    notes: List[str] = []
    srcs = cache_sources(["type=local,src=c", "type=local,src=./c", "type=local,src=c,tag=v2",
                          "type=s3,bucket=x", "user/app:cache"], str(tmp_path), note=notes.append)
    assert [(s.src, s.tag) for s in srcs] == [(str(tmp_path / "c"), "latest"), (str(tmp_path / "c"), "v2")]
    assert len(notes) == 2  # s3 unsupported; the registry one needs a client


def test_reexport_removes_blobs_no_tag_names_any_more(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = str(tmp_path / "c")
    export_local(store, [key("a")], dest)  # base + a
    export_local(store, [key("base")], dest, tag="v1")  # base
    a_blob = [la.digest for la in read_local_index(dest).records[key("a")].layers][1]
    with open(os.path.join(dest, "index.json")) as fh:
        old_manifest = json.load(fh)["manifests"][0]["digest"]
    stray = os.path.join(dest, "blobs", "sha256", ".tmp-old")
    with open(stray, "w") as fh:
        fh.write("left by a killed export")
    os.utime(stray, (1, 1))
    res = export_local(store, [key("b")], dest)  # latest: base + b; v1 keeps base
    assert res.removed == 3  # a's layer, the old manifest and its cache index
    names = set(os.listdir(os.path.join(dest, "blobs", "sha256")))
    assert a_blob.split(":")[1] not in names and old_manifest.split(":")[1] not in names
    assert ".tmp-old" not in names
    # what the tags name is all there: both import
    fresh = Store(str(tmp_path / "fresh"))
    assert LocalCacheSource(dest).fetch(key("b"), fresh)
    assert LocalCacheSource(dest, "v1").fetch(key("base"), fresh)
    assert not LocalCacheSource(dest).fetch(key("a"), fresh)


def test_no_garbage_collection_in_a_layout_that_holds_an_image(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.cache.local import collect_garbage
    from bakery.oci.image import build_image
    from bakery.oci.store import BlobStore

    dest = str(tmp_path / "c")
    export_local(store, [key("a")], dest)
    blobs = BlobStore(os.path.join(dest, "blobs"))
    img = build_image(blobs, [])
    with open(os.path.join(dest, "index.json")) as fh:
        doc = json.load(fh)
    doc["manifests"].append(img.descriptor.to_json())
    with open(os.path.join(dest, "index.json"), "w") as fh:
        json.dump(doc, fh)
    loose = blobs.put_bytes(b"someone else's blob")
    assert collect_garbage(dest) == 0 and blobs.has(loose.digest)
