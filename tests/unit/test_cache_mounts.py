"""Cache mount directories and their sharing modes (Store.cache_mount_lease):
shared at once, locked one at a time, private in another instance while
held; BuildKit's uid/gid/mode on a new directory; kept across leases."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from bakery.engine.store import Store
from bakery.errors import BakeryError


def test_kept_across_leases(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "s"))
    with store.cache_mount_lease("go-build") as p:
        with open(os.path.join(p, "f"), "w") as f:
            f.write("1")
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o755
    with store.cache_mount_lease("go-build", "locked") as p2:
        assert p2 == p and os.listdir(p2) == ["f"]
    with store.cache_mount_lease("other") as p3:
        assert p3 != p and os.listdir(p3) == []


def test_shared_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "s"))
    with store.cache_mount_lease("c", "shared") as a, store.cache_mount_lease("c", "shared") as b:
        assert a == b


def test_private_gets_another_instance_while_held(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "s"))
    with store.cache_mount_lease("c", "private") as a, store.cache_mount_lease("c", "private") as b:
        assert a != b and b == a + "-1"
        with store.cache_mount_lease("c", "private") as c:
            assert c == a + "-2"
    # released: the first instance again, and the others are kept
    with store.cache_mount_lease("c", "private") as again:
        assert again == a
    assert os.path.isdir(a + "-1")


def test_locked_waits_for_the_holder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "s"))
    events = []
    with store.cache_mount_lease("c", "locked"):
        def other() -> None:
            with store.cache_mount_lease("c", "locked"):
                events.append("other")
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
        events.append("first done")
    t.join(10)
    assert events == ["first done", "other"]


def test_locked_between_processes_and_cancel(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "s")
    Store(root)
    code = ("import sys,time; from bakery.engine.store import Store\n"
            "with Store(sys.argv[1]).cache_mount_lease('c', 'locked'):\n"
            "    print('held', flush=True); time.sleep(30)\n")
    p = subprocess.Popen([sys.executable, "-c", code, root], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        with pytest.raises(BakeryError, match="cancelled while waiting for cache mount 'c'"), \
                Store(root).cache_mount_lease("c", "locked", cancel=cancel):
            pass
        # shared waits for a locked holder too; private takes another instance
        with Store(root).cache_mount_lease("c", "private") as priv:
            assert priv.endswith("-1")
    finally:
        p.kill()
        p.wait()
    with Store(root).cache_mount_lease("c", "locked") as p2:
        assert not p2.endswith("-1")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_new_directory_gets_uid_gid_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "s"))
    with store.cache_mount_lease("c", uid=1000, gid=50, mode=0o700) as p:
        st = os.stat(p)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 50, 0o700)
    # only when new: an existing directory keeps what it has
    with store.cache_mount_lease("c", uid=0, gid=0, mode=0o755) as p:
        assert os.stat(p).st_uid == 1000


def test_bad_sharing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError, match="invalid cache sharing"), \
            Store(str(tmp_path / "s")).cache_mount_lease("c", "exclusive"):
        pass


def test_seed_fills_a_new_directory_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "s"))
    calls = []

    def seed(d: str) -> None:
        calls.append(d)
        with open(os.path.join(d, "seeded"), "w") as f:
            f.write("x")

    with store.cache_mount_lease("c:src", seed=seed) as p:
        assert os.listdir(p) == ["seeded"]
    with store.cache_mount_lease("c:src", seed=seed) as p:
        assert os.listdir(p) == ["seeded"]
    assert len(calls) == 1

    def broken(d: str) -> None:
        raise BakeryError("no source")

    with pytest.raises(BakeryError, match="no source"), store.cache_mount_lease("other", seed=broken):
        pass
    assert [n for n in os.listdir(tmp_path / "s" / "tmp") if n.startswith("cache-")] == []
    with store.cache_mount_lease("other") as p:  # nothing half-made was kept
        assert os.listdir(p) == []
