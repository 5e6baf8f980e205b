"""A content-addressed blob store on disk (``ROOT/sha256/<hex>``).

Builders write blobs here; the layout writers, the docker archive writer and
the registry client read them back by digest.  Writes go to a temporary file
beside the final one and are renamed into place after the digest is checked,
so a blob that exists is always complete and correct.  The layout of a store
is the ``blobs/`` directory of an OCI image layout, so an OCI layout directory
can be read as a store without copying.

Example::

    >>> store = BlobStore("/tmp/blobs")
    >>> d = store.put_bytes(b"{}", "application/vnd.oci.image.config.v1+json")
    >>> d.digest, d.size, store.read_bytes(d.digest)
    ('sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', 2, b'{}')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from typing import IO, Any, Iterator, List, Optional

from bakery.errors import BakeryError
from bakery.oci.media import Descriptor, check_digest, is_index, is_manifest

__all__ = ["BlobStore", "BlobWriter", "children", "walk"]


class BlobWriter:
    """A file-like sink that hashes what it is given and, on :meth:`commit`,
    moves it into the store (checking an expected digest if one is given)."""

    def __init__(self, store: BlobStore, expected: Optional[str] = None,
                 expected_size: Optional[int] = None):
        self._store = store
        self.expected = expected
        self.expected_size = expected_size
        algo = expected.split(":", 1)[0] if expected else "sha256"
        self._hash = hashlib.new(algo)
        self._algo = algo
        d = os.path.join(store.root, algo)
        os.makedirs(d, exist_ok=True)
        fd, self.tmp_path = tempfile.mkstemp(prefix=".tmp-", dir=d)
        self._fh: Optional[IO[bytes]] = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, data: bytes) -> int:
        assert self._fh is not None
        self._fh.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return f"{self._algo}:{self._hash.hexdigest()}"

    def commit(self, media_type: str = "application/octet-stream") -> Descriptor:
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        digest = self.digest
        if self.expected and digest != self.expected:
            self.abort()
            raise BakeryError(f"digest mismatch: expected {self.expected}, got {digest}",
                              hint="the content changed in transit or the source is corrupt; try again")
        if self.expected_size is not None and self.size != self.expected_size:
            self.abort()
            raise BakeryError(
                f"size mismatch for {digest}: expected {self.expected_size} bytes, got {self.size}")
        os.replace(self.tmp_path, self._store.path(digest))
        return Descriptor(media_type, digest, self.size)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            self.abort()


class BlobStore:
    """Blobs by digest under ``root``."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(os.path.join(self.root, "sha256"), exist_ok=True)

    def path(self, digest: str) -> str:
        algo, hexd = check_digest(digest).split(":", 1)
        return os.path.join(self.root, algo, hexd)

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def writer(self, expected: Optional[str] = None, expected_size: Optional[int] = None) -> BlobWriter:
        if expected:
            check_digest(expected)
        return BlobWriter(self, expected, expected_size)

    def put_bytes(self, data: bytes, media_type: str = "application/octet-stream") -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            with self.writer() as w:
                w.write(data)
                w.commit(media_type)
        return Descriptor(media_type, digest, len(data))

    def put_file(self, path: str, media_type: str = "application/octet-stream",
                 link: bool = True) -> Descriptor:
        """Add a file's content (hard-linked when possible, else copied)."""
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        digest = "sha256:" + h.hexdigest()
        if not self.has(digest):
            self.add_verified(path, digest, link=link)
        return Descriptor(media_type, digest, size)

    def add_verified(self, path: str, digest: str, link: bool = True) -> None:
        """Place a file already known to have ``digest`` (link, else copy)."""
        dest = self.path(digest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(dest))
        os.close(fd)
        os.unlink(tmp)
        try:
            if link:
                try:
                    os.link(path, tmp)
                except OSError:
                    shutil.copyfile(path, tmp)
            else:
                shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def open(self, digest: str) -> IO[bytes]:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BakeryError(f"blob {digest} is not in the store {self.root}") from None

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def read_json(self, digest: str) -> Any:
        try:
            return json.loads(self.read_bytes(digest))
        except ValueError as e:
            raise BakeryError(f"blob {digest} is not valid JSON: {e}") from None


def children(store: BlobStore, desc: Descriptor) -> List[Descriptor]:
    """The blobs a manifest or an index points at (config first, then layers)."""
    if is_index(desc.media_type):
        doc = store.read_json(desc.digest)
        return [Descriptor.from_json(m) for m in doc.get("manifests") or []]
    if is_manifest(desc.media_type):
        doc = store.read_json(desc.digest)
        out = [Descriptor.from_json(doc["config"])]
        out += [Descriptor.from_json(lay) for lay in doc.get("layers") or []]
        return out
    return []


def walk(store: BlobStore, desc: Descriptor) -> Iterator[Descriptor]:
    """Every blob reachable from ``desc``, children before parents, each once."""
    seen: set = set()

    def visit(d: Descriptor) -> Iterator[Descriptor]:
        if d.digest in seen:
            return
        seen.add(d.digest)
        for c in children(store, d):
            yield from visit(c)
        yield d

    yield from visit(desc)
