"""What both sandboxes share: paths inside a rootfs, mount stubs, private
directories and secret files, output streaming and waiting.

Everything a run creates is registered on a ``contextlib.ExitStack`` so it
is undone whatever way ``run()`` ends (success, failure, exception,
cancellation, KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

from bakery.errors import BakeryError

from .oci import make_hosts, make_resolv_conf, mount_target
from .spec import OUTPUT_TAIL, OutputCallback, RunSpec
from .users import ExecUser, resolve_user

__all__ = [
    "MountStubs",
    "OutputPump",
    "Prepared",
    "mounts_under",
    "prepare",
    "private_memory_dir",
    "read_in_root",
    "secure_join",
    "wait_process",
]


def secure_join(root: str, path: str, max_links: int = 255) -> str:
    """``path`` inside ``root`` with symlinks resolved as if ``root`` were
    ``/`` (an absolute link or ``..`` never leaves it); missing components
    are kept as they are."""
    root = os.path.abspath(root)
    pending = [p for p in path.split("/") if p][::-1]
    done: List[str] = []
    links = 0
    while pending:
        comp = pending.pop()
        if comp == ".":
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        cand = os.path.join(root, *done, comp)
        try:
            st = os.lstat(cand)
        except OSError:
            done.append(comp)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                raise BakeryError(f"too many levels of symbolic links in {path}")
            target = os.readlink(cand)
            if target.startswith("/"):
                done = []
            pending.extend([p for p in target.split("/") if p][::-1])
        else:
            done.append(comp)
    return os.path.join(root, *done)


def read_in_root(root: str, path: str) -> Optional[str]:
    """The text of a regular file inside ``root``, or None."""
    p = secure_join(root, path)
    try:
        with open(p, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


class MountStubs:
    """Mount points a runtime creates in the rootfs (``/proc`` in a scratch
    image, ``/run/secrets/id``...), removed after the run when still empty,
    so they do not end up in the layer (BuildKit does the same)."""

    def __init__(self, root: str):
        self.root = root
        self.created: List[str] = []

    def record(self, target: str) -> None:
        comps = [c for c in target.split("/") if c]
        for i in range(1, len(comps) + 1):
            p = secure_join(self.root, "/".join(comps[:i]))
            if not os.path.lexists(p):
                if p not in self.created:
                    self.created.append(p)
            elif not os.path.isdir(p):
                break

    def remove(self) -> None:
        for p in sorted(self.created, key=lambda x: x.count("/"), reverse=True):
            try:
                st = os.lstat(p)
            except OSError:
                continue
            try:
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(p)  # only when empty
                elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    os.unlink(p)
            except OSError:
                pass


def mounts_under(path: str) -> List[str]:
    """Mount points at or below ``path`` in this mount namespace."""
    path = os.path.realpath(path)
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                mp = line.split()[4].encode().decode("unicode_escape")
                if mp == path or mp.startswith(path.rstrip("/") + "/"):
                    out.append(mp)
    except OSError:
        pass
    return out


def _remove_tree(path: str) -> None:
    """rmtree, refusing to descend into anything still mounted there."""
    if not os.path.lexists(path):
        return
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"not removing {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path, ignore_errors=True)


def private_memory_dir(base: Optional[str] = None) -> Optional[str]:
    """A directory on tmpfs to hold secrets and runtime state (/dev/shm)."""
    if base is not None:
        return base
    cand = "/dev/shm"
    try:
        if os.path.isdir(cand) and os.access(cand, os.W_OK):
            with open("/proc/self/mountinfo", encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if parts[4] == cand and parts[parts.index("-") + 1] == "tmpfs":
                        return cand
    except (OSError, ValueError):
        pass
    return None


@dataclass
class Prepared:
    """The private things of one run."""

    workdir: str  # 0700: bundle, hosts, resolv.conf, logs
    memdir: str  # 0700, on tmpfs when possible: secret files, runtime state
    user: ExecUser
    hosts_path: str
    resolv_path: str
    mount_sources: List[str] = field(default_factory=list)
    stubs: Optional[MountStubs] = None


def _write_private(path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        if os.geteuid() == 0:  # rootless: the invoking user's file is root's in the step
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def prepare(spec: RunSpec, stack: contextlib.ExitStack, tmp_dir: Optional[str],
            mem_dir: Optional[str], extra_stubs: Sequence[str] = ()) -> Prepared:
    """Resolve the user, create cwd, write hosts/resolv.conf and secrets in
    private directories; register their removal (and the stubs') on
    ``stack``."""
    rootfs = spec.rootfs
    if not os.path.isabs(rootfs) or not os.path.isdir(rootfs):
        raise BakeryError(f"root filesystem {rootfs} is not a directory")
    user = resolve_user(spec.user, read_in_root(rootfs, "/etc/passwd"),
                        read_in_root(rootfs, "/etc/group"))
    cwd = secure_join(rootfs, spec.cwd or "/")
    if not os.path.lexists(cwd):
        os.makedirs(cwd, 0o755)
    elif not os.path.isdir(cwd):
        raise BakeryError(f"working directory {spec.cwd} is not a directory")
    for m in spec.mounts:
        if m.type in ("bind", "cache", "ssh") and not os.path.exists(m.source):
            raise BakeryError(f"{m.type} mount source {m.source} does not exist")

    stubs = MountStubs(rootfs)
    for t in ("/proc", "/dev", "/sys", "/etc/hosts", "/etc/resolv.conf", *extra_stubs):
        stubs.record(t)
    for m in spec.mounts:
        stubs.record(mount_target(m, spec.cwd))
    stack.callback(stubs.remove)  # runs after everything registered later

    workdir = tempfile.mkdtemp(prefix="bakery-run-", dir=tmp_dir)
    stack.callback(_remove_tree, workdir)
    mem_base = private_memory_dir(mem_dir)
    if mem_base is None:
        memdir = os.path.join(workdir, "mem")
        os.mkdir(memdir, 0o700)
    else:
        memdir = tempfile.mkdtemp(prefix="bakery-run-", dir=mem_base)
        stack.callback(_remove_tree, memdir)

    hosts = os.path.join(workdir, "hosts")
    with open(hosts, "w", encoding="utf-8") as f:
        f.write(make_hosts(spec.hostname, spec.extra_hosts))
    resolv = os.path.join(workdir, "resolv.conf")
    host_resolv: Optional[str] = None
    for cand in ("/etc/resolv.conf",):
        try:
            with open(cand, encoding="utf-8", errors="replace") as f:
                host_resolv = f.read()
        except OSError:
            host_resolv = None
    if host_resolv is not None and "127.0.0.53" in host_resolv:
        # systemd-resolved's stub: the real servers are in its other file
        try:
            with open("/run/systemd/resolve/resolv.conf", encoding="utf-8") as f:
                host_resolv = f.read()
        except OSError:
            pass
    with open(resolv, "w", encoding="utf-8") as f:
        f.write(make_resolv_conf(host_resolv, spec.network == "host"))
    for p in (hosts, resolv):
        os.chmod(p, 0o644)

    sources: List[str] = []
    secrets_dir = os.path.join(memdir, "secrets")
    for i, m in enumerate(spec.mounts):
        if m.type != "secret":
            sources.append(m.source)
            continue
        if os.geteuid() != 0 and (m.uid or m.gid):
            raise BakeryError(f"secret mount at {m.target}: uid={m.uid or 0},gid={m.gid or 0} needs "
                              "root (a rootless step has only uid 0 and gid 0)",
                              hint="drop uid/gid from the mount, or run bakery as root")
        if not os.path.isdir(secrets_dir):
            os.mkdir(secrets_dir, 0o700)
        if m.data is not None:
            data = m.data
        else:
            try:
                with open(m.source, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise BakeryError(f"cannot read secret for {m.target}: {e.strerror}") from None
        path = os.path.join(secrets_dir, str(i))
        _write_private(path, data, 0o400 if m.mode is None else m.mode,
                       m.uid or 0, m.gid or 0)
        sources.append(path)
    return Prepared(workdir=workdir, memdir=memdir, user=user, hosts_path=hosts,
                    resolv_path=resolv, mount_sources=sources, stubs=stubs)


class OutputPump:
    """Reads a pipe in a thread: every chunk goes to the callback as it
    arrives; the last :data:`OUTPUT_TAIL` bytes are kept."""

    def __init__(self, fd: int, callback: Optional[OutputCallback]):
        self.fd = fd
        self.callback = callback
        self._tail = bytearray()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._loop, name="bakery-sandbox-output", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                break
            if not data:
                break
            self._tail += data
            if len(self._tail) > OUTPUT_TAIL:
                del self._tail[: len(self._tail) - OUTPUT_TAIL]
            if self.callback is not None and self.error is None:
                try:
                    self.callback(data)
                except BaseException as e:  # reported by run() after cleanup
                    self.error = e

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    @property
    def tail(self) -> bytes:
        return bytes(self._tail)


def wait_process(proc: Any, cancel: Optional[Any], timeout: Optional[float],
                 started: float) -> Tuple[Optional[int], str]:
    """Wait for ``proc`` (a Popen); (returncode, "") when it exited,
    (None, "cancel"|"timeout") when it must be killed."""
    deadline = started + timeout if timeout else None
    while True:
        rc = proc.poll()
        if rc is not None:
            return rc, ""
        if cancel is not None and cancel.is_set():
            return None, "cancel"
        if deadline is not None and time.monotonic() >= deadline:
            return None, "timeout"
        if cancel is not None and hasattr(cancel, "wait"):
            cancel.wait(0.02)
        else:
            time.sleep(0.02)
