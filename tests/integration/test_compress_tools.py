"""Parallel gzip layers (several 1 MiB deflate blocks in one member) read by
the real tools: gzip -t / gzip -dc, skopeo (decompressing to a dir), umoci
(unpacking); zstd layers by zstd when it is installed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import tarfile

import pytest

from bakery.oci.image import ContainerConfig, add_layer, build_image
from bakery.oci.layout import write_oci_layout
from bakery.oci.pgzip import BLOCK
from bakery.oci.store import BlobStore
from tests.integration.registry import busybox_tar, need_tool

pytestmark = pytest.mark.integration


def run(*args: str) -> str:
    need_tool(args[0])
    r = subprocess.run(list(args), capture_output=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout!r}\n{r.stderr!r}"
    return r.stdout.decode("utf-8", "replace")


def big_tar(path: str) -> bytes:
    """A layer of several blocks: random and repetitive files, returned as bytes."""
    rnd = random.Random(7)
    files = {"data/random.bin": rnd.randbytes(3 * BLOCK + 1234),
             "data/text.txt": b"".join(b"line %d of a layer\n" % i for i in range(200_000)),
             "data/zeros": bytes(BLOCK + 17)}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, content in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(content)
            ti.mode = 0o644
            ti.mtime = 1_000_000
            tf.addfile(ti, io.BytesIO(content))
    return b"".join(files.values())


def test_gzip_reads_a_parallel_gzip_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = str(tmp_path / "big.tar")
    big_tar(src)
    assert os.path.getsize(src) > 5 * BLOCK
    store = BlobStore(str(tmp_path / "store"))
    layer = add_layer(store, src, threads=2)
    blob = store.path(layer.digest)
    run("gzip", "-t", blob)
    need_tool("gzip")
    out = subprocess.run(["gzip", "-dc", blob], capture_output=True, timeout=120, check=True).stdout
    assert "sha256:" + hashlib.sha256(out).hexdigest() == layer.diff_id
    # gzip -l reads ISIZE from the trailer
    listing = run("gzip", "-l", blob).split("\n")[1].split()
    assert int(listing[1]) == os.path.getsize(src)


def test_skopeo_and_umoci_read_parallel_gzip_layers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = str(tmp_path / "big.tar")
    contents = big_tar(src)
    store = BlobStore(str(tmp_path / "store"))
    layers = [add_layer(store, busybox_tar(str(tmp_path / "bb.tar")), threads=2),
              add_layer(store, src, threads=2, level=9)]
    img = build_image(store, layers, ContainerConfig(cmd=["/bin/sh"]), platform="linux/amd64", created=0)
    layout = str(tmp_path / "layout")
    write_oci_layout(store, img.descriptor, layout, names=["big:v1"], tar=False)
    # skopeo decompresses every layer: the tars have the diff_ids of the config
    out = str(tmp_path / "dir")
    run("skopeo", "copy", "--dest-decompress", f"oci:{layout}:v1", f"dir:{out}")
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    got = []
    for la in manifest["layers"]:
        with open(os.path.join(out, la["digest"].split(":", 1)[1]), "rb") as f:
            got.append("sha256:" + hashlib.sha256(f.read()).hexdigest())
    assert got == [la.diff_id for la in layers]
    bundle = str(tmp_path / "bundle")
    cmd = ["umoci", "unpack", "--image", f"{layout}:v1", bundle]
    if os.geteuid() != 0:
        cmd.insert(2, "--rootless")
    run(*cmd)
    rootfs = os.path.join(bundle, "rootfs")
    unpacked = b""
    for name in ("data/random.bin", "data/text.txt", "data/zeros"):
        with open(os.path.join(rootfs, name), "rb") as f:
            unpacked += f.read()
    assert unpacked == contents
    assert os.path.isfile(os.path.join(rootfs, "bin", "busybox"))


def test_zstd_reads_a_multithreaded_zstd_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("zstandard")
    need_tool("zstd")
    src = str(tmp_path / "big.tar")
    big_tar(src)
    store = BlobStore(str(tmp_path / "store"))
    layer = add_layer(store, src, "zstd", threads=2)
    r = subprocess.run(["zstd", "-dc", store.path(layer.digest)], capture_output=True, timeout=120, check=True)
    assert "sha256:" + hashlib.sha256(r.stdout).hexdigest() == layer.diff_id
