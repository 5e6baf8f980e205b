"""Snapshots in both modes: layers in, writable rootfs, a layer out, nothing left behind."""

from __future__ import annotations

import os

import pytest

from bakery.engine.snapshots import Snapshotter, detect_mode
from bakery.engine.store import Store

MODES = ["copy"]
if os.geteuid() == 0 and detect_mode("/tmp")[0] == "overlay":
    MODES.append("overlay")


@pytest.mark.parametrize("mode", MODES)
def test_layers_stack_and_commit(tmp_path, mode: str) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    snaps = Snapshotter(store, mode)
    with snaps.writable([]) as fs:
        os.makedirs(os.path.join(fs.path, "etc"))
        with open(os.path.join(fs.path, "etc", "a"), "w") as fh:
            fh.write("a")
        with open(os.path.join(fs.path, "etc", "b"), "w") as fh:
            fh.write("b")
        l1 = fs.commit()
    assert l1 is not None
    with snaps.writable([l1.diff_id]) as fs:
        os.unlink(os.path.join(fs.path, "etc", "a"))
        with open(os.path.join(fs.path, "etc", "b"), "w") as fh:
            fh.write("B")
        l2 = fs.commit()
    assert l2 is not None
    with snaps.writable([l1.diff_id, l2.diff_id]) as fs:
        assert sorted(os.listdir(os.path.join(fs.path, "etc"))) == ["b"]
        with open(os.path.join(fs.path, "etc", "b")) as fh:
            assert fh.read() == "B"
        assert fs.commit() is None  # no change, no layer
    # nothing mounted or left in tmp
    with open("/proc/mounts") as fh:
        assert str(tmp_path) not in fh.read()
    assert os.listdir(store.session_dir()) == []


@pytest.mark.parametrize("mode", MODES)
def test_failure_inside_cleans_up(tmp_path, mode: str) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    snaps = Snapshotter(store, mode)
    with pytest.raises(RuntimeError), snaps.writable([]) as fs:
        open(os.path.join(fs.path, "x"), "w").close()
        raise RuntimeError("step failed")
    with open("/proc/mounts") as fh:
        assert str(tmp_path) not in fh.read()
    assert os.listdir(store.session_dir()) == []


def test_both_modes_make_the_same_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if "overlay" not in MODES:
        pytest.skip("overlayfs not available here")
    out = {}
    for mode in MODES:
        store = Store(str(tmp_path / mode))
        snaps = Snapshotter(store, mode)
        with snaps.writable([]) as fs:
            os.makedirs(os.path.join(fs.path, "d"))
            with open(os.path.join(fs.path, "d", "f"), "w") as fh:
                fh.write("same")
            os.utime(os.path.join(fs.path, "d", "f"), (1000, 1000))
            os.utime(os.path.join(fs.path, "d"), (1000, 1000))
            layer = fs.commit()
        assert layer is not None
        out[mode] = layer.diff_id
    assert out["copy"] == out["overlay"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs needs root")
def test_detect_mode_probes_privately(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Processes sharing a store probe at once: each in its own directory
    (one shared probe path let one remove another's while mounted)."""
    import threading

    scratch = str(tmp_path / "tmp")
    results = []

    def probe() -> None:
        results.append(detect_mode(scratch))

    threads = [threading.Thread(target=probe) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if results[0][0] != "overlay":
        pytest.skip(results[0][1])
    assert [r[0] for r in results] == ["overlay"] * 8, results
    assert os.listdir(scratch) == []
    with open("/proc/self/mountinfo") as f:
        assert scratch not in f.read()
