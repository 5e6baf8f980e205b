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
import sys
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


def test_bakery_run_images_do_not_depend_on_thread_count(env) -> None:  # type: ignore[no-untyped-def]
    """End to end: a service with a 3 MiB file (a multi-block gzip layer),
    built with 1 and with 2 compression threads (and --jobs 1 / 2) in
    fresh stores: the same image digest, and every layer passes gzip -t."""
    api = os.path.join(env["cwd"], "services", "api")
    with open(os.path.join(api, "payload.bin"), "wb") as f:
        f.write(random.Random(3).randbytes(2 * BLOCK) + bytes(BLOCK))
    digests = []
    for threads, jobs in (("1", "1"), ("2", "2")):
        out = os.path.join(env["cwd"], "out", f"t{threads}")
        e = dict(os.environ, SOURCE_DATE_EPOCH="1234567890", BAKERY_COMPRESS_THREADS=threads,
                 BAKERY_CACHE_DIR=os.path.join(env["cwd"], f"cache-{threads}"))
        r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}",
                            "api", "--jobs", jobs, "--set", "*.platform=linux/amd64",
                            "--set", f"api.output=type=oci,dest={out},tar=false,rewrite-timestamp=true"],
                           cwd=env["cwd"], capture_output=True, text=True, env=e, timeout=900)
        assert r.returncode == 0, r.stderr[-4000:]
        with open(os.path.join(out, "index.json")) as f:
            digests.append(json.load(f)["manifests"][0]["digest"])
        blobs = os.path.join(out, "blobs", "sha256")
        big = max((os.path.join(blobs, n) for n in os.listdir(blobs)), key=os.path.getsize)
        assert os.path.getsize(big) > BLOCK  # the payload's layer: several blocks
        run("gzip", "-t", big)
    assert digests[0] == digests[1]
