"""Media types, descriptors, platforms and canonical JSON for OCI images.

Everything that names a kind of blob is defined here once: the OCI and the
Docker (v2 schema 2) media types for manifests, indexes (manifest lists),
configs and layers.  A :class:`Descriptor` points at a blob (media type,
digest, size, and optionally annotations and a platform).

Manifests are hashed, so they must be encoded exactly the same way every
time: :func:`canonical_json` writes JSON as Go's ``json.Marshal`` does (no
spaces, keys in the order the Go structs declare them, maps with sorted keys,
``<``, ``>`` and ``&`` escaped as ``\\u003c``...).  Callers build dicts in
struct order; :func:`sorted_map` sorts the maps (annotations, labels).

Platforms are normalised as containerd does (``aarch64`` -> ``arm64``,
``arm64/v8`` -> ``arm64``, ``arm`` -> ``arm/v7``, ``x86_64`` -> ``amd64``,
``amd64/v1`` -> ``amd64``) so that ``linux/arm64`` and ``linux/arm64/v8``
are the same platform.

Example::

    >>> p = parse_platform("linux/aarch64/v8")
    >>> str(p), p.to_json()
    ('linux/arm64', {'architecture': 'arm64', 'os': 'linux'})
    >>> d = Descriptor(OCI_MANIFEST, "sha256:" + "a" * 64, 7, platform=p)
    >>> canonical_json(d.to_json())[:52]
    b'{"mediaType":"application/vnd.oci.image.manifest.v1+'
    >>> canonical_json({"a": "<&>"})
    b'{"a":"\\\\u003c\\\\u0026\\\\u003e"}'
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from bakery.errors import BakeryError

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_FOREIGN",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_ZSTD",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "LAYER_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "Descriptor",
    "Platform",
    "canonical_json",
    "check_digest",
    "compression_of",
    "digest_bytes",
    "host_platform",
    "is_index",
    "is_manifest",
    "layer_media_type",
    "normalize_arch",
    "normalize_platform",
    "parse_platform",
    "platform_compatible",
    "sorted_map",
]

# -- media types ---------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_LAYER_ZSTD, DOCKER_LAYER_FOREIGN,
})

COMPRESSIONS = ("gzip", "zstd", "uncompressed")

_LAYER_TYPES: Dict[Tuple[str, bool], str] = {
    ("uncompressed", True): OCI_LAYER,
    ("gzip", True): OCI_LAYER_GZIP,
    ("zstd", True): OCI_LAYER_ZSTD,
    ("uncompressed", False): DOCKER_LAYER,
    ("gzip", False): DOCKER_LAYER_GZIP,
    ("zstd", False): DOCKER_LAYER_ZSTD,
}


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def layer_media_type(compression: str, oci: bool) -> str:
    """The layer media type for ``compression`` (gzip, zstd, uncompressed)."""
    try:
        return _LAYER_TYPES[(compression, oci)]
    except KeyError:
        raise BakeryError(
            f"unknown compression {compression!r}",
            hint="use one of: " + ", ".join(COMPRESSIONS),
        ) from None


def compression_of(media_type: str) -> str:
    """gzip, zstd or uncompressed, from a layer media type."""
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    return "uncompressed"


# -- digests -------------------------------------------------------------------

_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """``digest`` if it is a well-formed sha256/sha512 digest, else a BakeryError."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise BakeryError(f"invalid digest {digest!r}",
                          hint="a digest is sha256: followed by 64 lowercase hex digits")
    return digest


# -- canonical JSON -----------------------------------------------------------

_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
               ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def canonical_json(obj: Any) -> bytes:
    """``obj`` encoded as Go's json.Marshal would: compact, UTF-8, HTML-safe.

    Dict key order is kept (build dicts in Go struct order; use
    :func:`sorted_map` for Go maps).  ``<``, ``>``, ``&``, U+2028 and U+2029
    can only occur inside strings, so escaping them after encoding is safe.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for raw, esc in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, esc)
    return text.encode("utf-8")


def sorted_map(m: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """A Go map as json.Marshal writes it: keys sorted (by UTF-8 bytes)."""
    if not m:
        return {}
    return {k: m[k] for k in sorted(m, key=lambda k: k.encode("utf-8"))}


# -- platforms -------------------------------------------------------------------

_KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js",
    "linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows",
})
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Platform:
    """An OCI platform; build it with :func:`parse_platform` to normalise it."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: Tuple[str, ...] = ()

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_json(self) -> Dict[str, Any]:
        # Go struct order: architecture, os, os.version, os.features, variant
        out: Dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        return cls(
            os=str(obj.get("os", "")),
            architecture=str(obj.get("architecture", "")),
            variant=str(obj.get("variant", "") or ""),
            os_version=str(obj.get("os.version", "") or ""),
            os_features=tuple(obj.get("os.features") or ()),
        )


