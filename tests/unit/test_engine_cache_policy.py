"""Which steps skip the cache (no-cache, no-cache-filter) and the stored tag
resolutions --pull ignores."""

from __future__ import annotations

import pytest

from bakery.engine.executor import Engine, downstream, in_stages
from bakery.engine.snapshots import Snapshotter
from bakery.engine.store import Store
from tests.unit.test_engine import FakeSandbox, base, graph, run_step


def test_downstream_is_the_keys_and_everything_built_on_them() -> None:
    deps = {"a": (), "b": ("a",), "c": ("b",), "d": ("a",), "e": ("c", "d"), "f": ()}
    assert downstream(deps, ["b"]) == {"b", "c", "e"}
    assert downstream(deps, ["a"]) == {"a", "b", "c", "d", "e"}
    assert downstream(deps, []) == set()


@pytest.mark.parametrize("desc, stages, want", [
    ("[build 2/5] RUN make", ["build"], True),
    ("[build 2/5] RUN make", ["BUILD"], True),  # BuildKit compares case-insensitively
    ("[Build 2/5] RUN make", ["build"], True),
    ("[build 2/5] RUN make", ["test"], False),
    ("[build 2/5] RUN make", [], False),
    ("[2/5] RUN make", ["build"], False),  # the unnamed last stage
    ("[stage-1 2/5] RUN make", ["stage-1"], False),  # unnamed stages have no name to filter on
    ("127.0.0.1:5000/busybox:latest", ["build"], False),
    ("[build] weird", ["build"], False),
])
def test_in_stages(desc: str, stages: list, want: bool) -> None:
    assert in_stages(desc, stages) is want


def test_no_cache_keys_rerun_their_dependents_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    sandbox = FakeSandbox()
    b = base()
    first = run_step("first", b)
    second = run_step("second", first)
    other = run_step("other", b)
    ops, deps, roots = graph(second, other)
    e = Engine(store, sandbox, snapshotter=Snapshotter(store, "copy"), jobs=2)
    e.run(ops, deps, roots)
    assert len(sandbox.runs) == 3
    sandbox.runs.clear()
    key_first = next(k for k, op in ops.items() if op == first)
    e2 = Engine(store, sandbox, snapshotter=Snapshotter(store, "copy"), jobs=2)
    states = e2.run(ops, deps, roots, no_cache_keys=[key_first])
    assert sorted(a[0] for a in sandbox.runs) == ["first", "second"]  # "other" stays cached
    assert not states[roots[0]].cached and states[roots[1]].cached
    sandbox.runs.clear()
    Engine(store, sandbox, snapshotter=Snapshotter(store, "copy"), jobs=2, no_cache=True).run(ops, deps, roots)
    assert len(sandbox.runs) == 3


def test_tag_resolutions_are_stored_and_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    name = "127.0.0.1:5000/busybox:latest|linux/amd64"
    assert store.get_resolution(name) is None
    d = "sha256:" + "ab" * 32
    store.put_resolution(name, d)
    assert store.get_resolution(name) == d
    assert store.get_resolution(name + "x") is None
    with pytest.raises(ValueError):
        store.put_resolution(name, "sha256:nothex")
    path = store._resolution_path(name)
    with open(path, "w") as fh:
        fh.write(f'{{"name": "{name}", "digest": "md5:00"}}')  # damaged: a miss, not a crash
    assert store.get_resolution(name) is None
    with open(path, "w") as fh:
        fh.write("{not json")
    assert store.get_resolution(name) is None
    store.put_resolution(name, d)
    store.prune(everything=True)  # prune --all forgets them
    assert store.get_resolution(name) is None


def test_records_remember_their_targets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    b = base()
    ops, deps, roots = graph(run_step("a", b), run_step("b", b))
    users = {k: ["api", "web"] if k not in roots else (["api"] if k == roots[0] else ["web"]) for k in ops}
    Engine(store, FakeSandbox(), snapshotter=Snapshotter(store, "copy")).run(ops, deps, roots, targets=users)
    recorded = {k: doc["meta"].get("targets") for k, doc, _ in store.records()}
    assert recorded[roots[0]] == ["api"] and recorded[roots[1]] == ["web"]
    per = store.du_by_target()
    assert set(per) == {"api", "web"} and per["api"][1] == len(ops) - 1


def test_layers_are_compressed_once(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io
    import os
    import tarfile

    import bakery.oci.image as image
    from bakery.engine.layers import compressed_layer
    from bakery.oci.store import BlobStore

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("hello")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"hello"))
    store = Store(str(tmp_path / "store"))
    diff_id = store.put_bytes(buf.getvalue())
    blobs = BlobStore(str(tmp_path / "oci"))
    calls = []
    real = image.add_layer
    monkeypatch.setattr(image, "add_layer", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = compressed_layer(store, blobs, diff_id)
    second = compressed_layer(store, blobs, diff_id)
    assert len(calls) == 1 and first.digest == second.digest and second.diff_id == diff_id
    assert second.size == first.size and blobs.has(first.digest)
    compressed_layer(store, blobs, diff_id, "uncompressed")  # another form: compressed apart
    assert len(calls) == 2
    os.unlink(blobs.path(first.digest))  # the blob went away (pruned): compressed again
    third = compressed_layer(store, blobs, diff_id)
    assert len(calls) == 3 and third.digest == first.digest and blobs.has(third.digest)


def test_source_date_epoch_clamps_layer_times(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gzip
    import io
    import tarfile

    from bakery.engine.layers import compressed_layer
    from bakery.oci.store import BlobStore

    def tar(mtime: float, atime: bool = True) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            d = tarfile.TarInfo("dir")
            d.type, d.mtime = tarfile.DIRTYPE, mtime
            tf.addfile(d)
            ti = tarfile.TarInfo("dir/file")
            ti.size, ti.mtime = 5, mtime
            ti.pax_headers = {"atime": str(mtime)} if atime else {}
            tf.addfile(ti, io.BytesIO(b"hello"))
        return buf.getvalue()

    store = Store(str(tmp_path / "store"))
    blobs = BlobStore(str(tmp_path / "oci"))
    one, two = store.put_bytes(tar(1_700_000_000.5)), store.put_bytes(tar(1_800_000_000))
    a = compressed_layer(store, blobs, one, epoch=1000)
    b = compressed_layer(store, blobs, two, epoch=1000)
    assert a.digest == b.digest and a.diff_id == b.diff_id != one  # same files, other times: same layer
    with gzip.open(blobs.path(a.digest)) as fh, tarfile.open(fileobj=fh) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == ["dir", "dir/file"]
        assert all(m.mtime == 1000 and "atime" not in m.pax_headers for m in members)
        f = tf.extractfile("dir/file")
        assert f is not None and f.read() == b"hello"
    old = store.put_bytes(tar(10, atime=False))  # nothing newer than the epoch: kept byte for byte
    assert compressed_layer(store, blobs, old, epoch=1000).diff_id == old
    assert compressed_layer(store, blobs, one, epoch=None).diff_id == one  # no epoch: as built
