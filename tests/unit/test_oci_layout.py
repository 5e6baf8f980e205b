"""OCI layouts (dir and tar) and Docker archives: structure, determinism, atomicity."""

from __future__ import annotations

import json
import os
import pathlib
import tarfile

import pytest

from bakery.errors import BakeryError
from bakery.oci.image import ContainerConfig, add_layer, build_image, build_index
from bakery.oci.layout import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    open_layout,
    single_manifest,
    write_docker_archive,
    write_oci_layout,
)
from bakery.oci.media import OCI_INDEX, Descriptor
from bakery.oci.store import BlobStore, walk


@pytest.fixture
def built(tmp_path):  # type: ignore[no-untyped-def]
    tar = tmp_path / "layer.tar"
    tar.write_bytes(b"layer bytes\n" * 1000)
    store = BlobStore(str(tmp_path / "store"))
    la = add_layer(store, str(tar))
    imgs = [build_image(store, [la], ContainerConfig(cmd=["sh"]), platform=p, created=0)
            for p in ("linux/amd64", "linux/arm64")]
    return store, imgs, build_index(store, imgs)


def _members(path: str):  # type: ignore[no-untyped-def]
    with tarfile.open(path) as tf:
        return tf.getmembers()


def test_layout_tar_structure_and_determinism(tmp_path, built, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    store, _imgs, idx = built
    out = str(tmp_path / "out.tar")
    write_oci_layout(store, idx, out, names=["docker.io/library/app:v1", "app:latest"])
    first = pathlib.Path(out).read_bytes()
    write_oci_layout(store, idx, out, names=["docker.io/library/app:v1", "app:latest"])
    assert pathlib.Path(out).read_bytes() == first
    members = _members(out)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert {"oci-layout", "index.json"} <= set(names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    blobs = {"blobs/sha256/" + d.hex for d in walk(store, idx)}
    assert blobs == {n for n in names if n.startswith("blobs/sha256/")}
    with tarfile.open(out) as tf:
        f = tf.extractfile("oci-layout")
        assert f is not None and f.read() == b'{"imageLayoutVersion":"1.0.0"}'
        f = tf.extractfile("index.json")
        assert f is not None
        index = json.loads(f.read())
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    assert [m["annotations"] for m in index["manifests"]] == [
        {ANNOTATION_IMAGE_NAME: "docker.io/library/app:v1", ANNOTATION_REF_NAME: "v1"},
        {ANNOTATION_IMAGE_NAME: "docker.io/library/app:latest", ANNOTATION_REF_NAME: "latest"}]
    assert all(m["digest"] == idx.digest for m in index["manifests"])
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".out.tar")]


