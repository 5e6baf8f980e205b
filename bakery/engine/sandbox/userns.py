"""Rootless with subordinate ids: bakery re-executed inside a user namespace.

When bakery does not run as root but the invoking user has subordinate id
ranges (/etc/subuid and /etc/subgid) and Debian's ``uidmap`` helpers
(newuidmap, newgidmap) are installed, ``bakery run`` (and ``info`` and
``cache``) re-execute themselves inside a user namespace that maps::

    0          -> the invoking user's uid (gid)
    1..count   -> the subordinate range

(as rootlesskit does for rootless BuildKit).  Inside, bakery is root of that
namespace: layers are extracted with their owners, ``USER`` other than root,
``chown``, ``COPY --chown`` and cache mount uid/gid all work, and the
layers record the owners the steps gave.  The snapshotter copies (no
overlayfs: its trusted.* xattrs need the host's root) and the step
containers are nested user namespaces with the same ids (rootless.py).

Files inside root filesystems and cache mounts then belong to subordinate
ids on the host: remove a store with ``bakery cache prune --all`` (which
runs in the namespace), not with rm.  ``BAKERY_USERNS=0`` turns this off (a
single-id mapping, see rootless.py).

The pure parts (:func:`parse_subid`, :func:`map_args`, :func:`parse_uid_map`)
are unit-tested; :func:`reexec` is tested end to end.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
from typing import List, Optional, Sequence, Tuple

from bakery.errors import BakeryError

__all__ = ["ENV", "in_user_namespace", "map_args", "namespace_ids", "parse_subid", "parse_uid_map",
           "reexec", "reexecuted", "subid_ranges"]

#: set in the re-executed process ("1"); "0" by the user turns re-execution off
ENV = "BAKERY_USERNS"
CLONE_NEWUSER = 0x10000000
_SUBID_MIN = 65536  # BuildKit/rootlesskit need at least this many ids


def parse_subid(text: str, name: str, uid: int) -> List[Tuple[int, int]]:
    """The (start, count) ranges of /etc/subuid or /etc/subgid text for a
    user given by name or number."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            out.append((start, count))
    return out


def map_args(own: int, ranges: Sequence[Tuple[int, int]]) -> List[str]:
    """newuidmap/newgidmap arguments after the pid: own id to 0, then the
    first range from 1."""
    args = ["0", str(own), "1"]
    if ranges:
        start, count = ranges[0]
        args += ["1", str(start), str(count)]
    return args


def parse_uid_map(text: str) -> List[Tuple[int, int, int]]:
    """/proc/self/uid_map lines as (inside, outside, count)."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 3:
            out.append((int(f[0]), int(f[1]), int(f[2])))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def in_user_namespace() -> bool:
    """True when this process is not in the initial user namespace."""
    return parse_uid_map(_read("/proc/self/uid_map")) not in ([(0, 0, 4294967295)], [])


def reexecuted() -> bool:
    """True in the process :func:`reexec` started (root of its namespace)."""
    return os.environ.get(ENV) == "1" and os.geteuid() == 0 and in_user_namespace()


def namespace_ids() -> int:
    """How many ids from 0 up this user namespace maps (contiguously)."""
    n = 0
    for inside, _, count in sorted(parse_uid_map(_read("/proc/self/uid_map"))):
        if inside != n:
            break
        n += count
    return n


def subid_ranges() -> Optional[Tuple[List[str], List[str]]]:
    """(newuidmap args, newgidmap args) for this user, or None when there
    are no helpers or no ranges of at least 65536 ids."""
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        return None
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    uranges = parse_subid(_read("/etc/subuid"), name, uid)
    granges = parse_subid(_read("/etc/subgid"), name, uid)
    if not uranges or not granges or uranges[0][1] < _SUBID_MIN or granges[0][1] < _SUBID_MIN:
        return None
    return map_args(uid, uranges), map_args(gid, granges)


def reexec(argv: Sequence[str]) -> Optional[int]:
    """Run ``python -m bakery argv`` again in a user namespace with the
    subordinate ids, and return its exit code; None when that does not
    apply (root, already inside, turned off, or no ranges)."""
    if os.geteuid() == 0 or os.environ.get(ENV) in ("0", "1"):
        return None
    from .runc import find_runtime

    maps = subid_ranges()
    if maps is None or find_runtime("runc") is None:  # the namespace sandbox cannot nest ranges
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new user namespace, then bakery again as its root
        try:
            os.close(go_w)
            os.close(ready_r)
            if libc.unshare(CLONE_NEWUSER) != 0:
                os.write(ready_w, b"E" + os.strerror(ctypes.get_errno()).encode())
                os._exit(1)
            os.write(ready_w, b"R")
            os.close(ready_w)
            if os.read(go_r, 1) != b"G":
                os._exit(1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            with contextlib.suppress(OSError):
                os.setgroups([])
            # signals reach it through the parent; it dies with the parent
            os.setpgid(0, 0)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
            env = dict(os.environ, **{ENV: "1"})
            os.execve(sys.executable, [sys.executable, "-m", "bakery", *argv], env)
        except BaseException:
            pass
        os._exit(1)
    os.close(go_r)
    os.close(ready_w)
    try:
        msg = os.read(ready_r, 4096)
        if not msg.startswith(b"R"):
            raise BakeryError("cannot create a user namespace for rootless runs: "
                              + msg[1:].decode(errors="replace"),
                              hint=f"set {ENV}=0 for a single-id mapping")
        for tool, args in (("newuidmap", maps[0]), ("newgidmap", maps[1])):
            r = subprocess.run([tool, str(pid), *args], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise BakeryError(f"{tool} {pid} {' '.join(args)} failed: {r.stderr.strip()}",
                                  hint=f"check /etc/subuid and /etc/subgid, or set {ENV}=0 for a "
                                       "single-id mapping")
        os.write(go_w, b"G")
    except BaseException:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(go_w)
        os.close(ready_r)

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
