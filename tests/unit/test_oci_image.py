"""Layers, image configs, manifests and indexes: shapes and stable digests."""

from __future__ import annotations

import builtins
import gzip
import hashlib
import json
import os

import pytest

from bakery.errors import BakeryError
from bakery.oci.image import (
    ContainerConfig,
    Healthcheck,
    History,
    add_layer,
    build_image,
    build_index,
    format_created,
    source_date_epoch,
    store_manifests,
)
from bakery.oci.media import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    canonical_json,
    digest_bytes,
)
from bakery.oci.store import BlobStore, walk

CONTENT = b"not really a tar, but layers are opaque here\n" * 200


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    return BlobStore(str(tmp_path / "store"))


@pytest.fixture
def tar(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "layer.tar"
    p.write_bytes(CONTENT)
    return str(p)


def test_gzip_layer_is_deterministic(tmp_path, store, tar) -> None:  # type: ignore[no-untyped-def]
    a = add_layer(store, tar)
    b = add_layer(BlobStore(str(tmp_path / "other")), tar)
    assert a == b
    assert a.diff_id == "sha256:" + hashlib.sha256(CONTENT).hexdigest()
    blob = store.read_bytes(a.digest)
    assert digest_bytes(blob) == a.digest and len(blob) == a.size
    # gzip header: magic, deflate, no flags (no file name), mtime 0, OS "unknown"
    assert blob[:4] == b"\x1f\x8b\x08\x00" and blob[4:8] == b"\0\0\0\0" and blob[9] == 255
    assert gzip.decompress(blob) == CONTENT
    assert a.descriptor().media_type == OCI_LAYER_GZIP
    assert a.descriptor(oci=False).media_type == DOCKER_LAYER_GZIP


def test_gzip_levels_differ_and_are_checked(store, tar) -> None:  # type: ignore[no-untyped-def]
    fast = add_layer(store, tar, level=1)
    best = add_layer(store, tar, level=9)
    assert fast.diff_id == best.diff_id
    assert gzip.decompress(store.read_bytes(fast.digest)) == CONTENT
    with pytest.raises(BakeryError, match="out of range"):
        add_layer(store, tar, level=10)
    with pytest.raises(BakeryError, match="unknown compression"):
        add_layer(store, tar, compression="lz4")
    with pytest.raises(BakeryError, match="no such file"):
        add_layer(store, tar + ".missing")


def test_uncompressed_layer(store, tar) -> None:  # type: ignore[no-untyped-def]
    la = add_layer(store, tar, compression="uncompressed")
    assert la.digest == la.diff_id and la.size == len(CONTENT)
    assert la.descriptor().media_type == OCI_LAYER


def test_zstd_without_module_is_a_clear_error(monkeypatch, store, tar) -> None:  # type: ignore[no-untyped-def]
    real_import = builtins.__import__

    def fake_import(name, *a, **k):  # type: ignore[no-untyped-def]
        if name == "zstandard":
            raise ImportError("no zstandard")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(BakeryError) as e:
        add_layer(store, tar, compression="zstd")
    assert "zstandard" in e.value.message and "gzip" in (e.value.hint or "")


def test_zstd_layer_when_available(store, tar) -> None:  # type: ignore[no-untyped-def]
    zstandard = pytest.importorskip("zstandard")
    la = add_layer(store, tar, compression="zstd")
    data = zstandard.ZstdDecompressor().decompressobj().decompress(store.read_bytes(la.digest))
    assert data == CONTENT and la.descriptor().media_type.endswith("+zstd")
    # docker media types cannot say zstd: the image switches to OCI types
    img = build_image(store, [la], media="docker", created=0)
    assert img.descriptor.media_type == OCI_MANIFEST


def test_config_and_manifest_shapes(store, tar) -> None:  # type: ignore[no-untyped-def]
    la = add_layer(store, tar, compression="uncompressed", created_by="COPY . /")
    cfg = ContainerConfig(
        user="app", exposed_ports=["8080", "53/udp"], env=["PATH=/bin", "A=<b>"],
        entrypoint=["/bin/sh", "-c"], cmd=["echo hi"], volumes=["/data"], working_dir="/srv",
        labels={"z": "1", "a": "2"}, stop_signal="SIGTERM",
        healthcheck=Healthcheck(["CMD", "true"], interval="30s", timeout="1m30s", retries=3),
        on_build=["RUN true"], shell=["/bin/sh", "-c"])
    img = build_image(store, [la], cfg, "linux/arm64/v8", created=1700000000,
                      annotations={"org.opencontainers.image.title": "t"})
    config = json.loads(store.read_bytes(img.config.digest))
    assert list(config) == ["created", "architecture", "os", "config", "rootfs", "history"]
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert (config["architecture"], config["os"]) == ("arm64", "linux") and "variant" not in config
    assert list(config["config"]) == ["User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes",
                                      "WorkingDir", "Labels", "StopSignal", "Healthcheck", "OnBuild",
                                      "Shell"]
    assert config["config"]["ExposedPorts"] == {"53/udp": {}, "8080/tcp": {}}
    assert list(config["config"]["Labels"]) == ["a", "z"]
    assert config["config"]["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 30 * 10**9,
                                               "Timeout": 90 * 10**9, "Retries": 3}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [la.diff_id]}
    assert config["history"] == [{"created": "2023-11-14T22:13:20Z", "created_by": "COPY . /"}]
    assert b"\\u003cb\\u003e" in store.read_bytes(img.config.digest)

    man = json.loads(store.read_bytes(img.descriptor.digest))
    assert list(man) == ["schemaVersion", "mediaType", "config", "layers", "annotations"]
    assert man["mediaType"] == OCI_MANIFEST and man["schemaVersion"] == 2
    assert man["config"] == {"mediaType": OCI_CONFIG, "digest": img.config.digest,
                             "size": img.config.size}
    assert man["layers"] == [{"mediaType": OCI_LAYER, "digest": la.digest, "size": la.size}]
    assert str(img.platform) == "linux/arm64"
    assert store.read_bytes(img.descriptor.digest) == canonical_json(man)