def test_layout_tar_mtime_from_source_date_epoch(tmp_path, built, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, _imgs, idx = built
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    out = str(tmp_path / "o.tar")
    write_oci_layout(store, idx, out)
    assert {m.mtime for m in _members(out)} == {1234}


def test_layout_dir_and_read_back(tmp_path, built) -> None:  # type: ignore[no-untyped-def]
    store, imgs, idx = built
    out = str(tmp_path / "layout")
    write_oci_layout(store, idx, out, names=["app:v1"], tar=False)
    assert sorted(os.listdir(out)) == ["blobs", "index.json", "oci-layout"]
    with open_layout(out) as lay:
        d = lay.resolve("v1")
        assert d.digest == idx.digest and d.media_type == OCI_INDEX
        assert lay.resolve("docker.io/library/app:v1").digest == idx.digest
        assert lay.resolve().digest == idx.digest
        assert [b.digest for b in walk(lay.store, d)] == [b.digest for b in walk(store, idx)]
        with pytest.raises(BakeryError, match="no image named"):
            lay.resolve("v2")
    # rewriting replaces the layout in one step (no leftovers beside it)
    write_oci_layout(store, imgs[0].descriptor, out, names=["app:v2"], tar=False)
    with open_layout(out) as lay:
        assert lay.resolve("v2").digest == imgs[0].descriptor.digest
    assert sorted(os.listdir(tmp_path)) == ["layer.tar", "layout", "store"]


def test_layout_tar_read_back_verifies(tmp_path, built) -> None:  # type: ignore[no-untyped-def]
    store, _imgs, idx = built
    out = str(tmp_path / "o.tar")
    write_oci_layout(store, idx, out, names=["app:v1"])
    with open_layout(out) as lay:
        tmp = lay.store.root
        assert lay.resolve("v1").digest == idx.digest
        assert lay.store.has(idx.digest)
    assert not os.path.exists(tmp)
    # a blob whose content does not match its name is refused
    bad = str(tmp_path / "bad.tar")
    with tarfile.open(out) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            f = src.extractfile(m) if m.isfile() else None
            data = f.read() if f else b""
            if m.name == "blobs/sha256/" + idx.hex:
                data = data.replace(b"amd64", b"arm64")
            m.size = len(data)
            dst.addfile(m, __import__("io").BytesIO(data) if m.isfile() else None)
    with pytest.raises(BakeryError, match="digest mismatch"):
        open_layout(bad)


def test_layout_dir_refuses_foreign_dir(tmp_path, built) -> None:  # type: ignore[no-untyped-def]
    store, _imgs, idx = built
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(BakeryError, match="not an OCI layout"):
        write_oci_layout(store, idx, str(foreign), tar=False)
    assert (foreign / "precious.txt").read_text() == "keep me"
    with pytest.raises(BakeryError, match="is a directory"):
        write_oci_layout(store, idx, str(foreign))
    with pytest.raises(BakeryError, match="does not exist"):
        write_oci_layout(store, idx, str(tmp_path / "no" / "x.tar"))


def test_layout_missing_blob_is_an_error(tmp_path, built) -> None:  # type: ignore[no-untyped-def]
    store, imgs, idx = built
    os.unlink(store.path(imgs[1].config.digest))
    with pytest.raises(BakeryError, match="missing from the store"):
        write_oci_layout(store, idx, str(tmp_path / "x.tar"))
    assert not os.path.exists(tmp_path / "x.tar")


def test_open_layout_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError, match="no such"):
        open_layout(str(tmp_path / "nope"))
    (tmp_path / "d").mkdir()
    with pytest.raises(BakeryError, match="not an OCI layout"):
        open_layout(str(tmp_path / "d"))
    (tmp_path / "d" / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    (tmp_path / "d" / "index.json").write_text('{"manifests":[]}')
    with pytest.raises(BakeryError, match="unsupported OCI layout version"):
        open_layout(str(tmp_path / "d"))
    (tmp_path / "t.tar").write_bytes(b"not a tar")
    with pytest.raises(BakeryError, match="not a readable tar"):
        open_layout(str(tmp_path / "t.tar"))


def test_docker_archive_structure(tmp_path, built) -> None:  # type: ignore[no-untyped-def]
    store, imgs, idx = built
    out = str(tmp_path / "d.tar")
    write_docker_archive(store, idx, out, names=["app:v1", "ghcr.io/o/app:2"], platform="linux/arm64")
    img = imgs[1]
    with tarfile.open(out) as tf:
        names = tf.getnames()
        f = tf.extractfile("manifest.json")
        assert f is not None
        manifest = json.loads(f.read())
        f = tf.extractfile("repositories")
        assert f is not None
        repositories = json.loads(f.read())
    assert manifest == [{"Config": "blobs/sha256/" + img.config.hex,
                         "RepoTags": ["app:v1", "ghcr.io/o/app:2"],
                         "Layers": ["blobs/sha256/" + la.hex for la in img.layers]}]
    assert repositories == {"app": {"v1": img.layers[-1].hex}, "ghcr.io/o/app": {"2": img.layers[-1].hex}}
    for path in [manifest[0]["Config"], *manifest[0]["Layers"], "blobs/sha256/" + img.descriptor.hex,
                 "oci-layout", "index.json"]:
        assert path in names
    assert "blobs/sha256/" + idx.hex not in names  # one platform only
    first = pathlib.Path(out).read_bytes()
    write_docker_archive(store, img.descriptor, out, names=["app:v1", "ghcr.io/o/app:2"])
    assert pathlib.Path(out).read_bytes() == first


def test_docker_archive_refuses_several_platforms(tmp_path, built) -> None:  # type: ignore[no-untyped-def]
    store, _imgs, idx = built
    with pytest.raises(BakeryError) as e:
        write_docker_archive(store, idx, str(tmp_path / "d.tar"), names=["app:v1"])
    assert "docker exporter does not currently support exporting manifest lists" in e.value.message
    assert "linux/amd64, linux/arm64" in e.value.message
    assert e.value.hint and "type=oci" in e.value.hint
    assert not os.path.exists(tmp_path / "d.tar")
    with pytest.raises(BakeryError, match="no manifest for linux/s390x"):
        single_manifest(store, idx, "linux/s390x")


def test_docker_archive_one_platform_index(tmp_path, built) -> None:  # type: ignore[no-untyped-def]
    store, imgs, _idx = built
    attest = Descriptor("application/vnd.oci.image.manifest.v1+json", imgs[1].descriptor.digest,
                        imgs[1].descriptor.size,
                        annotations={"vnd.docker.reference.type": "attestation-manifest"},
                        platform=None)
    one = build_index(store, [imgs[0]])
    assert single_manifest(store, one).digest == imgs[0].descriptor.digest
    # attestation manifests (unknown/unknown) do not count as platforms
    from bakery.oci.media import Platform, canonical_json
    doc = json.loads(store.read_bytes(one.digest))
    doc["manifests"].append(attest.with_platform(Platform("unknown", "unknown")).to_json())
    two = store.put_bytes(canonical_json(doc), OCI_INDEX)
    assert single_manifest(store, two).digest == imgs[0].descriptor.digest
