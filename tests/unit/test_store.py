"""The content store: atomic, verified, shared, prunable."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bakery.engine.store import Store, parse_duration, parse_size
from bakery.errors import BakeryError


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_blobs_are_content_addressed_and_deduplicated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path))
    d1 = s.put_bytes(b"hello")
    d2 = s.put_bytes(b"hello")
    assert d1 == d2 == sha(b"hello")
    assert s.read_blob(d1) == b"hello"
    assert os.listdir(tmp_path / "blobs" / "sha256") == [d1.split(":")[1]]
    assert os.listdir(s.session_dir()) == []  # no temp file left
    s.end_session()
    assert os.listdir(tmp_path / "tmp") == []


def test_expected_digest_is_verified(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path))
    with pytest.raises(BakeryError, match="content digest mismatch"):
        s.put_bytes(b"evil", expected=sha(b"good"))
    assert not s.has_blob(sha(b"evil")) and os.listdir(s.session_dir()) == []


def test_records_are_trusted_only_with_their_blobs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path))
    d = s.put_bytes(b"layer")
    s.put_record("sha256:" + "1" * 64, {"layers": [d]}, blobs=[d])
    assert s.get_record("sha256:" + "1" * 64) == {"layers": [d]}
    # a truncated blob (size differs) makes the record untrustworthy
    path = s.blob_path(d)
    os.chmod(path, 0o644)
    with open(path, "wb") as fh:
        fh.write(b"lay")
    assert s.get_record("sha256:" + "1" * 64) is None
    # same size, different bytes: caught with verify=True
    with open(path, "wb") as fh:
        fh.write(b"LAYER")
    assert s.get_record("sha256:" + "1" * 64) is not None
    assert s.get_record("sha256:" + "1" * 64, verify=True) is None
    os.unlink(path)
    assert s.get_record("sha256:" + "1" * 64) is None


def test_corrupt_record_is_a_miss(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path))
    key = "sha256:" + "2" * 64
    with open(s.record_path(key), "w") as fh:
        fh.write("{not json")
    assert s.get_record(key) is None


def test_record_needs_its_blobs_present(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path))
    with pytest.raises(BakeryError, match="is not in the store"):
        s.put_record("sha256:" + "3" * 64, {}, blobs=[sha(b"absent")])


def test_prune_lru_and_gc(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path))
    keys = []
    for i in range(3):
        d = s.put_bytes(bytes([i]) * 1000)
        k = "sha256:" + str(i) * 64
        s.put_record(k, {"d": d}, blobs=[d])
        os.utime(s.record_path(k), (time.time() - 100 * (3 - i),) * 2)
        keys.append(k)
    s.get_record(keys[0])  # the oldest becomes the most recently used
    dropped, _ = s.prune(keep_storage=1500)
    assert dropped == 2
    assert s.get_record(keys[0]) is not None
    assert s.get_record(keys[1]) is None and s.get_record(keys[2]) is None
    assert s.du()["blobs"] == 1000
    s.prune(everything=True)
    assert s.du()["blobs"] == 0


def test_prune_older_than(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path))
    d = s.put_bytes(b"x")
    s.put_record("sha256:" + "a" * 64, {}, blobs=[d])
    os.utime(s.record_path("sha256:" + "a" * 64), (time.time() - 7200,) * 2)
    assert s.prune(older_than=3600)[0] == 1


def test_sigkill_during_write_leaves_a_usable_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # a child writes a huge blob slowly; kill it mid-write
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from bakery.engine.store import Store
        class Slow:
            n = 0
            def read(self, k):
                self.n += 1
                if self.n == 3:
                    print("writing", flush=True)
                time.sleep(0.05)
                return b"x" * 65536
        Store({str(tmp_path)!r}).put_stream(Slow())
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == b"writing"
    p.send_signal(signal.SIGKILL)
    p.wait()
    s = Store(str(tmp_path))
    assert os.listdir(tmp_path / "blobs" / "sha256") == []  # nothing half-written is visible
    orphans = os.listdir(tmp_path / "tmp")
    assert len(orphans) == 1 and len(os.listdir(tmp_path / "tmp" / orphans[0])) == 1  # the orphan temp file...
    s.gc()  # (its process is dead: no need to wait for it to be old)
    assert os.listdir(tmp_path / "tmp") == []  # ...is collected
    assert s.read_blob(s.put_bytes(b"ok")) == b"ok"


def test_two_processes_share_a_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from bakery.engine.store import Store
        s = Store({str(tmp_path)!r})
        for i in range(200):
            d = s.put_bytes(str(i % 20).encode() * 1000)
            s.put_record("sha256:" + format(i % 20, "064x"), {{"d": d}}, blobs=[d])
            assert s.get_record("sha256:" + format(i % 20, "064x")) is not None
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    s = Store(str(tmp_path))
    assert len(os.listdir(tmp_path / "blobs" / "sha256")) == 20
    assert all(s.verify_blob(r["result"]["d"]) for _, r, _ in s.records())


@pytest.mark.parametrize("text,n", [("1000", 1000), ("1k", 1024), ("10GB", 10 * 1000**3), ("512MiB", 512 << 20)])
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text,n", [("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("90s", 90)])
def test_parse_duration(text: str, n: float) -> None:
    assert parse_duration(text) == n


@pytest.mark.parametrize("text", ["", "ten", "5x", "1h 2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BakeryError):
        parse_duration(text)


def test_cache_mounts_are_stable_per_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path))
    a = s.cache_mount("/root/.cache/pip")
    assert a == s.cache_mount("/root/.cache/pip") != s.cache_mount("other")
    (open(os.path.join(a, "f"), "w")).close()
    s.prune(everything=True)
    assert not os.path.exists(os.path.join(a, "f"))


def test_sessions_of_dead_processes_are_recovered_live_ones_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A process killed with SIGKILL leaves its session (temp files); the
    next store user removes it, but never a live process's session."""
    import subprocess
    import sys
    import textwrap

    root = str(tmp_path / "s")
    code = textwrap.dedent(f"""
        import os, sys
        from bakery.engine.store import Store
        s = Store({root!r})
        d = s.tmpdir("work-")
        open(os.path.join(d, "half-written"), "w").write("x")
        print(os.path.basename(s.session_dir()), flush=True)
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), 9)
        sys.stdin.read()
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    dead = subprocess.run([sys.executable, "-c", code, "kill"], capture_output=True, text=True, env=env)
    assert dead.returncode == -9
    dead_name = dead.stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", code, "live"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert live.stdout is not None
    live_name = live.stdout.readline().strip()
    try:
        store = Store(root)
        tdir = os.path.join(root, "tmp")
        assert {dead_name, live_name} <= set(os.listdir(tdir))
        assert store.recover() == 1
        assert dead_name not in os.listdir(tdir)
        assert not os.path.exists(os.path.join(root, "locks", f"session-{dead_name}"))
        assert os.path.exists(os.path.join(tdir, live_name, ))  # alive: kept
        store.gc()  # gc keeps it too, whatever its age
        assert live_name in os.listdir(tdir)
    finally:
        live.communicate("")
    assert live.returncode == 0
    assert live_name not in os.listdir(os.path.join(root, "tmp"))  # removed at its exit
    assert Store(root).recover() == 0
