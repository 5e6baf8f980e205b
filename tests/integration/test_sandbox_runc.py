"""RUN steps for real: RuncSandbox (runc) and the NamespaceSandbox fallback
on a busybox rootfs.

Every test is run against both sandboxes (ids ``runc`` and ``namespace``);
they need root (and runc for the first) and skip with the reason otherwise.
After each run nothing may be left: mounts (/proc/self/mountinfo), the
process tree, the private temporary and state directories, runc state and
cgroups, mount stubs in the rootfs.
"""

from __future__ import annotations

import _thread
import os
import random
import socket
import stat
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import pytest

from bakery.engine.sandbox import (
    OUTPUT_TAIL,
    NamespaceSandbox,
    RuncSandbox,
    RunSpec,
    SandboxCancelled,
    SandboxMount,
    SandboxTimeout,
    make_hosts,
)
from bakery.engine.sandbox.namespace import namespace_support
from bakery.errors import BakeryError

pytestmark = pytest.mark.integration

DOCKER_CAP_MASK = 0xA80425FB  # Docker's default capability set


def _mounts() -> Set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def _cgroup_dirs() -> Set[str]:
    out: Set[str] = set()
    base = "/sys/fs/cgroup"
    try:
        for sub in os.listdir(base):
            p = os.path.join(base, sub)
            if os.path.isdir(p) and not os.path.islink(p):
                out.update(os.path.join(p, d) for d in os.listdir(p) if d.startswith("bakery-"))
    except OSError:
        pass
    return out