def normalize_arch(arch: str, variant: str) -> Tuple[str, str]:
    """containerd's normalisation of an architecture and variant: the one
    definition bakery uses (x86_64 -> amd64, aarch64/v8 -> arm64, arm -> arm/v7...)."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
        return "arm", variant
    return arch, variant


def normalize_platform(p: Any) -> Platform:
    """``p`` (a Platform, a string, or anything with os/architecture/variant)
    normalised as containerd's ``platforms.Normalize`` does."""
    if isinstance(p, str):
        return parse_platform(p)
    os_name = str(getattr(p, "os", "") or "").lower()
    if os_name == "macos":
        os_name = "darwin"
    arch, variant = normalize_arch(str(getattr(p, "architecture", "") or ""),
                                    str(getattr(p, "variant", "") or ""))
    return Platform(os_name, arch, variant,
                    str(getattr(p, "os_version", "") or ""),
                    tuple(getattr(p, "os_features", ()) or ()))


def host_platform() -> Platform:
    machine = _platform.machine() or "amd64"
    variant = "v7" if machine.startswith("armv7") else ""
    if machine.startswith("armv6"):
        variant = "v6"
    if machine.startswith("arm") and not machine.startswith("arm64"):
        machine = "arm"
    return normalize_platform(Platform("linux", machine, variant))


def parse_platform(spec: str) -> Platform:
    """``os[/arch[/variant]]`` or a bare architecture, normalised.

    ``"arm64"`` is ``linux/arm64``; ``"linux"`` is linux on the host's
    architecture; ``"linux/arm/v7"``, ``"linux/amd64/v3"`` keep their variant.
    """
    text = spec.strip()
    parts = text.split("/")
    if not text or len(parts) > 3 or not all(_COMPONENT_RE.match(p) for p in parts):
        raise BakeryError(f"invalid platform {spec!r}",
                          hint='a platform is os/arch[/variant], e.g. "linux/arm64" or "linux/arm/v7"')
    if len(parts) == 1:
        word = parts[0].lower()
        if word in _KNOWN_OS or word == "macos":
            host = host_platform()
            return normalize_platform(Platform(word, host.architecture, host.variant))
        return normalize_platform(Platform("linux", word))
    return normalize_platform(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))


_ARM_ORDER = ["v5", "v6", "v7", "v8"]
_AMD64_ORDER = ["", "v2", "v3", "v4"]


def platform_compatible(want: Platform, have: Platform) -> int:
    """How well an image for ``have`` runs on ``want``: 2 exact, 1 compatible
    (an older arm or amd64 variant, or 32-bit arm on arm64/v8), 0 not at all."""
    w, h = normalize_platform(want), normalize_platform(have)
    if w.os != h.os:
        return 0
    if (w.architecture, w.variant) == (h.architecture, h.variant):
        return 2
    order = {"arm": _ARM_ORDER, "amd64": _AMD64_ORDER}.get(w.architecture)
    if order and w.architecture == h.architecture and w.variant in order \
            and h.variant in order and order.index(h.variant) < order.index(w.variant):
        return 1
    return 0


# -- descriptors -------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """A pointer to a blob: what it is, its digest and size (and more)."""

    media_type: str
    digest: str
    size: int
    annotations: Optional[Dict[str, str]] = field(default=None, compare=False, hash=False)
    platform: Optional[Platform] = None
    urls: Tuple[str, ...] = ()
    artifact_type: str = ""

    def to_json(self, docker: bool = False) -> Dict[str, Any]:
        """As the OCI Go struct orders it (mediaType, digest, size, urls,
        annotations, platform, artifactType) or, with ``docker``, as Docker's
        distribution does in schema 2 manifests and lists (mediaType, size,
        digest, ...)."""
        if docker:
            out: Dict[str, Any] = {"mediaType": self.media_type, "size": self.size,
                                   "digest": self.digest}
        else:
            out = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = sorted_map(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Descriptor:
        if not isinstance(obj, Mapping):
            raise BakeryError(f"invalid descriptor {obj!r}: not a JSON object")
        try:
            media_type = str(obj.get("mediaType", ""))
            digest = check_digest(obj["digest"])
            size = obj["size"]
        except KeyError as e:
            raise BakeryError(f"invalid descriptor: no {e.args[0]!r} field") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BakeryError(f"invalid descriptor size {size!r} for {digest}")
        plat = obj.get("platform")
        ann = obj.get("annotations")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=dict(ann) if ann else None,
            platform=Platform.from_json(plat) if isinstance(plat, Mapping) else None,
            urls=tuple(obj.get("urls") or ()),
            artifact_type=str(obj.get("artifactType", "") or ""),
        )

    def with_platform(self, platform: Optional[Platform]) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, self.annotations,
                          platform, self.urls, self.artifact_type)

    def with_annotations(self, annotations: Optional[Dict[str, str]]) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, annotations or None,
                          self.platform, self.urls, self.artifact_type)

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


def descriptors(objs: Iterable[Mapping[str, Any]]) -> List[Descriptor]:
    return [Descriptor.from_json(o) for o in objs]
