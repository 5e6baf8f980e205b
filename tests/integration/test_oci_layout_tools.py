"""What bakery writes to disk, read by the tools people use: umoci and skopeo
on OCI layouts (directory and tar), skopeo (and docker, when a daemon runs)
on Docker archives."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, List, Tuple

import pytest

from bakery.errors import BakeryError
from bakery.oci.image import ContainerConfig, Image, add_layer, build_image, build_index
from bakery.oci.layout import open_layout, write_docker_archive, write_oci_layout
from bakery.oci.media import Descriptor
from bakery.oci.store import BlobStore
from tests.integration.registry import busybox_tar, file_tar, need_tool

pytestmark = pytest.mark.integration


def image(tmp_path: Any) -> Tuple[BlobStore, Descriptor, List[Image]]:
    store = BlobStore(str(tmp_path / "store"))
    layers = [add_layer(store, busybox_tar(str(tmp_path / "busybox.tar"))),
              add_layer(store, file_tar(str(tmp_path / "hello.tar"), "etc/hello", b"hello\n"),
                        compression="gzip", level=9)]
    cfg = ContainerConfig(cmd=["/bin/sh"], env=["PATH=/bin"], working_dir="/",
                          labels={"org.opencontainers.image.title": "bb"})
    imgs = [build_image(store, layers, cfg, platform=p, created=0)
            for p in ("linux/amd64", "linux/arm64")]
    return store, build_index(store, imgs), imgs


def run(*args: str) -> str:
    need_tool(args[0])
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_umoci_unpacks_a_bakery_layout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, _idx, imgs = image(tmp_path)
    layout = str(tmp_path / "layout")
    # umoci 0.4 refuses an index with several manifests under one tag
    # ("tag is ambiguous"), so it gets one platform
    write_oci_layout(store, imgs[0].descriptor, layout, names=["bb:v1"], tar=False)
    assert run("umoci", "ls", "--layout", layout).split() == ["v1"]
    bundle = str(tmp_path / "bundle")
    cmd = ["umoci", "unpack", "--image", f"{layout}:v1", bundle]
    if os.geteuid() != 0:
        cmd.insert(2, "--rootless")
    run(*cmd)
    busybox = os.path.join(bundle, "rootfs", "bin", "busybox")
    assert os.path.isfile(busybox) and os.access(busybox, os.X_OK)
    assert os.readlink(os.path.join(bundle, "rootfs", "bin", "sh")) == "busybox"
    with open(os.path.join(bundle, "rootfs", "etc", "hello")) as f:
        assert f.read() == "hello\n"
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    assert spec["process"]["args"] == ["/bin/sh"] and "PATH=/bin" in spec["process"]["env"]
    # the unpacked binary is the real one
    with open(busybox, "rb") as a, open("/usr/bin/busybox", "rb") as b:
        assert a.read() == b.read()


def test_skopeo_reads_layout_dir_and_tar(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, idx, imgs = image(tmp_path)
    layout = str(tmp_path / "layout")
    write_oci_layout(store, idx, layout, names=["docker.io/library/bb:v1"], tar=False)
    info = json.loads(run("skopeo", "inspect", "--override-arch", "arm64", "--override-os", "linux",
                          f"oci:{layout}:v1"))
    assert info["Architecture"] == "arm64" and info["Digest"] == idx.digest
    assert info["Layers"] == [la.digest for la in imgs[1].layers]
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci:{layout}:v1"))
    assert [m["platform"]["architecture"] for m in raw["manifests"]] == ["amd64", "arm64"]

    tar = str(tmp_path / "bb.tar")
    write_oci_layout(store, idx, tar, names=["bb:v1"])
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{tar}:v1"))
    assert info["Digest"] == idx.digest and info["Labels"] == {"org.opencontainers.image.title": "bb"}
    # skopeo copies it, blobs verified, to another layout; bakery reads that back
    copy = str(tmp_path / "copy")
    run("skopeo", "copy", "--all", f"oci-archive:{tar}:v1", f"oci:{copy}:again")
    with open_layout(copy) as lay:
        assert lay.resolve("again").digest == idx.digest


def test_skopeo_reads_docker_archive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, idx, imgs = image(tmp_path)
    archive = str(tmp_path / "bb-docker.tar")
    write_docker_archive(store, idx, archive, names=["bb:v1"], platform="linux/arm64")
    info = json.loads(run("skopeo", "inspect", f"docker-archive:{archive}"))
    assert info["Architecture"] == "arm64" and info["Os"] == "linux"
    assert info["Env"] == ["PATH=/bin"]
    # skopeo reads every layer (checking the diff_ids) when it copies out of the archive
    out = str(tmp_path / "from-archive")
    run("skopeo", "copy", f"docker-archive:{archive}:bb:v1", f"oci:{out}:x")
    with open_layout(out) as lay:
        root = lay.resolve("x")
        config = lay.store.read_json(lay.store.read_json(root.digest)["config"]["digest"])
    assert config["rootfs"]["diff_ids"] == imgs[1].config_json["rootfs"]["diff_ids"]
    with pytest.raises(BakeryError, match="does not currently support exporting manifest lists"):
        write_docker_archive(store, idx, str(tmp_path / "multi.tar"), names=["bb:v1"])


def _docker_daemon() -> bool:
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.skipif(not _docker_daemon(), reason="no running Docker daemon for docker load")
def test_docker_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, idx, _imgs = image(tmp_path)
    archive = str(tmp_path / "bb-docker.tar")
    write_docker_archive(store, idx, archive, names=["bakery-test/bb:v1"], platform="linux/amd64")
    out = run("docker", "load", "-i", archive)
    assert "bakery-test/bb:v1" in out
    subprocess.run(["docker", "image", "rm", "bakery-test/bb:v1"], capture_output=True)


def test_skopeo_decompresses_zstd_layers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("zstandard", reason="zstd layers need the optional zstandard module")
    store = BlobStore(str(tmp_path / "store"))
    layer = add_layer(store, busybox_tar(str(tmp_path / "busybox.tar")), compression="zstd")
    img = build_image(store, [layer], ContainerConfig(cmd=["/bin/sh"]), platform="linux/amd64",
                      created=0)
    layout = str(tmp_path / "layout")
    write_oci_layout(store, img.descriptor, layout, names=["bb:zstd"], tar=False)
    out = str(tmp_path / "gz")
    # recompressing makes skopeo read (and check) the whole zstd stream
    run("skopeo", "copy", "--dest-compress-format", "gzip", "--dest-compress",
        f"oci:{layout}:zstd", f"oci:{out}:gz")
    with open_layout(out) as lay:
        man = lay.store.read_json(lay.resolve("gz").digest)
        config = lay.store.read_json(man["config"]["digest"])
    assert man["layers"][0]["mediaType"].endswith("tar+gzip")
    assert config["rootfs"]["diff_ids"] == [layer.diff_id]
