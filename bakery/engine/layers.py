"""Layers: filesystem changes as OCI tar diffs, and applying them.

A layer is an uncompressed tar of the changes from a lower filesystem to an
upper one, with OCI whiteouts: ``.wh.NAME`` deletes NAME, and
``DIR/.wh..wh..opq`` hides everything the lower layers had in DIR.

Two ways to get the changes:

* :func:`diff_overlay` reads an overlayfs upper directory, which *is* the
  change set (whiteouts there are 0:0 character devices, opaque directories
  carry the ``trusted.overlay.opaque`` xattr);
* :func:`diff_trees` compares a lower tree with a full upper copy (the
  copying fallback when overlayfs cannot be mounted), using
  :func:`snapshot_meta` taken right after the copy to tell changed files
  from untouched ones without reading their content.

Tars are deterministic: entries sorted by path, PAX format, no user/group
names, the files' own mtimes (or ``source_date_epoch`` when given, as
BuildKit's rewrite-timestamp does), hard links kept as links.

:func:`apply_layer` extracts a layer onto a directory, honouring whiteouts
and refusing entries that would escape the directory (``..``, absolute
names, or paths through symlinks).

Example::

    with open("layer.tar", "wb") as out:
        diff_overlay("/tmp/upper", out)
    with open("layer.tar", "rb") as src:
        apply_layer(src, "/tmp/rootfs")
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
import threading
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple

from bakery.errors import BakeryError

__all__ = ["apply_layer", "clamp_layer_times", "compressed_layer", "diff_overlay", "diff_trees", "snapshot_meta"]

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_OVERLAY_OPAQUE = "trusted.overlay.opaque"


# --------------------------------------------------------------------------
# Writing


#: (tar name, lstat of the file) -> the (uid, gid) to record (rootless runs:
#: host ids seen from the user namespace, see bakery.engine.sandbox.rootless)
OwnerFn = Callable[[str, os.stat_result], Tuple[int, int]]


class _Writer:
    def __init__(self, out: IO[bytes], source_date_epoch: Optional[int], owner: Optional[OwnerFn] = None):
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.epoch = source_date_epoch
        self.links: Dict[Tuple[int, int], str] = {}
        self.owner = owner

    def close(self) -> None:
        self.tar.close()

    def _info(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = self.owner(name, st) if self.owner is not None else (st.st_uid, st.st_gid)
        ti.uname = ti.gname = ""
        mtime = int(st.st_mtime)
        ti.mtime = min(mtime, self.epoch) if self.epoch is not None else mtime
        return ti

    def add(self, path: str, name: str) -> None:
        st = os.lstat(path)
        ti = self._info(name, st)
        xattrs = _xattrs(path)
        if xattrs:
            ti.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            self.tar.addfile(ti)
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(path)
            self.tar.addfile(ti)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                ti.type = tarfile.LNKTYPE
                ti.linkname = self.links[key]
                self.tar.addfile(ti)
                return
            if st.st_nlink > 1:
                self.links[key] = name
            ti.type = tarfile.REGTYPE
            ti.size = st.st_size
            with open(path, "rb") as fh:
                self.tar.addfile(ti, fh)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            self.tar.addfile(ti)
        # sockets are not representable in a layer; skipped as Docker does

    def whiteout(self, parent_name: str, base: str, st: Optional[os.stat_result] = None) -> None:
        name = f"{parent_name}/{WHITEOUT}{base}" if parent_name else WHITEOUT + base
        ti = tarfile.TarInfo(name)
        ti.mode = 0o644
        ti.uname = ti.gname = ""
        ti.mtime = 0 if self.epoch is None else self.epoch
        if st is not None:
            ti.mtime = int(st.st_mtime) if self.epoch is None else min(int(st.st_mtime), self.epoch)
        self.tar.addfile(ti)


def _xattrs(path: str) -> Dict[str, bytes]:
    out: Dict[str, bytes] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in sorted(names):
        if n.startswith("trusted.overlay.") or n.startswith("system.nfs4"):
            continue
        with contextlib.suppress(OSError):
            out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def _walk_sorted_from(d: str, rel: str) -> Iterator[Tuple[str, str]]:
    """(path, name) under d in tar order: sorted, parents before children."""
    for n in sorted(os.listdir(d)):
        path = os.path.join(d, n)
        name = f"{rel}/{n}"
        yield path, name
        if stat.S_ISDIR(os.lstat(path).st_mode):
            yield from _walk_sorted_from(path, name)


def diff_overlay(upper: str, out: IO[bytes], source_date_epoch: Optional[int] = None) -> None:
    """Write the layer an overlayfs upper directory holds."""
    w = _Writer(out, source_date_epoch)
    try:
        for path, name in _walk_sorted_from(upper, ""):
            name = name.lstrip("/")
            st = os.lstat(path)
            parent, base = os.path.split(name)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                w.whiteout(parent, base, st)
                continue
            w.add(path, name)
            if stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(OSError):
                    if os.getxattr(path, _OVERLAY_OPAQUE, follow_symlinks=False) == b"y":
                        w.whiteout(name, OPAQUE[len(WHITEOUT):], st)
    finally:
        w.close()


Meta = Dict[str, Tuple[int, int, int, int, int, int, int, str]]


def snapshot_meta(root: str) -> Meta:
    """Metadata of every path under root: (mode, uid, gid, size, mtime_ns,
    ctime_ns, inode, link target).  Taken right after copying a lower tree,
    it lets :func:`diff_trees` find changed files without reading them:
    any write changes ctime."""
    meta: Meta = {}
    for path, name in _walk_sorted_from(root, ""):
        st = os.lstat(path)
        link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
        meta[name.lstrip("/")] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                  st.st_ctime_ns, st.st_ino, link)
    return meta


def diff_trees(before: Meta, upper: str, out: IO[bytes], source_date_epoch: Optional[int] = None,
               owner: Optional[OwnerFn] = None) -> None:
    """Write the changes made to ``upper`` since ``before`` was taken of it
    (``owner`` gives the ids to record, default the files' own)."""
    entries: List[Tuple[List[str], str, Optional[str]]] = []  # (sort key, tar name, path or None)

    def whiteout(name: str) -> None:
        parent, base = os.path.split(name)
        wname = f"{parent}/{WHITEOUT}{base}" if parent else WHITEOUT + base
        entries.append((wname.split("/"), wname, None))

    seen = set()
    for path, name in _walk_sorted_from(upper, ""):
        name = name.lstrip("/")
        seen.add(name)
        st = os.lstat(path)
        old = before.get(name)
        link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
        now = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
               st.st_ino, link)
        if old is not None and stat.S_ISDIR(old[0]) and not stat.S_ISDIR(st.st_mode):
            whiteout(name)  # a directory replaced by something else: hide the old one
        if old == now:
            continue
        if stat.S_ISDIR(st.st_mode) and old is not None and stat.S_ISDIR(old[0]) and old[:5] == now[:5]:
            continue  # only ctime changed (children were added/removed): they speak for themselves
        entries.append((name.split("/"), name, path))
    gone_dirs: List[str] = []
    for name in sorted(before):
        if name in seen or any(name.startswith(d + "/") for d in gone_dirs):
            continue
        whiteout(name)
        if stat.S_ISDIR(before[name][0]):
            gone_dirs.append(name)
    entries.sort(key=lambda e: e[0])
    w = _Writer(out, source_date_epoch, owner)
    try:
        for _, tar_name, src_path in entries:
            if src_path is None:
                parent, base = os.path.split(tar_name)
                w.whiteout(parent, base[len(WHITEOUT):])
            else:
                w.add(src_path, tar_name)
    finally:
        w.close()


