"""Parallel gzip and parallel layer compression: valid single-member gzip,
bytes independent of the thread count, each layer compressed once."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import select
import signal
import struct
import threading
import time
import zlib
from typing import Any, List

import pytest

from bakery.errors import BakeryError
from bakery.oci import pgzip
from bakery.oci.image import add_layer
from bakery.oci.pgzip import BLOCK, gzip_bytes, gzip_stream
from bakery.oci.store import BlobStore


def mixed(n: int, seed: int = 5) -> bytes:
    """Compressible text, random bytes and runs, cut across block edges."""
    rnd = random.Random(seed)
    parts: List[bytes] = []
    size = 0
    while size < n:
        kind = rnd.randrange(3)
        k = rnd.randrange(1000, 300_000)
        if kind == 0:
            chunk = rnd.randbytes(k)
        elif kind == 1:
            words = [b"layer", b"image", b"bake", b"\n", b"digest", b"sha256"]
            chunk = b" ".join(rnd.choice(words) for _ in range(k // 5))
        else:
            chunk = bytes([rnd.randrange(256)]) * k
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:n]


def one_member(blob: bytes) -> bytes:
    """Decompress exactly one gzip member; fails if anything follows it."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(blob) + d.flush()
    assert d.eof and d.unused_data == b"", "not exactly one gzip member"
    return out


@pytest.mark.parametrize("n", [0, 1, 1000, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345])
def test_round_trip_one_member_with_crc_and_size(n: int) -> None:
    data = mixed(n)
    blob = gzip_bytes(data, 6, threads=3)
    assert one_member(blob) == data
    assert gzip.decompress(blob) == data
    crc, isize = struct.unpack("<II", blob[-8:])
    assert crc == zlib.crc32(data) and isize == n & 0xFFFFFFFF
    # header: deflate, no flags (no name), mtime 0, OS unknown
    assert blob[:4] == b"\x1f\x8b\x08\x00" and blob[4:8] == b"\0\0\0\0" and blob[9] == 255


def test_bytes_do_not_depend_on_threads() -> None:
    data = mixed(5 * BLOCK + 777, seed=11)
    outs = {gzip_bytes(data, 6, threads=t) for t in (1, 2, 3, 8)}
    shared = io.BytesIO()
    gzip_stream(io.BytesIO(data), shared.write, 6, threads=None)
    outs.add(shared.getvalue())
    assert len(outs) == 1


class Trickle(io.RawIOBase):
    """A pipe-like reader that returns short reads."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.rnd = random.Random(1)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        k = min(n, self.rnd.randrange(1, 200_000))
        chunk = self.data[self.pos:self.pos + k]
        self.pos += len(chunk)
        return chunk


def test_short_reads_give_the_same_bytes() -> None:
    data = mixed(3 * BLOCK + 5, seed=3)
    out = io.BytesIO()
    seen = hashlib.sha256()
    n, crc = gzip_stream(Trickle(data), out.write, 6, threads=2, on_input=seen.update)
    assert out.getvalue() == gzip_bytes(data, 6, threads=1)
    assert n == len(data) and crc == zlib.crc32(data)
    assert seen.digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("level", range(10))
def test_every_level(level: int) -> None:
    data = mixed(2 * BLOCK + 100, seed=level)
    blob = gzip_bytes(data, level, threads=2)
    assert one_member(blob) == data
    assert blob[8] == (2 if level == 9 else 4 if level == 1 else 0)


def test_blocks_keep_the_ratio_across_cuts() -> None:
    # the previous block's tail is the next one's dictionary: repeated
    # random data spanning a cut still compresses
    unit = random.Random(2).randbytes(20_000)
    data = unit * (3 * BLOCK // len(unit))
    assert len(gzip_bytes(data, 6, threads=2)) < len(data) // 20


def test_small_input_matches_pythons_gzip() -> None:
    data = b"hello layer\n" * 1000
    ref = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=ref, compresslevel=6, mtime=0) as g:
        g.write(data)
    assert gzip_bytes(data, 6) == ref.getvalue()


def test_bad_level() -> None:
    with pytest.raises(ValueError):
        gzip_bytes(b"x", 10)


def test_compress_threads_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BAKERY_COMPRESS_THREADS", "3")
    assert pgzip.compress_threads() == 3
    monkeypatch.setenv("BAKERY_COMPRESS_THREADS", "nope")
    assert pgzip.compress_threads() >= 1


def test_threads_really_run_in_parallel(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # blocks are handed to the pool without waiting for the ones before
    busy = []
    running = [0]
    lock = threading.Lock()
    real = pgzip._deflate_block

    def slow(*a: Any) -> bytes:
        with lock:
            running[0] += 1
            busy.append(running[0])
        time.sleep(0.05)
        try:
            return real(*a)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(pgzip, "_deflate_block", slow)
    data = mixed(6 * BLOCK, seed=9)
    assert gzip.decompress(gzip_bytes(data, 6, threads=3)) == data
    assert max(busy) >= 2


def test_a_forked_child_gets_its_own_pool() -> None:
    data = mixed(3 * BLOCK, seed=8)
    want = gzip_bytes(data, 6, threads=None)  # the parent's shared pool exists now
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compress with the shared pool, report, exit
        try:
            ok = gzip_bytes(data, 6, threads=None) == want
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 60)
    got = os.read(r, 1) if ready else b""
    os.close(r)
    if not ready:  # the child hangs on the parent's dead pool threads
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert got == b"1", "the forked child could not compress (hung or wrong bytes)"


# -- add_layer --------------------------------------------------------------------


def write(tmp_path: Any, data: bytes) -> str:
    p = tmp_path / "layer.tar"
    p.write_bytes(data)
    return str(p)


def test_add_layer_gzip_is_parallel_and_deterministic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = mixed(4 * BLOCK + 99, seed=4)
    src = write(tmp_path, data)
    layers = [add_layer(BlobStore(str(tmp_path / f"s{t}")), src, threads=t) for t in (1, 2, 4, None)]
    assert len({(la.digest, la.size) for la in layers}) == 1
    assert layers[0].diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    store = BlobStore(str(tmp_path / "s1"))
    assert one_member(store.read_bytes(layers[0].digest)) == data


def test_add_layer_zstd_does_not_depend_on_threads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    zstandard = pytest.importorskip("zstandard")
    data = mixed(6 * BLOCK, seed=6)
    src = write(tmp_path, data)
    layers = [add_layer(BlobStore(str(tmp_path / f"z{t}")), src, "zstd", threads=t)
              for t in (1, 2, 4, None)]
    assert len({la.digest for la in layers}) == 1
    blob = BlobStore(str(tmp_path / "z1")).read_bytes(layers[0].digest)
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read() == data


def test_add_layer_bad_level_is_a_bakery_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError, match="out of range"):
        add_layer(BlobStore(str(tmp_path / "s")), write(tmp_path, b"x"), "gzip", 11)


def test_blob_store_has_no_leftovers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = BlobStore(str(tmp_path / "s"))
    add_layer(store, write(tmp_path, mixed(2 * BLOCK)), threads=2)
    assert [n for n in os.listdir(os.path.join(store.root, "sha256")) if n.startswith(".tmp")] == []