def _procs_with(marker: str) -> List[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if marker.encode() in cmd:
            found.append(int(pid))
    return found


class Harness:
    """A sandbox with private temporary and state directories, and the
    checks that a run left nothing behind."""

    def __init__(self, kind: str, base: str, runc: str = ""):
        self.kind = kind
        self.tmp_dir = os.path.join(base, "tmp")
        self.state_dir = os.path.join(base, "state")
        os.makedirs(self.tmp_dir)
        os.makedirs(self.state_dir)
        self.runc = runc
        self.mounts_before = _mounts()
        self.cgroups_before = _cgroup_dirs()

    def make(self, allow_network_host: bool = False) -> Any:
        if self.kind == "runc":
            return RuncSandbox(self.runc, allow_network_host=allow_network_host,
                               tmp_dir=self.tmp_dir, state_dir=self.state_dir)
        return NamespaceSandbox(allow_network_host=allow_network_host,
                                tmp_dir=self.tmp_dir, state_dir=self.state_dir)

    def run(self, rootfs: str, *args: str, allow_network_host: bool = False,
            cb: Optional[Callable[[bytes], None]] = None, **kw: Any) -> Tuple[int, str]:
        r = self.make(allow_network_host).run(RunSpec(rootfs=rootfs, args=args, **kw), cb)
        return r.exit_code, r.output.decode()

    def sh(self, rootfs: str, script: str, **kw: Any) -> Tuple[int, str]:
        return self.run(rootfs, "/bin/sh", "-c", script, **kw)

    def assert_clean(self) -> None:
        assert os.listdir(self.tmp_dir) == [], "temporary directories left"
        assert os.listdir(self.state_dir) == [], "state directories left"
        # the machine may be shared: other builds' mounts and cgroups come
        # and go; a leak of this test's is under its own directory, or stays
        mine = os.path.dirname(self.tmp_dir.rstrip("/"))
        base = os.path.dirname(mine)
        deadline = time.monotonic() + 10
        while True:
            mounts = {m for m in _mounts() - self.mounts_before if base in m}
            cgroups = _cgroup_dirs() - self.cgroups_before
            if (not mounts and not cgroups) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert mounts == set(), "mounts left"
        assert cgroups == set(), "cgroups left"


@pytest.fixture(params=["runc", "namespace"])
def sb(request, tmp_path, require_root) -> Harness:  # type: ignore[no-untyped-def]
    runc = ""
    if request.param == "runc":
        runc = request.getfixturevalue("runc_binary")
    else:
        reason = namespace_support()
        if reason:
            pytest.skip(reason)
    h = Harness(request.param, str(tmp_path / "sandbox"), runc)
    yield h
    h.assert_clean()


# -- output and exit codes ----------------------------------------------------


def test_output_is_streamed_as_it_arrives(sb: Harness, busybox_rootfs: str) -> None:
    chunks: List[Tuple[float, bytes]] = []
    t0 = time.monotonic()
    code, out = sb.sh(busybox_rootfs, "echo one; sleep 1; echo two >&2",
                      cb=lambda b: chunks.append((time.monotonic(), b)))
    end = time.monotonic()
    assert code == 0
    assert out == "one\ntwo\n"
    assert b"".join(c for _, c in chunks) == b"one\ntwo\n"
    first = next(t for t, c in chunks if b"one" in c)
    assert first - t0 < end - t0 - 0.5, "the first line came only at the end"


@pytest.mark.parametrize("script,code", [
    ("true", 0), ("exit 7", 7), ("sh -c 'kill -9 $$'; exit $?", 137)])
def test_exit_codes(sb: Harness, busybox_rootfs: str, script: str, code: int) -> None:
    assert sb.sh(busybox_rootfs, script)[0] == code


def test_output_tail_is_bounded(sb: Harness, busybox_rootfs: str) -> None:
    seen = bytearray()
    r = sb.make().run(RunSpec(rootfs=busybox_rootfs, args=(
        "/bin/sh", "-c", "yes 0123456789abcdef | head -c 200000; echo; echo THE-END")),
        seen.extend)
    assert r.exit_code == 0
    assert len(seen) == 200000 + len("\nTHE-END\n")
    assert len(r.output) == OUTPUT_TAIL
    assert r.output.endswith(b"THE-END\n")


def test_missing_binary_is_a_runtime_error(sb: Harness, busybox_rootfs: str) -> None:
    with pytest.raises(BakeryError) as e:
        sb.run(busybox_rootfs, "foo", "bar")
    assert 'exec: "foo": executable file not found in $PATH' in str(e.value)


def test_timeout(sb: Harness, busybox_rootfs: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(SandboxTimeout):
        sb.sh(busybox_rootfs, "sleep 50", timeout=0.5)
    assert time.monotonic() - t0 < 5


# -- process environment --------------------------------------------------------


def test_env_and_cwd_created(sb: Harness, busybox_rootfs: str) -> None:
    code, out = sb.sh(busybox_rootfs, 'echo "$FOO|$(pwd)|$PATH|$HOME"', env=("FOO=bar baz",),
                      cwd="/new/work/dir")
    assert code == 0
    assert out == ("bar baz|/new/work/dir|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                   "/sbin:/bin|/root\n")
    assert os.path.isdir(os.path.join(busybox_rootfs, "new/work/dir"))


def test_hostname_hosts_and_resolv_conf(sb: Harness, busybox_rootfs: str) -> None:
    code, out = sb.sh(busybox_rootfs, "hostname; echo ---; cat /etc/hosts; echo ---; "
                      "cat /etc/resolv.conf", extra_hosts=("db=10.1.2.3", "cache:10.1.2.4"))
    assert code == 0
    hostname, hosts, resolv = out.split("---\n")
    assert hostname == "bakery\n"
    assert hosts == make_hosts("bakery", ("db=10.1.2.3", "cache:10.1.2.4"))
    assert "nameserver" in resolv
    assert not any(line.split()[1].startswith("127.") for line in resolv.splitlines()
                   if line.startswith("nameserver"))


def test_mount_stubs_are_removed(sb: Harness, busybox_rootfs: str) -> None:
    before = sorted(os.listdir(busybox_rootfs))
    assert sb.sh(busybox_rootfs, "ls /proc/self >/dev/null && test -c /dev/null && echo ok")[1] == "ok\n"
    assert sorted(os.listdir(busybox_rootfs)) == before  # no empty /proc, /dev, /sys left


def test_ulimits(sb: Harness, busybox_rootfs: str) -> None:
    code, out = sb.sh(busybox_rootfs, "ulimit -Sn; ulimit -Hn", ulimits=("nofile=1024:2048",))
    assert (code, out) == (0, "1024\n2048\n")


def test_capabilities_are_dockers_default_set(sb: Harness, busybox_rootfs: str) -> None:
    code, out = sb.sh(busybox_rootfs, "grep -E '^Cap(Eff|Bnd)' /proc/self/status")
    assert code == 0
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert int(caps["CapBnd"], 16) == DOCKER_CAP_MASK
    assert int(caps["CapEff"], 16) == DOCKER_CAP_MASK


def test_masked_and_readonly_paths(sb: Harness, busybox_rootfs: str) -> None:
    masked = [p for p in ("/proc/keys", "/proc/timer_list", "/proc/kcore") if os.path.exists(p)]
    script = "".join(f"cat {p} | wc -c; " for p in masked)
    code, out = sb.sh(busybox_rootfs, script + "{ echo 1 > /proc/sys/kernel/panic; } 2>/dev/null "
                      "&& echo writable || echo ro")
    assert code == 0
    assert out.split() == ["0"] * len(masked) + ["ro"]


def test_pid_namespace(sb: Harness, busybox_rootfs: str) -> None:
    code, out = sb.sh(busybox_rootfs, "echo $$; ls /proc | grep -c '^[0-9]'")
    assert code == 0
    pid, count = out.split()
    assert pid == "1"
    assert int(count) <= 3  # sh, ls, grep


# -- users ----------------------------------------------------------------------


@pytest.mark.parametrize("user,uid,gid,groups", [
    ("alice", 1000, 1000, "1000 50"),
    ("bob:staff", 1001, 50, "50"),
    ("1234:5678", 1234, 5678, "5678"),
    ("", 0, 0, "0"),
])
def test_user_switching(sb: Harness, busybox_rootfs: str, user: str, uid: int, gid: int,
                        groups: str) -> None:
    code, out = sb.sh(busybox_rootfs, "touch /tmp/made; id -G", user=user)
    assert code == 0, out
    assert sorted(out.split()) == sorted(groups.split())
    st = os.stat(os.path.join(busybox_rootfs, "tmp", "made"))
    assert (st.st_uid, st.st_gid) == (uid, gid)


def test_unknown_user(sb: Harness, busybox_rootfs: str) -> None:
    with pytest.raises(BakeryError, match="unable to find user nosuch: no matching entries in passwd file"):
        sb.sh(busybox_rootfs, "true", user="nosuch")


# -- network ----------------------------------------------------------------------


def _interfaces(proc_net_dev: str) -> Set[str]:
    return {line.split(":")[0].strip() for line in proc_net_dev.splitlines()[2:] if ":" in line}


def test_network_none_has_only_loopback(sb: Harness, busybox_rootfs: str) -> None:
    code, out = sb.sh(busybox_rootfs, "cat /proc/net/dev; echo ---; ip -o addr show lo")
    assert code == 0
    dev, addrs = out.split("---\n")
    assert _interfaces(dev) == {"lo"}
    assert "127.0.0.1" in addrs


def test_network_default_is_none_with_a_note(sb: Harness, busybox_rootfs: str) -> None:
    r = sb.make().run(RunSpec(rootfs=busybox_rootfs, args=("cat", "/proc/net/dev"),
                              network="default"))
    assert _interfaces(r.output.decode()) == {"lo"}
    assert any("default" in n for n in r.notes)


def test_host_network_needs_permission(sb: Harness, busybox_rootfs: str) -> None:
    with pytest.raises(BakeryError, match="not allowed"):
        sb.sh(busybox_rootfs, "true", network="host")


def test_host_network_when_allowed(sb: Harness, busybox_rootfs: str) -> None:
    with open("/proc/net/dev") as f:
        host_ifaces = _interfaces(f.read())
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    got: List[bytes] = []

    def accept() -> None:
        server.settimeout(10)
        try:
            conn, _ = server.accept()
            got.append(conn.recv(100))
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    try:
        code, out = sb.sh(busybox_rootfs, f"cat /proc/net/dev; echo hello | nc 127.0.0.1 {port}",
                          network="host", allow_network_host=True)
    finally:
        t.join(15)
        server.close()
    assert code == 0, out
    assert _interfaces(out) == host_ifaces
    assert got == [b"hello\n"]


# -- mounts -----------------------------------------------------------------------


def test_bind_mounts_readonly_enforced(sb: Harness, busybox_rootfs: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "f").write_text("from the host\n")
    rw = tmp_path / "rw"
    rw.mkdir()
    code, out = sb.sh(
        busybox_rootfs,
        "cat /in/f; touch /in/x 2>&1 && echo wrote-ro; echo out > /out/g",
        mounts=(SandboxMount("bind", str(ro), "/in", readonly=True),
                SandboxMount("cache", str(rw), "/out")),
    )
    assert code == 0
    assert out.startswith("from the host\n")
    assert "Read-only file system" in out
    assert "wrote-ro" not in out
    assert not (ro / "x").exists()
    assert (rw / "g").read_text() == "out\n"
    assert not os.path.exists(os.path.join(busybox_rootfs, "in"))  # stubs removed


def test_tmpfs_mount(sb: Harness, busybox_rootfs: str) -> None:
    code, out = sb.sh(busybox_rootfs, "grep ' /scratch ' /proc/mounts; echo x > /scratch/f",
                      mounts=(SandboxMount("tmpfs", "", "/scratch", size=1024 * 1024),))
    assert code == 0
    fields = out.split()
    assert fields[1:3] == ["/scratch", "tmpfs"]
    assert "size=1024k" in fields[3]
    assert not os.path.exists(os.path.join(busybox_rootfs, "scratch"))


def test_shm_size(sb: Harness, busybox_rootfs: str) -> None:
    code, out = sb.sh(busybox_rootfs, "grep ' /dev/shm ' /proc/mounts", shm_size=8 * 1024 * 1024)
    assert code == 0 and "size=8192k" in out


def _files_containing(top: str, needle: bytes) -> List[str]:
    found = []
    for dirpath, _, files in os.walk(top):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                if not os.path.isfile(p) or os.path.islink(p):
                    continue
                if not stat.S_ISREG(os.lstat(p).st_mode):
                    continue
                with open(p, "rb") as f:
                    if needle in f.read():
                        found.append(p)
            except OSError:
                continue
    return found


def test_secret_file(sb: Harness, busybox_rootfs: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "token.txt"
    src.write_bytes(b"from-a-file-0451")
    during: Dict[str, List[str]] = {}

    def cb(data: bytes) -> None:
        if "scan" not in during:
            during["scan"] = _files_containing(sb.tmp_dir, b"s3cr3t-v4lue")

    code, out = sb.sh(
        busybox_rootfs,
        "stat -c '%a %u %g' /run/secrets/id; cat /run/secrets/id; echo; cat /run/secrets/other; "
        "echo; { echo x > /run/secrets/id; } 2>/dev/null || echo readonly",
        cb=cb,
        mounts=(SandboxMount("secret", "", "/run/secrets/id", data=b"s3cr3t-v4lue", mode=0o440,
                             uid=1000, gid=50),
                SandboxMount("secret", str(src), "/run/secrets/other")),
    )
    assert code == 0
    assert out.splitlines() == ["440 1000 50", "s3cr3t-v4lue", "from-a-file-0451", "readonly"]
    assert during["scan"] == []
    assert not os.path.exists(os.path.join(busybox_rootfs, "run"))
    assert os.listdir(sb.state_dir) == []  # the private copies are gone


def test_secret_env_is_not_in_the_spec_on_disk(sb: Harness, busybox_rootfs: str) -> None:
    value = f"env-s3cr3t-{random.randint(10**6, 10**7)}"
    scans: List[List[str]] = []

    def cb(data: bytes) -> None:
        if not scans:
            scans.append(_files_containing(sb.tmp_dir, value.encode())
                         + _files_containing(sb.state_dir, value.encode()))

    code, out = sb.sh(busybox_rootfs, 'test "$TOKEN" = "$EXPECT" && echo same; sleep 0.3',
                      env=("TOKEN=overridden",), secret_env={"TOKEN": value, "EXPECT": value},
                      cb=cb)
    assert (code, out) == (0, "same\n")
    assert scans == [[]]


def test_spec_file_has_no_secret_env(runc_binary: str, busybox_rootfs: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """runc's config.json is then a FIFO: read what runc read, it has none."""
    seen: List[Any] = []
    sb = RuncSandbox(runc_binary, tmp_dir=str(tmp_path))

    def cb(data: bytes) -> None:
        for dirpath, _, files in os.walk(tmp_path):
            for name in files:
                if name == "config.json":
                    seen.append(os.stat(os.path.join(dirpath, name)).st_mode)

    r = sb.run(RunSpec(rootfs=busybox_rootfs, args=("sh", "-c", "echo $K"),
                       secret_env={"K": "v"}), cb)
    assert r.output == b"v\n"
    assert seen and all(stat.S_ISFIFO(m) and m & 0o077 == 0 for m in seen)


# -- cancellation ---------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.5, 0.0])
def test_cancel_kills_the_tree_and_cleans_up(sb: Harness, busybox_rootfs: str, delay: float) -> None:
    secs = str(random.randint(1000, 9999))
    cancel = threading.Event()
    started = threading.Event()
    with pytest.raises(SandboxCancelled):
        timer = threading.Timer(delay, cancel.set)
        timer.start()
        t0 = time.monotonic()
        try:
            sb.make().run(
                RunSpec(rootfs=busybox_rootfs,
                        args=("/bin/sh", "-c", f"sleep {secs} & sleep {secs}; echo never"),
                        mounts=(SandboxMount("tmpfs", "", "/scratch"),
                                SandboxMount("secret", "", "/run/secrets/x", data=b"zz"))),
                lambda b: started.set(), cancel=cancel)
        finally:
            elapsed = time.monotonic() - t0
            timer.cancel()
    assert elapsed < delay + 2.0
    time.sleep(0.1)
    assert _procs_with(f"sleep\0{secs}") == []
    assert not os.path.exists(os.path.join(busybox_rootfs, "scratch"))
    assert not os.path.exists(os.path.join(busybox_rootfs, "run"))
    sb.assert_clean()


def test_keyboard_interrupt_kills_the_tree_and_cleans_up(sb: Harness, busybox_rootfs: str) -> None:
    secs = str(random.randint(1000, 9999))
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            sb.sh(busybox_rootfs, f"sleep {secs}")
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 2.5
    time.sleep(0.1)
    assert _procs_with(f"sleep\0{secs}") == []
    sb.assert_clean()


def test_failure_cleans_up(sb: Harness, busybox_rootfs: str) -> None:
    with pytest.raises(BakeryError):
        sb.run(busybox_rootfs, "/no/such/binary",
               mounts=(SandboxMount("secret", "", "/run/secrets/x", data=b"zz"),))
    assert not os.path.exists(os.path.join(busybox_rootfs, "run"))
    sb.assert_clean()


def test_callback_exception_is_raised_after_cleanup(sb: Harness, busybox_rootfs: str) -> None:
    def cb(data: bytes) -> None:
        raise ValueError("progress broke")

    with pytest.raises(ValueError, match="progress broke"):
        sb.sh(busybox_rootfs, "echo hi", cb=cb)
    sb.assert_clean()


def test_runc_runtime_state_is_private(runc_binary: str, busybox_rootfs: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """runc's --root is a private directory: `runc list` on the default root
    never sees bakery's container, and the private root is gone after."""
    state = tmp_path / "state"
    state.mkdir()
    names: List[str] = []
    default_list: List[str] = []
    sb = RuncSandbox(runc_binary, tmp_dir=str(tmp_path), state_dir=str(state))

    def cb(data: bytes) -> None:
        for d in os.listdir(state):
            names.extend(os.listdir(state / d / "state"))
        default_list.append(subprocess.run([runc_binary, "list", "-q"], capture_output=True,
                                           text=True).stdout)

    # the container stays alive after its output, so the callback always sees
    # its state (a bare `echo` could be gone before the callback runs)
    sb.run(RunSpec(rootfs=busybox_rootfs, args=("sh", "-c", "echo x; sleep 0.5")), cb)
    assert len(set(names)) == 1 and names[0].startswith("bakery-")
    assert names[0] not in default_list[0]
    assert os.listdir(state) == []


def test_seccomp_filter_blocks_namespaces_and_mounts(sb: Harness, busybox_rootfs: str) -> None:
    """runc installs bakery's seccomp filter (bakery/engine/sandbox/seccomp.py):
    creating a user namespace needs no capability, so only the filter stops
    it; everything else a step does still works.  The namespace sandbox has
    no filter."""
    code, out = sb.sh(busybox_rootfs, "grep '^Seccomp:' /proc/self/status; unshare -U true; "
                      "echo unshare=$?; echo ok | cat; mkdir -p /tmp/d && ls /tmp")
    assert code == 0, out
    assert "ok\n" in out and "d\n" in out
    if sb.kind == "runc":
        assert "Seccomp:\t2" in out and "unshare=1" in out and "Operation not permitted" in out, out
    else:
        assert "Seccomp:\t0" in out and "unshare=0" in out, out