# --------------------------------------------------------------------------
# Applying


def _safe_join(root: str, name: str) -> str:
    """root/name, refusing names that leave root lexically or through a
    symlink in a parent component."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise BakeryError(f"invalid layer entry {name!r}: it leaves the root filesystem")
    cur = root
    for p in parts[:-1]:
        cur = os.path.join(cur, p)
        if os.path.islink(cur):
            raise BakeryError(f"invalid layer entry {name!r}: a parent is a symlink")
    return os.path.join(root, *parts) if parts else root


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def apply_layer(src: IO[bytes], root: str, overlay: bool = False) -> None:
    """Extract a layer tar onto ``root`` (which holds the lower layers).

    With ``overlay``, ``root`` is an empty directory that becomes an
    overlayfs lower layer: whiteouts are written the way overlayfs reads
    them (0:0 character devices, ``trusted.overlay.opaque`` on directories)
    instead of being applied."""
    root = os.path.abspath(root)
    dir_times: List[Tuple[str, float]] = []
    # whiteouts hide only what lower layers had (OCI image spec), never an
    # entry of this same layer, whatever the order of the tar
    added: set = set()
    # not root: a directory without owner write permission (0555...) gets
    # its mode after its entries are extracted, or they could not be
    dir_modes: Dict[str, int] = {}
    with tarfile.open(fileobj=src, mode="r|*") as tar:
        for ti in tar:
            name = ti.name.lstrip("/")
            if name in ("", "."):
                continue
            parent, base = os.path.split(name)
            if overlay and base.startswith(WHITEOUT):
                if base == OPAQUE:
                    d = _safe_join(root, parent) if parent else root
                    os.makedirs(d, exist_ok=True)
                    os.setxattr(d, _OVERLAY_OPAQUE, b"y")
                else:
                    dest = _safe_join(root, os.path.join(parent, base[len(WHITEOUT):]))
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    _remove(dest)
                    os.mknod(dest, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                continue
            if base == OPAQUE:
                d = _safe_join(root, parent) if parent else root
                if os.path.isdir(d) and not os.path.islink(d):
                    for child in os.listdir(d):
                        if (f"{parent}/{child}" if parent else child) not in added:
                            _remove(os.path.join(d, child))
                continue
            if base.startswith(WHITEOUT):
                hidden = os.path.join(parent, base[len(WHITEOUT):])
                if hidden not in added:
                    _remove(_safe_join(root, hidden))
                continue
            added.add(name.rstrip("/"))
            dest = _safe_join(root, name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            existing = None
            with contextlib.suppress(FileNotFoundError):
                existing = os.lstat(dest)
            if existing is not None and not (ti.isdir() and stat.S_ISDIR(existing.st_mode)):
                _remove(dest)
            if ti.isdir():
                if existing is None or not stat.S_ISDIR(existing.st_mode):
                    os.mkdir(dest, 0o700)
                dir_times.append((dest, ti.mtime))
            elif ti.isreg():
                f = tar.extractfile(ti)
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    if f is not None:
                        while True:
                            chunk = f.read(1 << 20)
                            if not chunk:
                                break
                            out.write(chunk)
            elif ti.issym():
                os.symlink(ti.linkname, dest)
            elif ti.islnk():
                target = _safe_join(root, ti.linkname.lstrip("/"))
                os.link(target, dest)
                continue
            elif ti.ischr() or ti.isblk():
                kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
                try:
                    os.mknod(dest, kind | 0o600, os.makedev(ti.devmajor, ti.devminor))
                except PermissionError:
                    if os.geteuid() == 0 and not _in_user_namespace():
                        raise
                    continue  # not root: device nodes cannot be made (containerd skips them too)
            elif ti.isfifo():
                os.mkfifo(dest, 0o600)
            else:
                continue
            _set_meta(dest, ti)
            if ti.isdir() and os.geteuid() != 0 and ti.mode & 0o700 != 0o700:
                dir_modes[dest] = ti.mode
                os.chmod(dest, ti.mode | 0o700)
    for path, mtime in reversed(dir_times):
        if path in dir_modes:
            os.chmod(path, dir_modes[path])
        with contextlib.suppress(OSError):
            os.utime(path, (mtime, mtime))


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _set_meta(path: str, ti: tarfile.TarInfo) -> None:
    try:
        os.lchown(path, ti.uid, ti.gid)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EINVAL):
            raise
    if not ti.issym():
        os.chmod(path, ti.mode)
    for k, v in (ti.pax_headers or {}).items():
        if k.startswith("SCHILY.xattr."):
            with contextlib.suppress(OSError):
                os.setxattr(path, k[len("SCHILY.xattr."):], v.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False)
    with contextlib.suppress(OSError, NotImplementedError):
        os.utime(path, (ti.mtime, ti.mtime), follow_symlinks=False)


def compressed_layer(store: Any, blobs: Any, diff_id: str, compression: str = "gzip",
                     level: Optional[int] = None, epoch: Optional[int] = None) -> Any:
    """The compressed form of the layer ``diff_id`` (an uncompressed tar in
    ``store``) in the OCI blob store ``blobs``: compressed once, then
    remembered in ``store/compressed/`` so a warm run does not compress
    again (the memo is used only while its blob is in ``blobs`` with the
    recorded size).  Thread-safe: concurrent calls for the same layer
    compress it once (the others wait for it and read the memo).

    With ``epoch`` (``rewrite-timestamp=true`` and ``SOURCE_DATE_EPOCH``),
    file times later than it are clamped to it first
    (:func:`clamp_layer_times`); a layer with nothing later is kept byte
    for byte.  The returned Layer's diff_id is then the rewritten tar's.
    Records in the store keep the original layers."""


    name = (f"{diff_id.split(':', 1)[-1]}-{compression}-{'' if level is None else level}"
            f"-{'' if epoch is None else epoch}.json")
    memo = os.path.join(store.root, "compressed", name)
    # one thread compresses a given layer; the others asking for it wait
    # and then find the memo (blobs are committed atomically, so even two
    # processes compressing the same layer just write the same blob twice)
    with _memo_lock(memo):
        return _compressed_layer(store, blobs, diff_id, compression, level, epoch, memo)


_memo_locks: Dict[str, threading.Lock] = {}
_memo_locks_guard = threading.Lock()


def _memo_lock(memo: str) -> threading.Lock:
    with _memo_locks_guard:
        return _memo_locks.setdefault(memo, threading.Lock())


def _compressed_layer(store: Any, blobs: Any, diff_id: str, compression: str, level: Optional[int],
                      epoch: Optional[int], memo: str) -> Any:
    import json

    from bakery.oci.image import Layer, add_layer

    try:
        with open(memo, "rb") as fh:
            doc = json.load(fh)
        if (doc.get("source") == diff_id and blobs.has(doc["digest"])
                and os.stat(blobs.path(doc["digest"])).st_size == doc["size"]):
            return Layer(doc["digest"], int(doc["size"]), doc["diff_id"], compression)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    src = store.blob_path(diff_id)
    tmpdir = store.tmpdir("clamp-") if epoch is not None else None
    try:
        clamped = os.path.join(tmpdir, "layer.tar") if tmpdir is not None else ""
        if clamped and epoch is not None and clamp_layer_times(src, clamped, epoch):
            layer = add_layer(blobs, clamped, compression, level)
        else:
            layer = add_layer(blobs, src, compression, level)
            if layer.diff_id != diff_id:  # the store's blob is named by its digest: never trust a mismatch
                raise BakeryError(f"the layer {diff_id} in the store is corrupt (it hashes to "
                                  f"{layer.diff_id})", hint="bakery cache prune --all, then rebuild")
    finally:
        if tmpdir is not None:
            _remove_tree(tmpdir)
    os.makedirs(os.path.dirname(memo), exist_ok=True)
    store._write_json(memo, {"source": diff_id, "diff_id": layer.diff_id, "digest": layer.digest,
                             "size": layer.size})
    return layer


_TIME_KEYS = ("mtime", "atime", "ctime")


def clamp_layer_times(src: str, dest: str, epoch: int) -> bool:
    """Copy the layer tar ``src`` to ``dest`` with every entry's mtime later
    than ``epoch`` set to ``epoch`` (and its PAX atime/ctime dropped), as
    BuildKit's ``rewrite-timestamp`` does; False (and no ``dest``) when
    no entry is later than ``epoch``."""
    with tarfile.open(src, "r:") as tin:
        members = tin.getmembers()
        if not any(m.mtime > epoch for m in members):
            return False
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tout:
            for m in members:
                if m.mtime > epoch:
                    m.mtime = epoch
                    m.pax_headers = {k: v for k, v in m.pax_headers.items() if k not in _TIME_KEYS}
                tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
    return True


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