def test_pinned_digests(store, tar) -> None:  # type: ignore[no-untyped-def]
    """The same inputs give the same bytes, release after release."""
    la = add_layer(store, tar, compression="uncompressed")
    img = build_image(store, [la], ContainerConfig(cmd=["sh"], env=["A=1"]), "linux/amd64",
                      created=0)
    assert store.read_bytes(img.config.digest) == (
        b'{"created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux",'
        b'"config":{"Env":["A=1"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["'
        + la.diff_id.encode() + b'"]},"history":[{"created":"1970-01-01T00:00:00Z"}]}')
    assert img.config.digest == PINNED_CONFIG
    assert img.descriptor.digest == PINNED_MANIFEST
    arm = build_image(store, [la], ContainerConfig(cmd=["sh"], env=["A=1"]), "linux/arm/v7",
                      created=0)
    idx = build_index(store, [img, arm])
    assert idx.digest == PINNED_INDEX


PINNED_CONFIG = "sha256:f101451bf17891f5c0553c50d4c269f8966ca06f8699f3ece0528bf445d56002"
PINNED_MANIFEST = "sha256:201d5e5845df963728ac24c0210764bc5bd557b4d75a3418a3c572bcf897fa6d"
PINNED_INDEX = "sha256:cb40df829b6ed153153f143ab6aafb264eeaf6561f3fe3df076131754d861126"


def test_docker_media_types(store, tar) -> None:  # type: ignore[no-untyped-def]
    la = add_layer(store, tar)
    a = build_image(store, [la], platform="linux/amd64", media="docker", created=0)
    b = build_image(store, [la], platform="linux/arm64", media="docker", created=0)
    man = json.loads(store.read_bytes(a.descriptor.digest))
    assert list(man) == ["schemaVersion", "mediaType", "config", "layers"]
    assert man["mediaType"] == DOCKER_MANIFEST
    assert man["config"]["mediaType"] == DOCKER_CONFIG
    assert man["layers"][0]["mediaType"] == DOCKER_LAYER_GZIP
    idx = build_index(store, [a, b], media="docker")
    assert idx.media_type == DOCKER_MANIFEST_LIST
    doc = json.loads(store.read_bytes(idx.digest))
    assert [m["platform"] for m in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]
    assert [str(m.platform) for m in store_manifests(store, idx)] == ["linux/amd64", "linux/arm64"]
    with pytest.raises(BakeryError) as e:
        build_image(store, [la], media="docker", annotations={"a": "b"})
    assert "oci-mediatypes" in (e.value.hint or "")


