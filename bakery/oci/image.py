"""Building images from layer tars: blobs, config, manifests and indexes.

:func:`add_layer` compresses an uncompressed layer tar into the store
(gzip without mtime or file name in the header, made of 1 MiB deflate blocks
compressed in parallel by :mod:`bakery.oci.pgzip`, so the same tar and level
always give the same blob with a given zlib, whatever the thread count; zstd
in ``zstandard``'s multi-threaded mode, whose output does not depend on the
number of threads either, when the module is there) and
records both digests: the blob's and the diff_id (the tar's).
:func:`build_image` writes the image config (``architecture``, ``os``,
``variant``, ``config``, ``rootfs``, ``history``; ``created`` from
``SOURCE_DATE_EPOCH`` when it is set) and the manifest, with OCI or Docker
media types.  :func:`build_index` puts one manifest per platform into an
index (an OCI index or a Docker manifest list).

All JSON is written by :func:`bakery.oci.media.canonical_json`, so the same
inputs give the same digests.

Example::

    >>> store = BlobStore("/tmp/store")
    >>> layer = add_layer(store, "rootfs.tar")                  # gzip, level 6
    >>> amd = build_image(store, [layer], ContainerConfig(cmd=["sh"]),
    ...                   platform="linux/amd64", created=0)
    >>> arm = build_image(store, [layer], ContainerConfig(cmd=["sh"]),
    ...                   platform="linux/arm64", created=0)
    >>> index = build_index(store, [amd, arm])
    >>> index.media_type, [str(m.platform) for m in store_manifests(store, index)]
    ('application/vnd.oci.image.index.v1+json', ['linux/amd64', 'linux/arm64'])
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from bakery.errors import BakeryError
from bakery.oci.media import (
    COMPRESSIONS,
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    canonical_json,
    is_index,
    layer_media_type,
    normalize_platform,
    sorted_map,
)
from bakery.oci.pgzip import compress_threads, gzip_stream
from bakery.oci.store import BlobStore

__all__ = [
    "ContainerConfig",
    "Healthcheck",
    "History",
    "Image",
    "Layer",
    "add_layer",
    "build_image",
    "build_index",
    "format_created",
    "source_date_epoch",
    "store_manifests",
]

log = logging.getLogger("bakery.oci")

_CHUNK = 1 << 20


# -- layers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A compressed layer in a store: the blob and the uncompressed tar's digest."""

    digest: str
    size: int
    diff_id: str
    compression: str  # gzip, zstd or uncompressed
    created_by: str = ""
    comment: str = ""

    def descriptor(self, oci: bool = True) -> Descriptor:
        return Descriptor(layer_media_type(self.compression, oci), self.digest, self.size)


class _Tee:
    """A write-only file object that hashes and forwards to a blob writer."""

    def __init__(self, sink: Any):
        self.sink = sink

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        pass


def _zstandard() -> Any:
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise BakeryError(
            "zstd compression needs the Python module \"zstandard\", which is not installed",
            hint="install it (pip install zstandard) or use compression=gzip",
        ) from None
    return zstandard


def add_layer(store: BlobStore, tar_path: str, compression: str = "gzip",
              level: Optional[int] = None, created_by: str = "", comment: str = "",
              threads: Optional[int] = None) -> Layer:
    """Compress the uncompressed tar at ``tar_path`` into ``store``.

    gzip levels are 0-9 (default 6, like Go's default); zstd levels 1-22
    (default 3).  The gzip header has no mtime and no file name.  Both use
    several threads (``threads``; None: one per CPU, gzip's shared with the
    other layers being compressed, see :mod:`bakery.oci.pgzip`); the bytes
    do not depend on the number.
    """
    if compression not in COMPRESSIONS:
        raise BakeryError(f"unknown compression {compression!r}",
                          hint="use one of: " + ", ".join(COMPRESSIONS))
    if level is not None:
        top = 22 if compression == "zstd" else 9
        low = -7 if compression == "zstd" else 0
        if not low <= level <= top:
            raise BakeryError(f"compression level {level} is out of range for {compression}",
                              hint=f"use a level from {low} to {top}")
    diff = hashlib.sha256()
    if not os.path.isfile(tar_path):
        raise BakeryError(f"cannot read the layer {tar_path}: no such file")
    with open(tar_path, "rb") as src, store.writer() as w:
        if compression == "gzip":
            gzip_stream(src, w.write, 6 if level is None else level, threads, on_input=diff.update)
        elif compression == "zstd":
            zstd = _zstandard()
            # always in zstd's multi-threaded mode (threads >= 1): its output
            # is then the same whatever the number of workers
            cctx = zstd.ZstdCompressor(level=3 if level is None else level,
                                       threads=max(1, threads or compress_threads()))
            zw = cctx.stream_writer(_Tee(w), closefd=False)
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                diff.update(chunk)
                zw.write(chunk)
            zw.flush(zstd.FLUSH_FRAME)
        else:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                diff.update(chunk)
                w.write(chunk)
        desc = w.commit()
    return Layer(desc.digest, desc.size, "sha256:" + diff.hexdigest(), compression,
                 created_by, comment)


