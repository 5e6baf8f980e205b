"""Layers compressed concurrently: by the image builder (all platforms and
images of a run, bounded by --jobs), by compressed_layer and the cache's
compress_into, each layer compressed once however many threads ask."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from types import SimpleNamespace
from typing import Any, List, Tuple

import pytest

import bakery.export.image as ximage
import bakery.oci.image as oimage
from bakery.cache.common import compress_into
from bakery.engine.layers import compressed_layer
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.export.image import ExportContext, ImageBuilder, image_work
from bakery.export.spec import ImageOptions, OutputSpec
from bakery.oci.store import BlobStore


def layer_tar(name: str, size: int = 2 << 20) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(name)
        payload = (name.encode() + b" ") * (size // (len(name) + 1))
        ti.size = len(payload)
        ti.mtime = 5
        tf.addfile(ti, io.BytesIO(payload))
    return buf.getvalue()


def setup(tmp_path: Any, n: int) -> Tuple[Store, BlobStore, List[str]]:
    store = Store(str(tmp_path / "store"))
    ids = [store.put_bytes(layer_tar(f"f{i}")) for i in range(n)]
    return store, BlobStore(str(tmp_path / "oci")), ids


def counting(monkeypatch: Any, delay: float = 0.0) -> Tuple[List[str], List[int]]:
    """Count add_layer calls and the most running at once."""
    calls: List[str] = []
    peak = [0, 0]  # running, max
    lock = threading.Lock()
    real = oimage.add_layer

    def wrapped(*a: Any, **k: Any) -> Any:
        with lock:
            calls.append(a[1])
            peak[0] += 1
            peak[1] = max(peak[1], peak[0])
        try:
            time.sleep(delay)
            return real(*a, **k)
        finally:
            with lock:
                peak[0] -= 1

    monkeypatch.setattr(oimage, "add_layer", wrapped)
    return calls, peak


def threads_at_once(fn: Any, n: int) -> List[Any]:
    start = threading.Barrier(n)
    out: List[Any] = [None] * n

    def go(i: int) -> None:
        start.wait()
        out[i] = fn()

    ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_compressed_layer_once_for_many_threads(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, blobs, (diff_id,) = setup(tmp_path, 1)
    calls, _ = counting(monkeypatch, delay=0.1)
    got = threads_at_once(lambda: compressed_layer(store, blobs, diff_id), 6)
    assert len(calls) == 1
    assert len({(la.digest, la.size, la.diff_id) for la in got}) == 1 and blobs.has(got[0].digest)


def test_compress_into_reuses_the_exporters_blob(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, blobs, (diff_id,) = setup(tmp_path, 1)
    calls, _ = counting(monkeypatch)
    layer = compressed_layer(store, blobs, diff_id, "gzip", 6)
    entries = threads_at_once(lambda: compress_into(store, blobs, diff_id, "gzip", 6), 4)
    assert len(calls) == 1
    assert {(e.digest, e.size) for e in entries} == {(layer.digest, layer.size)}
    assert entries[0].diff_id == diff_id


def test_compress_into_refuses_a_corrupt_store_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, blobs, (diff_id,) = setup(tmp_path, 1)
    with open(store.blob_path(diff_id), "r+b") as fh:
        fh.seek(600)
        fh.write(b"CORRUPT")
    with pytest.raises(BakeryError, match="corrupt"):
        compress_into(store, blobs, diff_id)


def builder(tmp_path: Any, store: Store, blobs: BlobStore, jobs: int) -> ImageBuilder:
    ctx = ExportContext(blobs, store, None, None, str(tmp_path), jobs=jobs)
    return ImageBuilder(ctx)


def items(*layer_lists: List[str]) -> List[Tuple[Any, Any]]:
    return [(None, SimpleNamespace(layers=list(ls))) for ls in layer_lists]


def test_compress_all_runs_layers_at_once_bounded_by_jobs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, blobs, ids = setup(tmp_path, 6)
    calls, peak = counting(monkeypatch, delay=0.2)
    b = builder(tmp_path, store, blobs, jobs=3)
    # two platforms sharing a base layer, and a second image (zstd-free options)
    work = [(items(ids[:3], [ids[0], ids[3]]), ImageOptions()),
            (items(ids[3:]), ImageOptions())]
    b.compress_all(work)
    assert sorted(calls) == sorted(store.blob_path(d) for d in ids)  # each once
    assert peak[1] == 3  # up to --jobs at a time, not more
    # build/layer then find them done
    before = len(calls)
    assert b.layer(ids[0], ImageOptions()).diff_id == ids[0]
    assert len(calls) == before


def test_builder_layer_once_for_many_threads(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, blobs, (diff_id,) = setup(tmp_path, 1)
    calls, _ = counting(monkeypatch, delay=0.1)
    b = builder(tmp_path, store, blobs, jobs=4)
    got = threads_at_once(lambda: b.layer(diff_id, ImageOptions()), 5)
    assert len(calls) == 1 and len({la.digest for la in got}) == 1


def test_builder_layer_error_reaches_every_waiter_and_is_not_kept(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, blobs, (diff_id,) = setup(tmp_path, 1)
    b = builder(tmp_path, store, blobs, jobs=2)
    fail = [True]
    real = ximage.compressed_layer

    def flaky(*a: Any, **k: Any) -> Any:
        time.sleep(0.1)
        if fail[0]:
            raise BakeryError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(ximage, "compressed_layer", flaky)
    errors = threads_at_once(lambda: _catch(lambda: b.layer(diff_id, ImageOptions())), 3)
    assert all(isinstance(e, BakeryError) and "disk full" in str(e) for e in errors)
    with pytest.raises(BakeryError, match="disk full"):
        b.compress_all([(items([diff_id]), ImageOptions())])
    fail[0] = False
    assert b.layer(diff_id, ImageOptions()).diff_id == diff_id


def _catch(fn: Any) -> Any:
    try:
        return fn()
    except BakeryError as e:
        return e


def test_image_work_mirrors_export_target() -> None:
    gz = ImageOptions()
    zs = ImageOptions(compression="zstd")
    assert image_work([]) == [gz]
    specs = [OutputSpec(target="t", type="local"), OutputSpec(target="t", type="oci", image=zs),
             OutputSpec(target="t", type="image", image=zs), OutputSpec(target="t", type="docker"),
             OutputSpec(target="t", type="cacheonly"), OutputSpec(target="t", type="tar")]
    assert image_work(specs) == [zs, gz]
    assert image_work([OutputSpec(target="t", type="cacheonly")]) == []
