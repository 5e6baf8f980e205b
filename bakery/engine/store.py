"""The content store: one shared, persistent, deduplicating cache.

Layout under the store root (``$BAKERY_CACHE_DIR/store`` by default, see
:func:`default_root`)::

    blobs/sha256/<hex>     content-addressed blobs (uncompressed layer tars)
    layers/<hex>/          layers extracted for overlayfs (rebuilt from blobs)
    oci/                   compressed layers, configs and manifests (images)
    records/<hex>.json     cache records: a step's cache key → its result
    mounts/<id>/           RUN --mount=type=cache directories (never in a key)
    tmp/                   work in progress (temp files, unpacked trees)
    locks/                 advisory file locks (per key, and the GC lock)

Every write is atomic: data goes to a temp file in ``tmp/`` (same file
system), is flushed and fsynced, its digest checked, then renamed into place.
A build killed at any moment leaves at most orphan temp files, which
:meth:`Store.gc` removes; nothing half-written is ever under ``blobs/`` or
``records/``.  A record is trusted only if every blob it names exists with
the recorded size (and, with ``verify=True``, the recorded digest).

Two processes may share a store: blob writes race harmlessly (same content,
atomic rename), records are replaced atomically, GC takes an exclusive lock
that builders hold shared while they run.

Example::

    store = Store("/tmp/s")
    d = store.put_bytes(b"hello")            # 'sha256:2cf24d...'
    store.put_record("sha256:k1", {"layers": [d]}, blobs=[d])
    store.get_record("sha256:k1")["layers"]  # [d]
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from bakery.errors import BakeryError

__all__ = ["BlobInfo", "Store", "default_root", "parse_duration", "parse_size"]

CHUNK = 1 << 20


def default_root() -> str:
    from bakery.bakefile.files import cache_dir

    return os.path.join(cache_dir(), "store")


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"invalid digest {digest!r}")
    return hexpart


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int


class Store:
    """A content store rooted at ``root`` (created on first use)."""

    def __init__(self, root: Optional[str] = None):
        self.root = os.path.abspath(root or default_root())
        for d in ("blobs/sha256", "records", "mounts", "tmp", "locks"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self._session: Optional[Tuple[str, int]] = None  # (tmp/<name>, fd of its held lock)
        self._session_lock = threading.Lock()

    # -- sessions: this process's temporary files ----------------------------

    def session_dir(self) -> str:
        """``tmp/s<pid>-<random>/``: where this process's work in progress
        goes, created on first use.  The process holds an exclusive flock on
        ``locks/session-<name>`` while it lives, so :meth:`recover` can tell
        the leftovers of a killed process (lock free) from a live one's.
        Removed at interpreter exit (:meth:`end_session`)."""
        with self._session_lock:
            if self._session is not None and os.path.isdir(self._session[0]):
                return self._session[0]
            name = f"s{os.getpid()}-{secrets.token_hex(4)}"
            fd = os.open(os.path.join(self.root, "locks", f"session-{name}"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = os.path.join(self.root, "tmp", name)
            os.makedirs(path, exist_ok=True)
            self._session = (path, fd)
            atexit.register(self.end_session)
            return path

    def end_session(self) -> None:
        """Remove this process's temporary files and release its lock."""
        with self._session_lock:
            if self._session is None:
                return
            path, fd = self._session
            self._session = None
            _unmount_under(path)
            _remove(path)
            lock = os.path.join(self.root, "locks", "session-" + os.path.basename(path))
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)

    def recover(self) -> int:
        """Clean up after processes that died without doing it themselves
        (SIGKILL, power loss): their mounts under ``tmp/`` are undone and
        their temporary files removed.  Live processes' sessions (their lock
        is held) are left alone.  Returns the number of sessions cleaned."""
        tdir = os.path.join(self.root, "tmp")
        mine = self._session[0] if self._session is not None else None
        cleaned = 0
        for name in sorted(os.listdir(tdir)):
            path = os.path.join(tdir, name)
            if not _SESSION.fullmatch(name) or path == mine:
                continue
            lock = os.path.join(self.root, "locks", f"session-{name}")
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its process is alive
                _unmount_under(path)
                _remove(path)
                with contextlib.suppress(OSError):
                    os.unlink(lock)
                cleaned += 1
            finally:
                os.close(fd)
        return cleaned

    # -- paths -----------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", _hex(digest))

    def record_path(self, key: str) -> str:
        return os.path.join(self.root, "records", _hex(key) + ".json")

    def tmpdir(self, prefix: str = "work-") -> str:
        """A private directory under tmp/ (the caller removes it)."""
        return tempfile.mkdtemp(prefix=prefix, dir=self.session_dir())

    # -- blobs -----------------------------------------------------------

    def has_blob(self, digest: str, size: Optional[int] = None) -> bool:
        try:
            st = os.stat(self.blob_path(digest))
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def put_stream(self, src: Any, expected: Optional[str] = None) -> BlobInfo:
        """Copy ``src`` into the store; verify ``expected`` when given."""
        fd, tmp = tempfile.mkstemp(prefix="blob-", dir=self.session_dir())
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != expected:
                raise BakeryError(
                    f"content digest mismatch: expected {expected}, got {digest}",
                    hint="the source sent different bytes than it announced; retry, or check the source",
                )
            dest = self.blob_path(digest)
            if os.path.exists(dest):
                os.unlink(tmp)  # already there: same content by construction
            else:
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
            return BlobInfo(digest, size)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def put_bytes(self, data: bytes, expected: Optional[str] = None) -> str:
        import io

        return self.put_stream(io.BytesIO(data), expected).digest

    def put_file(self, path: str, expected: Optional[str] = None) -> BlobInfo:
        with open(path, "rb") as fh:
            return self.put_stream(fh, expected)

    def open_blob(self, digest: str) -> IO[bytes]:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise BakeryError(f"blob {digest} is missing from the store",
                              hint="run `bakery cache prune` to drop records that point at it") from None

    def read_blob(self, digest: str) -> bytes:
        with self.open_blob(digest) as fh:
            return fh.read()

    def verify_blob(self, digest: str) -> bool:
        h = hashlib.sha256()
        try:
            with open(self.blob_path(digest), "rb") as fh:
                for chunk in iter(lambda: fh.read(CHUNK), b""):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        return "sha256:" + h.hexdigest() == digest

    # -- records ---------------------------------------------------------

    def put_record(self, key: str, result: Mapping[str, Any], blobs: Sequence[str] = (),
                   meta: Optional[Mapping[str, Any]] = None) -> None:
        """Record ``key`` → ``result`` (JSON); ``blobs`` are the digests the
        result needs (they must already be in the store)."""
        sizes = {}
        for d in blobs:
            try:
                sizes[d] = os.stat(self.blob_path(d)).st_size
            except FileNotFoundError:
                raise BakeryError(f"cannot record {key}: blob {d} is not in the store") from None
        now = time.time()
        doc = {"key": key, "result": dict(result), "blobs": sizes, "created": now,
               "last_used": now, "meta": dict(meta or {})}
        self._write_json(self.record_path(key), doc)

    def get_record(self, key: str, verify: bool = False, touch: bool = True) -> Optional[Dict[str, Any]]:
        """The result recorded for ``key``, or None if absent or untrustworthy
        (a blob missing, of the wrong size, or with ``verify`` of the wrong
        digest).  Marks the record as used (for LRU pruning) unless ``touch``
        is False (looking, as ``bakery plan`` does, is not using)."""
        doc = self._read_record(key)
        if doc is None:
            return None
        for d, size in doc.get("blobs", {}).items():
            if not self.has_blob(d, size) or (verify and not self.verify_blob(d)):
                return None
        if touch:
            with contextlib.suppress(OSError):
                os.utime(self.record_path(key))  # last use, cheaply: the file's mtime
        return doc["result"]

    def _read_record(self, key: str) -> Optional[Dict[str, Any]]:
        try:
            with open(self.record_path(key), "rb") as fh:
                doc = json.load(fh)
        except (FileNotFoundError, ValueError, OSError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != key or "result" not in doc:
            return None
        return doc

    def _write_json(self, path: str, doc: Any) -> None:
        fd, tmp = tempfile.mkstemp(prefix="rec-", dir=self.session_dir())
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def records(self) -> Iterator[Tuple[str, Dict[str, Any], float]]:
        """(key, record, last used time) for every readable record."""
        rdir = os.path.join(self.root, "records")
        for name in os.listdir(rdir):
            if not name.endswith(".json"):
                continue
            path = os.path.join(rdir, name)
            try:
                st = os.stat(path)
                with open(path, "rb") as fh:
                    doc = json.load(fh)
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and "key" in doc:
                yield doc["key"], doc, st.st_mtime

    def drop_record(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.record_path(key))

    # -- tag resolutions ---------------------------------------------------

    def _resolution_path(self, name: str) -> str:
        return os.path.join(self.root, "resolved", hashlib.sha256(name.encode()).hexdigest() + ".json")

    def get_resolution(self, name: str) -> Optional[str]:
        """The manifest digest ``name`` (an image reference and platform)
        resolved to last time, or None (``--pull`` ignores it)."""
        try:
            with open(self._resolution_path(name), "rb") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("name") != name:
            return None
        digest = doc.get("digest")
        try:
            _hex(digest if isinstance(digest, str) else "")
        except ValueError:
            return None
        return str(digest)

    def put_resolution(self, name: str, digest: str) -> None:
        _hex(digest)
        os.makedirs(os.path.join(self.root, "resolved"), exist_ok=True)
        self._write_json(self._resolution_path(name),
                         {"name": name, "digest": digest, "resolved": time.time()})

    # -- locks -----------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, shared: bool = False) -> Iterator[None]:
        """An advisory lock between processes (flock on locks/<name>)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = os.path.join(self.root, "locks", safe)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- cache mounts ----------------------------------------------------

    def cache_mount(self, cache_id: str) -> str:
        """The directory of RUN --mount=type=cache,id=ID (created empty)."""
        h = hashlib.sha256(cache_id.encode()).hexdigest()[:32]
        path = os.path.join(self.root, "mounts", h)
        os.makedirs(path, exist_ok=True)
        return path

    @contextlib.contextmanager
    def cache_mount_lease(self, cache_id: str, sharing: str = "shared", uid: Optional[int] = None,
                          gid: Optional[int] = None, mode: Optional[int] = None,
                          cancel: Optional[Any] = None,
                          seed: Optional[Callable[[str], None]] = None) -> Iterator[str]:
        """The directory of a cache mount, held for one step (between
        processes too, through flock on locks/cache-<hash>[-N]):

        * ``shared``: the one directory, used by any number of steps at once;
        * ``locked``: the one directory, one step at a time (others wait);
        * ``private``: the one directory when no other step holds it, else
          another instance (``<hash>-1``, ``-2``..., kept for later runs).

        A new directory gets ``uid``/``gid`` (default 0, not changed when
        not root) and ``mode`` (default 0755), as BuildKit makes it, or is
        filled by ``seed(path)`` (``from=``: the caller keys the id by the
        source too).
        Waiting stops with :class:`BakeryError` when ``cancel`` is set."""
        if sharing not in ("shared", "locked", "private"):
            raise BakeryError(f"invalid cache sharing {sharing!r}", hint="shared, private or locked")
        h = hashlib.sha256(cache_id.encode()).hexdigest()[:32]
        op = fcntl.LOCK_SH if sharing == "shared" else fcntl.LOCK_EX
        n = 0
        while True:
            name = h if n == 0 else f"{h}-{n}"
            fd = self._cache_lock(name, op, sharing != "private", cache_id, cancel)
            if fd is not None:
                break
            n += 1
        try:
            path = os.path.join(self.root, "mounts", name)
            if not os.path.isdir(path):
                tmp = tempfile.mkdtemp(prefix="cache-", dir=os.path.join(self.root, "tmp"))
                try:
                    if seed is not None:
                        seed(tmp)
                    else:
                        os.chmod(tmp, 0o755 if mode is None else mode)
                        if os.geteuid() == 0:
                            os.chown(tmp, uid or 0, gid or 0)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                try:
                    os.rename(tmp, path)
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)  # made meanwhile by a shared user
            yield path
        finally:
            os.close(fd)  # closing releases the lock

    def _cache_lock(self, name: str, op: int, wait: bool, cache_id: str, cancel: Optional[Any]) -> Optional[int]:
        """An fd holding flock ``op`` on locks/cache-<name>; None when taken
        and not ``wait``."""
        fd = os.open(os.path.join(self.root, "locks", "cache-" + name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, op | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if not wait:
                        os.close(fd)
                        return None
                    if cancel is not None and cancel.is_set():
                        raise BakeryError(f"cancelled while waiting for cache mount {cache_id!r}") from None
                    time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise

    # -- accounting ------------------------------------------------------

    def du(self) -> Dict[str, int]:
        """Bytes used by kind: blobs, records, mounts, tmp."""
        out = {}
        for kind in ("blobs", "records", "layers", "oci", "mounts", "tmp"):
            out[kind] = _tree_size(os.path.join(self.root, kind))
        return out

    def du_by_target(self) -> Dict[str, Tuple[int, int]]:
        """Target name → (bytes of the blobs its steps' records hold, number
        of records), from the targets recorded with each step (``""``: steps
        recorded without any, e.g. imported from a cache).  A blob several
        targets share counts for each of them."""
        blobs: Dict[str, Dict[str, int]] = {}
        counts: Dict[str, int] = {}
        for _, doc, _ in self.records():
            names = (doc.get("meta") or {}).get("targets") or [""]
            for t in names:
                blobs.setdefault(t, {}).update(doc.get("blobs", {}))
                counts[t] = counts.get(t, 0) + 1
        return {t: (sum(b.values()), counts[t]) for t, b in sorted(blobs.items())}

    def gc(self) -> Tuple[int, int]:
        """Delete blobs no record needs and stale temp files; (files, bytes)."""
        with self.lock("gc"):
            needed = set()
            for _, doc, _ in self.records():
                needed.update(doc.get("blobs", {}))
                needed.update(doc.get("meta", {}).get("keep", []))
            count = freed = 0
            bdir = os.path.join(self.root, "blobs", "sha256")
            for name in os.listdir(bdir):
                if "sha256:" + name not in needed:
                    path = os.path.join(bdir, name)
                    with contextlib.suppress(OSError):
                        size = os.lstat(path).st_size
                        os.unlink(path)
                        count += 1
                        freed += size
            # extracted layers (overlay lower dirs) of blobs that are gone
            ldir = os.path.join(self.root, "layers")
            if os.path.isdir(ldir):
                for name in os.listdir(ldir):
                    if not os.path.exists(os.path.join(bdir, name)):
                        path = os.path.join(ldir, name)
                        freed += _tree_size(path)
                        _remove(path)
                        count += 1
            tdir = os.path.join(self.root, "tmp")
            cutoff = time.time() - 3600
            self.recover()
            for name in os.listdir(tdir):
                path = os.path.join(tdir, name)
                if _SESSION.fullmatch(name):
                    continue  # sessions: recover() decides by their lock, not their age
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_mtime < cutoff:
                        freed += _tree_size(path)
                        _remove(path)
                        count += 1
            return count, freed

    def prune(self, keep_storage: Optional[int] = None, older_than: Optional[float] = None,
              everything: bool = False) -> Tuple[int, int]:
        """Drop records (least recently used first) then collect garbage.

        ``everything``: all records and cache mounts; ``older_than``: records
        unused for that many seconds; ``keep_storage``: drop LRU records until
        the blobs fit in that many bytes.  Returns (records dropped, bytes freed).
        """
        with self.lock("gc"):
            recs = sorted(self.records(), key=lambda r: r[2])
            dropped = 0
            now = time.time()
            if everything:
                for key, _, _ in recs:
                    self.drop_record(key)
                    dropped += 1
                recs = []
                for sub in ("mounts", "oci", "resolved", "compressed"):
                    d = os.path.join(self.root, sub)
                    for name in os.listdir(d) if os.path.isdir(d) else []:
                        _remove(os.path.join(d, name))
            if older_than is not None:
                keep = []
                for key, doc, used in recs:
                    if now - used > older_than:
                        self.drop_record(key)
                        dropped += 1
                    else:
                        keep.append((key, doc, used))
                recs = keep
            if keep_storage is not None:
                sizes: Dict[str, int] = {}
                for _, doc, _ in recs:
                    sizes.update(doc.get("blobs", {}))
                total = sum(sizes.values())
                refs: Dict[str, int] = {}
                for _, doc, _ in recs:
                    for d in doc.get("blobs", {}):
                        refs[d] = refs.get(d, 0) + 1
                for key, doc, _ in recs:
                    if total <= keep_storage:
                        break
                    self.drop_record(key)
                    dropped += 1
                    for d, size in doc.get("blobs", {}).items():
                        refs[d] -= 1
                        if refs[d] == 0:
                            total -= size
        _, freed = self.gc()
        return dropped, freed


_SESSION = re.compile(r"s[0-9]+-[0-9a-f]{8}")


def _unmount_under(path: str) -> None:
    """Unmount every mount point at or below ``path`` (deepest first); a
    busy one is detached lazily."""
    prefix = os.path.realpath(path)
    points = []
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 2:
                    continue
                mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1])
                if mp == prefix or mp.startswith(prefix + "/"):
                    points.append(mp)
    except OSError:
        return
    import subprocess

    for mp in sorted(set(points), key=len, reverse=True):
        r = subprocess.run(["umount", mp], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", mp], capture_output=True)


def _tree_size(path: str) -> int:
    total = 0
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, n)).st_size
    return total


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        def onerror(func: Any, p: str, exc: Any) -> None:
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(p), 0o700)
                os.chmod(p, 0o700)
                func(p)
        shutil.rmtree(path, onerror=onerror)
    else:
        try:
            os.unlink(path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000**2,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30, "t": 1 << 40, "tb": 1000**4,
          "tib": 1 << 40}


def parse_size(text: str) -> int:
    """``10GB``, ``512MiB``, ``1g``, ``1000`` → bytes."""
    import re

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise BakeryError(f"invalid size {text!r}", hint="use a number with a unit, e.g. 10GB or 512MiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(text: str) -> float:
    """``24h``, ``7d``, ``90m``, ``1h30m`` → seconds."""
    import re

    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)([smhdw])", text.strip())
    if not parts or "".join(a + b for a, b in parts) != text.strip():
        raise BakeryError(f"invalid duration {text!r}", hint="use e.g. 24h, 7d or 1h30m")
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(float(a) * mult[b] for a, b in parts)
