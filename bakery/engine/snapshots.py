"""Root filesystems built from layers, and the layer a step's changes make.

A step that changes files (RUN, COPY...) gets a writable root filesystem
made of its input's layers, changes it, and commits the difference as a new
layer (an uncompressed tar blob in the store; its digest is the diff_id).

Two modes, chosen automatically (``bakery info`` reports which, and why):

* ``overlay``: each layer is extracted once into ``store/layers/<diff_id>``
  (whiteouts in overlayfs form) and a step mounts
  ``lowerdir=layerN:...:layer1,upperdir=U,workdir=W``; the upper directory
  is the diff.  Needs root (or a user namespace) and overlayfs.
* ``copy``: the layers are applied into a fresh directory, its metadata is
  recorded, the step runs, and the trees are compared.  Works anywhere.

Not as root (rootless runs, bakery.engine.sandbox.rootless) the mode is
``copy`` and the tree belongs to the invoking user, who is root in the
step's user namespace.  The layer then records owners as the step saw them
(the invoking user is 0:0), except that a changed file that existed in the
lower layers and still belongs to the invoking user keeps the owner its
layer gave it (read from the lower layers' tar headers).

Example::

    snaps = Snapshotter(store)
    with snaps.writable([]) as fs:            # an empty (scratch) root
        open(os.path.join(fs.path, "hello"), "w").write("hi")
        layer = fs.commit()                   # Layer(diff_id='sha256:...', size=...)
    with snaps.writable([layer.diff_id]) as fs:
        assert os.path.exists(os.path.join(fs.path, "hello"))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from typing import IO, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from bakery.engine import layers
from bakery.engine.sandbox.rootless import IdMap, current_idmap, layer_owner
from bakery.engine.sandbox.userns import in_user_namespace
from bakery.engine.store import Store
from bakery.errors import BakeryError

__all__ = ["Layer", "Snapshotter", "Writable", "detect_mode"]


@dataclass(frozen=True)
class Layer:
    diff_id: str  # sha256 of the uncompressed tar (the store blob's digest)
    size: int


def detect_mode(scratch: str) -> Tuple[str, str]:
    """("overlay" | "copy", why)."""
    if os.environ.get("BAKERY_SNAPSHOTTER") in ("overlay", "copy"):
        return os.environ["BAKERY_SNAPSHOTTER"], "chosen by BAKERY_SNAPSHOTTER"
    if os.geteuid() != 0:
        return "copy", "not running as root (rootless overlayfs is not used yet)"
    if in_user_namespace():
        return "copy", "in a user namespace (overlayfs' trusted.* xattrs need the host's root)"
    try:
        with open("/proc/filesystems") as fh:
            if "overlay" not in fh.read():
                return "copy", "the kernel has no overlayfs"
    except OSError:
        return "copy", "cannot read /proc/filesystems"
    # a private probe directory: two processes sharing a store must not
    # remove each other's probe while it is mounted
    os.makedirs(scratch, exist_ok=True)
    d = tempfile.mkdtemp(prefix="probe-", dir=scratch)
    try:
        for sub in ("l", "u", "w", "m"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        opts = f"lowerdir={d}/l,upperdir={d}/u,workdir={d}/w"
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, f"{d}/m"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return "copy", f"overlayfs cannot be mounted here ({r.stderr.strip() or r.returncode})"
        subprocess.run(["umount", f"{d}/m"], check=False)
        return "overlay", "root with overlayfs available"
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Writable:
    """A writable root filesystem over some layers (see Snapshotter.writable)."""

    def __init__(self, snaps: Snapshotter, lower: Sequence[str]):
        self.snaps = snaps
        self.lower = list(lower)
        self.work = snaps.store.tmpdir("rootfs-")
        self.path = os.path.join(self.work, "rootfs")
        self.mounted = False
        self.meta: Optional[layers.Meta] = None
        self.owners: Dict[str, Tuple[int, int]] = {}  # rootless: the lower layers' owners
        self.committed: Optional[Optional[Layer]] = None

    def _setup(self) -> None:
        if self.snaps.mode == "overlay":
            upper = os.path.join(self.work, "upper")
            for d in (upper, os.path.join(self.work, "ovwork"), self.path):
                os.makedirs(d)
            if not self.lower:
                lowers = [os.path.join(self.work, "empty")]
                os.makedirs(lowers[0])
            else:
                lowers = [self.snaps.layer_dir(d) for d in reversed(self.lower)]
            opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={self.work}/ovwork"
            if len(opts) > 3800:
                # the mount option page is limited: flatten into one lower dir
                flat = os.path.join(self.work, "flat")
                self.snaps.materialize(self.lower, flat)
                opts = f"lowerdir={flat},upperdir={upper},workdir={self.work}/ovwork"
            r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, self.path],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise BakeryError(f"mounting the root filesystem failed: {r.stderr.strip()}",
                                  hint="set BAKERY_SNAPSHOTTER=copy to use the copying snapshotter")
            self.mounted = True
        else:
            self.snaps.materialize(self.lower, self.path)
            self.meta = layers.snapshot_meta(self.path)
            if self.snaps.idmap is not None:
                self.owners = self.snaps.layer_owners(self.lower)

    def _unmount(self) -> None:
        if self.mounted:
            r = subprocess.run(["umount", self.path], capture_output=True, text=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", self.path], capture_output=True)
            self.mounted = False

    def commit(self) -> Optional[Layer]:
        """The changes as a layer in the store (None when nothing changed)."""
        if self.committed is not None:
            return self.committed
        tar_path = os.path.join(self.work, "layer.tar")
        with open(tar_path, "wb") as out:
            if self.snaps.mode == "overlay":
                self._unmount()
                layers.diff_overlay(os.path.join(self.work, "upper"), out)
            else:
                assert self.meta is not None
                idmap = self.snaps.idmap
                owner = None
                if idmap is not None:
                    def owner(name: str, st: os.stat_result, idmap: IdMap = idmap) -> Tuple[int, int]:
                        return layer_owner(st.st_uid, st.st_gid, idmap, self.owners.get(name))
                layers.diff_trees(self.meta, self.path, out, owner=owner)
        if os.path.getsize(tar_path) <= 10240:  # an empty tar is all zero blocks
            with open(tar_path, "rb") as fh:
                if not fh.read().strip(b"\0"):
                    self.committed = None
                    return None
        info = self.snaps.store.put_file(tar_path)
        self.committed = Layer(info.digest, info.size)
        return self.committed

    def close(self) -> None:
        self._unmount()
        _rmtree(self.work)


def _rmtree(path: str) -> None:
    def onerror(func, p, exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            func(p)

    shutil.rmtree(path, onerror=onerror)


class Snapshotter:
    def __init__(self, store: Store, mode: Optional[str] = None):
        self.store = store
        if mode is None:
            mode, self.why = detect_mode(os.path.join(store.root, "tmp"))
        else:
            self.why = "chosen by the caller"
        self.mode = mode
        # not root: the step's view of owners (the re-executed namespace of
        # userns.py is root for this purpose: chown works there)
        self.idmap: Optional[IdMap] = current_idmap() if mode == "copy" and os.geteuid() != 0 else None
        os.makedirs(os.path.join(store.root, "layers"), exist_ok=True)

    def layer_dir(self, diff_id: str) -> str:
        """The layer extracted for overlayfs, once (atomic rename into place)."""
        dest = os.path.join(self.store.root, "layers", diff_id.split(":", 1)[1])
        if os.path.isdir(dest):
            return dest
        tmp = self.store.tmpdir("layer-")
        try:
            with self.store.open_blob(diff_id) as src:
                layers.apply_layer(src, tmp, overlay=True)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not os.path.isdir(dest):
                    raise
                _rmtree(tmp)  # another process won the race with the same content
        except BaseException:
            if os.path.exists(tmp):
                _rmtree(tmp)
            raise
        return dest

    def layer_owners(self, diff_ids: Sequence[str]) -> Dict[str, Tuple[int, int]]:
        """path -> (uid, gid) the layers (bottom first) give the paths they
        leave, from their tar headers."""
        return owners_of_layers(self.store.open_blob(d) for d in diff_ids)

    def materialize(self, diff_ids: Sequence[str], dest: str) -> None:
        """Apply the layers, bottom first, into a new directory ``dest``."""
        os.makedirs(dest, exist_ok=True)
        for d in diff_ids:
            with self.store.open_blob(d) as src:
                layers.apply_layer(src, dest)

    @contextlib.contextmanager
    def writable(self, lower: Sequence[str]) -> Iterator[Writable]:
        """A writable rootfs over ``lower`` (diff_ids, bottom first); always
        unmounted and removed on exit, whatever happens."""
        w = Writable(self, lower)
        try:
            w._setup()
            yield w
        finally:
            w.close()

    def chain(self, base: Sequence[str], layer: Optional[Layer]) -> List[str]:
        return [*base, layer.diff_id] if layer is not None else list(base)


def owners_of_layers(blobs: Iterable[IO[bytes]]) -> Dict[str, Tuple[int, int]]:
    """See :meth:`Snapshotter.layer_owners`; ``blobs`` yields open tar streams."""
    owners: Dict[str, Tuple[int, int]] = {}

    def drop_under(prefix: str) -> None:
        for k in [k for k in owners if k.startswith(prefix)]:
            del owners[k]

    for src in blobs:
        with src, tarfile.open(fileobj=src, mode="r|*") as tar:
            added: Dict[str, Tuple[int, int]] = {}
            hidden: List[str] = []
            for ti in tar:
                name = ti.name.lstrip("/").rstrip("/")
                if name.startswith("./"):
                    name = name[2:]
                parent, base = os.path.split(name)
                if base == layers.OPAQUE:
                    hidden.append(parent + "/" if parent else "")
                elif base.startswith(layers.WHITEOUT):
                    gone = os.path.join(parent, base[len(layers.WHITEOUT):])
                    hidden.extend([gone, gone + "/"])
                elif name:
                    added[name] = (ti.uid, ti.gid)
            for h in hidden:  # whiteouts hide the lower layers' entries only
                if h.endswith("/") or h == "":
                    drop_under(h)
                else:
                    owners.pop(h, None)
            owners.update(added)
    return owners