def test_oci_index_shape_and_walk(store, tar) -> None:  # type: ignore[no-untyped-def]
    la = add_layer(store, tar)
    imgs = [build_image(store, [la], platform=p, created=0)
            for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")]
    idx = build_index(store, imgs, annotations={"org.opencontainers.image.version": "1"})
    doc = json.loads(store.read_bytes(idx.digest))
    assert list(doc) == ["schemaVersion", "mediaType", "manifests", "annotations"]
    assert doc["mediaType"] == OCI_INDEX == idx.media_type
    assert doc["manifests"][2]["platform"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    blobs = list(walk(store, idx))
    assert blobs[-1].digest == idx.digest
    assert len(blobs) == 1 + 3 + 3 + 1  # one shared layer, three configs, three manifests, index


def test_index_rules(store, tar) -> None:  # type: ignore[no-untyped-def]
    la = add_layer(store, tar)
    a = build_image(store, [la], platform="linux/amd64", created=0)
    b = build_image(store, [la], ContainerConfig(cmd=["x"]), platform="linux/amd64", created=0)
    with pytest.raises(BakeryError, match="two different manifests"):
        build_index(store, [a, b])
    with pytest.raises(BakeryError, match="at least one"):
        build_index(store, [])
    with pytest.raises(BakeryError, match="no platform"):
        build_index(store, [a.descriptor.with_platform(None)])


def test_history_must_match_layers(store, tar) -> None:  # type: ignore[no-untyped-def]
    la = add_layer(store, tar)
    img = build_image(store, [la], created=0, history=[
        History(created_by="ENV A=1", empty_layer=True), History(created_by="COPY x /")])
    cfg = json.loads(store.read_bytes(img.config.digest))
    assert cfg["history"][0] == {"created_by": "ENV A=1", "empty_layer": True}
    with pytest.raises(BakeryError, match="1 layers"):
        build_image(store, [la], history=[History(empty_layer=True)])


def test_created_and_source_date_epoch(monkeypatch, store, tar) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert source_date_epoch() == 86400
    assert format_created() == "1970-01-02T00:00:00Z"
    la = add_layer(store, tar)
    one = build_image(store, [la])
    two = build_image(store, [la])
    assert one.descriptor.digest == two.descriptor.digest
    assert one.config_json["created"] == "1970-01-02T00:00:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BakeryError, match="not an integer"):
        format_created()
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert source_date_epoch() is None
    assert format_created().endswith("Z")
    assert source_date_epoch({"SOURCE_DATE_EPOCH": ""}) is None


def test_bad_config_values(store, tar) -> None:  # type: ignore[no-untyped-def]
    la = add_layer(store, tar)
    with pytest.raises(BakeryError, match="exposed port"):
        build_image(store, [la], ContainerConfig(exposed_ports=["http"]))
    with pytest.raises(BakeryError, match="duration"):
        build_image(store, [la], ContainerConfig(healthcheck=Healthcheck(["NONE"], interval="5x")))
    with pytest.raises(BakeryError, match="media types"):
        build_image(store, [la], media="docker-ish")


def test_store_rejects_corrupt_blobs(store) -> None:  # type: ignore[no-untyped-def]
    with store.writer(digest_bytes(b"right")) as w:
        w.write(b"wrong")
        with pytest.raises(BakeryError, match="digest mismatch"):
            w.commit()
    assert not os.listdir(os.path.join(store.root, "sha256"))
    d = store.put_bytes(b"{}")
    assert d.digest == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