# -- config ----------------------------------------------------------------------


def _go_duration(v: Union[int, float, str, None], what: str) -> int:
    """Nanoseconds from an int (ns) or a duration string ("30s", "1m30s", "500ms")."""
    if v is None or v == "":
        return 0
    if isinstance(v, bool):
        raise BakeryError(f"invalid duration for {what}: {v!r}")
    if isinstance(v, (int, float)):
        return int(v)
    units = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}
    total = 0.0
    pos = 0
    text = v.strip()
    for m in re.finditer(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        if text == "0":
            return 0
        raise BakeryError(f"invalid duration for {what}: {v!r}",
                          hint='use a Go duration such as "30s" or "1m30s"')
    return int(total)


@dataclass
class Healthcheck:
    """A Docker HEALTHCHECK; durations in nanoseconds or as Go duration strings."""

    test: List[str]
    interval: Union[int, str] = 0
    timeout: Union[int, str] = 0
    start_period: Union[int, str] = 0
    start_interval: Union[int, str] = 0
    retries: int = 0

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.test:
            out["Test"] = list(self.test)
        for key, val in (("Interval", self.interval), ("Timeout", self.timeout),
                         ("StartPeriod", self.start_period),
                         ("StartInterval", self.start_interval)):
            ns = _go_duration(val, "healthcheck " + key)
            if ns:
                out[key] = ns
        if self.retries:
            out["Retries"] = int(self.retries)
        return out


def _port(p: str) -> str:
    p = str(p).strip()
    if not re.match(r"^\d+(-\d+)?(/(tcp|udp|sctp))?$", p):
        raise BakeryError(f"invalid exposed port {p!r}",
                          hint='use PORT[/PROTO], e.g. "80" or "53/udp"')
    return p if "/" in p else p + "/tcp"


@dataclass
class ContainerConfig:
    """The ``config`` section of an image config (what a container starts with)."""

    user: str = ""
    exposed_ports: Sequence[str] = ()
    env: Sequence[str] = ()
    entrypoint: Optional[Sequence[str]] = None
    cmd: Optional[Sequence[str]] = None
    volumes: Sequence[str] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Optional[Healthcheck] = None
    on_build: Sequence[str] = ()
    shell: Sequence[str] = ()

    def to_json(self) -> Dict[str, Any]:
        # Go order: ocispec.ImageConfig then Docker's extension (Healthcheck, OnBuild, Shell)
        out: Dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = sorted_map({_port(p): {} for p in self.exposed_ports})
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = sorted_map({v: {} for v in self.volumes})
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = sorted_map(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.args_escaped:
            out["ArgsEscaped"] = True
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_json()
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.shell:
            out["Shell"] = list(self.shell)
        return out


@dataclass
class History:
    created: Optional[str] = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out


def source_date_epoch(env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """``SOURCE_DATE_EPOCH`` as an int, None when unset or empty."""
    raw = (os.environ if env is None else env).get("SOURCE_DATE_EPOCH", "")
    if not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise BakeryError(f"SOURCE_DATE_EPOCH={raw!r} is not an integer",
                          hint="set it to seconds since 1970, e.g. $(git log -1 --format=%ct)") from None
    if value < 0:
        raise BakeryError(f"SOURCE_DATE_EPOCH={raw!r} is negative")
    return value


Created = Union[None, int, str, _dt.datetime]


def format_created(created: Created = None) -> str:
    """An RFC 3339 UTC time as Go writes it: given, else SOURCE_DATE_EPOCH, else now."""
    if isinstance(created, str):
        return created
    if created is None:
        epoch = source_date_epoch()
        if epoch is not None:
            created = epoch
        else:
            created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    if isinstance(created, int):
        created = _dt.datetime.fromtimestamp(created, _dt.timezone.utc)
    if created.tzinfo is None:
        created = created.replace(tzinfo=_dt.timezone.utc)
    created = created.astimezone(_dt.timezone.utc)
    text = created.strftime("%Y-%m-%dT%H:%M:%S")
    if created.microsecond:
        text += f".{created.microsecond:06d}".rstrip("0")
    return text + "Z"


# -- manifests and indexes -----------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """A built single-platform image: its manifest descriptor (with platform)."""

    descriptor: Descriptor
    config: Descriptor
    layers: List[Descriptor]
    config_json: Dict[str, Any]
    manifest_json: Dict[str, Any]

    @property
    def platform(self) -> Optional[Platform]:
        return self.descriptor.platform


def _media(media: str) -> bool:
    if media not in ("oci", "docker"):
        raise BakeryError(f"unknown media types {media!r}", hint='use "oci" or "docker"')
    return media == "oci"


def build_image(
    store: BlobStore,
    layers: Sequence[Layer],
    config: Optional[ContainerConfig] = None,
    platform: Any = "linux/amd64",
    *,
    media: str = "oci",
    created: Created = None,
    history: Optional[Sequence[History]] = None,
    author: str = "",
    annotations: Optional[Mapping[str, str]] = None,
    base_history: Sequence[History] = (),
    extra_config: Optional[Mapping[str, Any]] = None,
) -> Image:
    """Write an image config and a manifest for ``layers`` on ``platform``.

    ``history`` defaults to one entry per layer (its ``created_by`` and
    ``comment``); given, its non-empty entries must match the layers one to
    one.  Docker media types with zstd layers switch to OCI types (as BuildKit
    does); Docker manifests cannot carry annotations.  ``extra_config``
    adds top-level keys to the image config (e.g. BuildKit's inline cache,
    ``moby.buildkit.cache.v0``); it cannot replace the keys written here.
    """
    oci = _media(media)
    plat = normalize_platform(platform)
    if not oci and any(la.compression == "zstd" for la in layers):
        log.warning("zstd-compressed layers need OCI media types: using them")
        oci = True
    if not oci and annotations:
        raise BakeryError("annotations need OCI media types; Docker manifests cannot carry them",
                          hint="set oci-mediatypes=true or drop the annotations")
    when = format_created(created)
    if history is None:
        hist = list(base_history) + [
            History(created=when, created_by=la.created_by, comment=la.comment) for la in layers]
    else:
        hist = list(base_history) + list(history)
    non_empty = sum(1 for h in hist if not h.empty_layer)
    if non_empty != len(layers):
        raise BakeryError(
            f"the image history has {non_empty} non-empty entries for {len(layers)} layers",
            hint="give one history entry per layer (empty_layer=True for the others)")

    cfg: Dict[str, Any] = {"created": when}
    if author:
        cfg["author"] = author
    cfg.update(plat.to_json())
    cfg["config"] = (config or ContainerConfig()).to_json()
    cfg["rootfs"] = {"type": "layers", "diff_ids": [la.diff_id for la in layers]}
    if hist:
        cfg["history"] = [h.to_json() for h in hist]
    for key, value in (extra_config or {}).items():
        if key in cfg:
            raise BakeryError(f"extra image config key {key!r} would replace bakery's own")
        cfg[key] = value
    cfg_desc = store.put_bytes(canonical_json(cfg), OCI_CONFIG if oci else DOCKER_CONFIG)

    layer_descs = [la.descriptor(oci) for la in layers]
    man: Dict[str, Any] = {"schemaVersion": 2,
                           "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                           "config": cfg_desc.to_json(docker=not oci),
                           "layers": [d.to_json(docker=not oci) for d in layer_descs]}
    if annotations:
        man["annotations"] = sorted_map(annotations)
    man_desc = store.put_bytes(canonical_json(man), man["mediaType"]).with_platform(plat)
    return Image(man_desc, cfg_desc, layer_descs, cfg, man)


def build_index(
    store: BlobStore,
    images: Iterable[Union[Image, Descriptor]],
    *,
    media: str = "oci",
    annotations: Optional[Mapping[str, str]] = None,
) -> Descriptor:
    """An index of single-platform manifests (each descriptor keeps its platform)."""
    oci = _media(media)
    descs = [i.descriptor if isinstance(i, Image) else i for i in images]
    if not descs:
        raise BakeryError("an image index needs at least one manifest")
    seen: Dict[str, str] = {}
    for d in descs:
        if d.platform is None:
            raise BakeryError(f"manifest {d.digest} has no platform; an index needs one per manifest")
        key = str(d.platform)
        if key in seen and seen[key] != d.digest:
            raise BakeryError(f"two different manifests for the platform {key} in one index",
                              hint="build each platform once")
        seen[key] = d.digest
    if any(d.media_type == OCI_MANIFEST for d in descs) and not oci:
        log.warning("OCI manifests in the index: using OCI media types for it")
        oci = True
    if not oci and annotations:
        raise BakeryError("annotations need OCI media types; Docker manifest lists cannot carry them",
                          hint="set oci-mediatypes=true or drop the annotations")
    idx: Dict[str, Any] = {"schemaVersion": 2,
                           "mediaType": OCI_INDEX if oci else DOCKER_MANIFEST_LIST,
                           "manifests": [d.to_json(docker=not oci) for d in descs]}
    if annotations:
        idx["annotations"] = sorted_map(annotations)
    return store.put_bytes(canonical_json(idx), idx["mediaType"])


def store_manifests(store: BlobStore, desc: Descriptor) -> List[Descriptor]:
    """The manifests of an index (with their platforms), or ``[desc]`` itself."""
    if is_index(desc.media_type):
        doc = store.read_json(desc.digest)
        return [Descriptor.from_json(m) for m in doc.get("manifests") or []]
    return [desc]
