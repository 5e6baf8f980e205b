"""OCI image layouts (directory or tar) and Docker archives (``docker load``).

An OCI image layout is ``oci-layout`` (``{"imageLayoutVersion":"1.0.0"}``),
``index.json`` (an OCI index whose entries point at the image, one entry per
name, annotated with ``io.containerd.image.name`` = the full name and
``org.opencontainers.image.ref.name`` = its tag, as containerd and BuildKit
write them) and ``blobs/sha256/<hex>``.  :func:`write_oci_layout` writes one
as a tar (``type=oci,dest=out.tar``) or, with ``tar=False``, a directory;
either way atomically (a temporary sibling renamed into place) and
deterministically (tar entries sorted, owner 0:0, mtime from
``SOURCE_DATE_EPOCH`` or 0).  :func:`open_layout` reads either form back.

:func:`write_docker_archive` writes what ``docker save`` writes: the OCI
layout plus ``manifest.json`` (``Config``, ``RepoTags``, ``Layers``) and
``repositories``, which ``docker load`` and ``skopeo docker-archive:`` read.
A Docker archive holds one platform: an index with several raises a
BakeryError, as BuildKit's docker exporter does.

Example::

    >>> write_oci_layout(store, index, "out.tar", names=["app:v1"])
    >>> with open_layout("out.tar") as lay:
    ...     desc = lay.resolve("v1")          # or "app:v1", or None if only one
    ...     desc.media_type == OCI_INDEX
    True
    >>> write_docker_archive(store, amd64_image.descriptor, "app.tar", names=["app:v1"])
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from bakery.errors import BakeryError
from bakery.oci.image import source_date_epoch
from bakery.oci.media import (
    OCI_INDEX,
    Descriptor,
    Platform,
    canonical_json,
    is_index,
    is_manifest,
    normalize_platform,
    platform_compatible,
)
from bakery.oci.reference import Reference, parse_reference
from bakery.oci.store import BlobStore, walk

__all__ = [
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "OCILayout",
    "open_layout",
    "single_manifest",
    "write_docker_archive",
    "write_oci_layout",
]

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'

# (arcname, bytes or a file path)
_Entry = Tuple[str, Union[bytes, str]]


def _mtime(mtime: Optional[int]) -> int:
    if mtime is not None:
        return mtime
    epoch = source_date_epoch()
    return epoch if epoch is not None else 0


def _parse_names(names: Sequence[str]) -> List[Reference]:
    return [parse_reference(n) for n in names]


def _index_entries(root: Descriptor, refs: Sequence[Reference]) -> List[Dict[str, Any]]:
    if not refs:
        return [root.to_json()]
    out = []
    for r in refs:
        ann = dict(root.annotations or {})
        ann[ANNOTATION_IMAGE_NAME] = str(r)
        if r.tag:
            ann[ANNOTATION_REF_NAME] = r.tag
        out.append(root.with_annotations(ann).to_json())
    return out


def _layout_entries(store: BlobStore, root: Descriptor, refs: Sequence[Reference],
                    blobs: Optional[List[Descriptor]] = None) -> List[_Entry]:
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": _index_entries(root, refs)}
    entries: List[_Entry] = [("oci-layout", LAYOUT_VERSION), ("index.json", canonical_json(index))]
    for d in blobs if blobs is not None else walk(store, root):
        if not store.has(d.digest):
            raise BakeryError(f"blob {d.digest} ({d.media_type}) is missing from the store",
                              hint="the image was not fully built or pulled")
        algo, hexd = d.digest.split(":", 1)
        entries.append((f"blobs/{algo}/{hexd}", store.path(d.digest)))
    return entries


def _write_tar(entries: Sequence[_Entry], dest: str, mtime: int) -> None:
    """A tar of ``entries`` (and their parent directories), sorted, written
    to a temporary sibling of ``dest`` and renamed into place."""
    files: Dict[str, Union[bytes, str]] = {}
    dirs = set()
    for name, src in entries:
        files[name] = src
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    names = sorted([d + "/" for d in dirs] + list(files))
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise BakeryError(f"cannot write {dest}: the directory {parent} does not exist")
    if os.path.isdir(dest):
        raise BakeryError(f"cannot write the tar {dest}: it is a directory",
                          hint="give a file name, or tar=false to write a directory")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + ".tmp-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w",
                                                      format=tarfile.USTAR_FORMAT) as tf:
            for name in names:
                ti = tarfile.TarInfo(name.rstrip("/"))
                ti.mtime = mtime
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if name.endswith("/"):
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    tf.addfile(ti)
                    continue
                ti.mode = 0o644
                src = files[name]
                if isinstance(src, bytes):
                    ti.size = len(src)
                    tf.addfile(ti, io.BytesIO(src))
                else:
                    ti.size = os.path.getsize(src)
                    with open(src, "rb") as f:
                        tf.addfile(ti, f)
            tf.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_dir(entries: Sequence[_Entry], dest: str) -> None:
    dest = os.path.abspath(dest.rstrip("/") or "/")
    parent = os.path.dirname(dest)
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise BakeryError(f"cannot write the OCI layout directory {dest}: a file is there",
                              hint="remove it, or write a tar (tar=true)")
        if os.listdir(dest) and not os.path.isfile(os.path.join(dest, "oci-layout")):
            raise BakeryError(
                f"{dest} is a non-empty directory that is not an OCI layout; not replacing it",
                hint="choose an empty or new directory")
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(dest) + ".tmp-", dir=parent)
    old: Optional[str] = None
    try:
        for name, src in entries:
            path = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if isinstance(src, bytes):
                with open(path, "wb") as f:
                    f.write(src)
            else:
                try:
                    os.link(src, path)
                except OSError:
                    shutil.copyfile(src, path)
        os.chmod(tmp, 0o755)
        if os.path.exists(dest):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(dest) + ".old-", dir=parent)
            os.rmdir(old)
            os.rename(dest, old)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(dest):
            os.rename(old, dest)
            old = None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_oci_layout(store: BlobStore, root: Descriptor, dest: str, names: Sequence[str] = (),
                     *, tar: bool = True, mtime: Optional[int] = None) -> None:
    """Write the image ``root`` (a manifest or an index) and all it points at
    as an OCI layout at ``dest``; ``names`` are image references (their tags
    become ``org.opencontainers.image.ref.name``)."""
    entries = _layout_entries(store, root, _parse_names(names))
    if tar:
        _write_tar(entries, dest, _mtime(mtime))
    else:
        _write_dir(entries, dest)


# -- reading ----------------------------------------------------------------------------


@dataclass
class OCILayout:
    """An OCI layout opened for reading: its blobs as a store and its index."""

    path: str
    store: BlobStore
    manifests: List[Descriptor]
    _tmp: Optional[str] = field(default=None, repr=False)

    def resolve(self, name: Optional[str] = None) -> Descriptor:
        """The index.json entry named ``name`` (a tag or a full reference);
        with no name, the only entry."""
        if name is None:
            if len(self.manifests) == 1:
                return self.manifests[0]
            raise BakeryError(f"{self.path} holds {len(self.manifests)} images; name one",
                              hint="names: " + ", ".join(self._names()) if self._names() else None)
        wanted = {name}
        with contextlib.suppress(BakeryError):
            wanted.add(str(parse_reference(name)))
        for d in self.manifests:
            ann = d.annotations or {}
            if ann.get(ANNOTATION_REF_NAME) in wanted or ann.get(ANNOTATION_IMAGE_NAME) in wanted:
                return d
        raise BakeryError(f"no image named {name!r} in {self.path}",
                          hint=("names: " + ", ".join(self._names())) if self._names() else None)

    def _names(self) -> List[str]:
        out = []
        for d in self.manifests:
            ann = d.annotations or {}
            n = ann.get(ANNOTATION_REF_NAME) or ann.get(ANNOTATION_IMAGE_NAME)
            if n:
                out.append(n)
        return out

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> OCILayout:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_layout(data: bytes, path: str) -> None:
    try:
        version = json.loads(data).get("imageLayoutVersion")
    except (ValueError, AttributeError):
        version = None
    if version != "1.0.0":
        raise BakeryError(f"{path}: unsupported OCI layout version {version!r}",
                          hint="bakery reads imageLayoutVersion 1.0.0")


def _read_index(data: bytes, path: str) -> List[Descriptor]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise BakeryError(f"{path}: index.json is not valid JSON: {e}") from None
    return [Descriptor.from_json(m) for m in doc.get("manifests") or []]


def open_layout(path: str, tmpdir: Optional[str] = None) -> OCILayout:
    """Open an OCI layout directory, or a tar of one (blobs are extracted to
    a temporary store, checked against their digests, removed on close)."""
    if os.path.isdir(path):
        try:
            with open(os.path.join(path, "oci-layout"), "rb") as f:
                _check_layout(f.read(), path)
            with open(os.path.join(path, "index.json"), "rb") as f:
                manifests = _read_index(f.read(), path)
        except FileNotFoundError as e:
            raise BakeryError(f"{path} is not an OCI layout: no {os.path.basename(e.filename)}") from None
        return OCILayout(path, BlobStore(os.path.join(path, "blobs")), manifests)
    if not os.path.isfile(path):
        raise BakeryError(f"no such OCI layout: {path}")
    tmp = tempfile.mkdtemp(prefix="bakery-oci-", dir=tmpdir)
    try:
        store = BlobStore(tmp)
        layout_data = index_data = None
        with tarfile.open(path, "r:*") as tf:
            for ti in tf:
                name = ti.name.lstrip("./") if ti.name not in (".", "./") else ""
                if not ti.isfile():
                    continue
                member = tf.extractfile(ti)
                if member is None:
                    continue
                if name == "oci-layout":
                    layout_data = member.read()
                elif name == "index.json":
                    index_data = member.read()
                elif name.startswith("blobs/") and name.count("/") == 2:
                    _, algo, hexd = name.split("/")
                    with store.writer(f"{algo}:{hexd}", ti.size) as w:
                        while True:
                            chunk = member.read(1 << 20)
                            if not chunk:
                                break
                            w.write(chunk)
                        w.commit()
        if layout_data is None or index_data is None:
            raise BakeryError(f"{path} is not an OCI layout tar: no "
                              + ("oci-layout" if layout_data is None else "index.json"))
        _check_layout(layout_data, path)
        return OCILayout(path, store, _read_index(index_data, path), tmp)
    except tarfile.TarError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BakeryError(f"{path} is not a readable tar: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- docker archives --------------------------------------------------------------------

_ATTESTATION = "attestation-manifest"


def single_manifest(store: BlobStore, root: Descriptor,
                    platform: Union[str, Platform, None] = None) -> Descriptor:
    """The one image manifest under ``root`` (attestations aside), for
    ``platform`` when given; a BakeryError when there are several."""
    if is_manifest(root.media_type):
        return root
    if not is_index(root.media_type):
        raise BakeryError(f"{root.digest} is a {root.media_type}, not an image")
    doc = store.read_json(root.digest)
    manifests = [Descriptor.from_json(m) for m in doc.get("manifests") or []]
    images = [m for m in manifests
              if (m.annotations or {}).get("vnd.docker.reference.type") != _ATTESTATION
              and not (m.platform and m.platform.os == "unknown")]
    if platform is not None:
        want = normalize_platform(platform)
        scored = sorted(((platform_compatible(want, m.platform), i) for i, m in enumerate(images)
                         if m.platform is not None), reverse=True)
        if not scored or scored[0][0] == 0:
            raise BakeryError(f"the image has no manifest for {want}",
                              hint="platforms: " + ", ".join(str(m.platform) for m in images))
        return single_manifest(store, images[scored[0][1]])
    if len(images) == 1:
        return single_manifest(store, images[0])
    if not images:
        raise BakeryError("the image index has no image manifests")
    raise BakeryError(
        "docker exporter does not currently support exporting manifest lists "
        f"(the image has {len(images)} platforms: "
        + ", ".join(str(m.platform) for m in images) + ")",
        hint="build one platform (--platform linux/amd64), or use type=oci or type=registry "
             "for a multi-platform image")


def write_docker_archive(store: BlobStore, root: Descriptor, dest: str, names: Sequence[str] = (),
                         *, platform: Union[str, Platform, None] = None,
                         mtime: Optional[int] = None) -> None:
    """A ``docker load``-able tar of the single-platform image ``root``."""
    man_desc = single_manifest(store, root, platform)
    man = store.read_json(man_desc.digest)
    config = Descriptor.from_json(man["config"])
    layers = [Descriptor.from_json(la) for la in man.get("layers") or []]
    refs = _parse_names(names)
    tags = [r.familiar() for r in refs if r.tag and not r.digest]

    def blob_path(d: Descriptor) -> str:
        algo, hexd = d.digest.split(":", 1)
        return f"blobs/{algo}/{hexd}"

    manifest_json = [{"Config": blob_path(config), "RepoTags": tags or None,
                      "Layers": [blob_path(la) for la in layers]}]
    repositories: Dict[str, Dict[str, str]] = {}
    if layers:
        for r in refs:
            if r.tag and not r.digest:
                repositories.setdefault(r.familiar_name(), {})[r.tag] = layers[-1].hex
    blobs = [*layers, config, man_desc]
    entries = _layout_entries(store, man_desc, refs, blobs)
    entries.append(("manifest.json", canonical_json(manifest_json)))
    if repositories:
        entries.append(("repositories", canonical_json(repositories)))
    _write_tar(entries, dest, _mtime(mtime))
