"""An output entry's attributes, parsed and checked (pure: no I/O).

A target's ``output`` entries (bake's syntax, ``type=oci,dest=out.tar,
compression=zstd``) become :class:`OutputSpec` records; every attribute is
checked here, before anything is built, so a typo fails in a second with
a message that names the target, the entry and the fix.

Attributes, as BuildKit's exporters take them:

=====================  ==========================================================
``name``               image names, comma separated (default: the target's tags)
``push``               image: push to the registry (``type=registry`` = image+push)
``compression``        ``gzip`` (default), ``zstd``, ``uncompressed``
``compression-level``  gzip 0-9, zstd 0-22
``force-compression``  recompress layers that already exist in another compression
``oci-mediatypes``     OCI media types (default) or Docker's (``false``; the
                       default of ``type=docker``)
``annotation.K``       manifest annotation (also ``annotation-manifest.K``,
                       ``annotation-manifest[linux/arm64].K``)
``annotation-index.K``  and ``annotation-index-descriptor.K``,
                       ``annotation-manifest-descriptor.K``
``rewrite-timestamp``  with ``SOURCE_DATE_EPOCH``: file times later than it
                       are clamped to it in the layers (reproducible images)
``tar``                oci/docker: ``false`` writes a layout directory
``platform-split``     local/tar: one directory (file) per platform
=====================  ==========================================================

Attributes BuildKit has that mean nothing to bakery's engine (``store``,
``unpack``, ``buildinfo``...) are accepted and ignored; others are errors.

The target's ``annotations`` (bake's ``"manifest:key=value"``,
``"index,manifest:key=value"``, ``"manifest[linux/amd64]:key=value"``, or
plain ``"key=value"`` for the manifest) are added to every image-producing
output, as buildx does.

Example::

    >>> s = parse_output("app", ExportEntry("registry", {"compression": "zstd"}),
    ...                  tags=["r.example/app:1"], platforms=1)
    >>> s.push, s.names, s.image.compression, s.image.oci
    (True, ('r.example/app:1',), 'zstd', True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from bakery.errors import BakeryError
from bakery.oci.media import COMPRESSIONS, Platform, parse_platform

__all__ = [
    "EXPORTER_TYPES",
    "Annotation",
    "ImageOptions",
    "OutputSpec",
    "annotations_for",
    "apply_shorthands",
    "parse_output",
    "parse_outputs",
    "parse_target_annotations",
]

EXPORTER_TYPES = ("image", "registry", "oci", "docker", "local", "tar", "cacheonly")
IMAGE_TYPES = ("image", "registry", "oci", "docker")

# accepted and ignored: they tune a BuildKit daemon's image store or metadata
_IGNORED = {
    "image": ("store", "unpack", "dangling-name-prefix", "name-canonical", "buildinfo",
              "buildinfo-attrs", "attestation-prefix", "insecure", "registry.insecure",
              "nydus-compression-level", "oci-artifact", "store-layers"),
    "local": ("rewrite-timestamp",),
}
_IMAGE_ATTRS = ("name", "push", "push-by-digest", "compression", "compression-level",
                "force-compression", "oci-mediatypes", "tar", "annotation", "rewrite-timestamp")
_KNOWN = {
    "image": _IMAGE_ATTRS,
    "registry": _IMAGE_ATTRS,
    "oci": _IMAGE_ATTRS,
    "docker": (*_IMAGE_ATTRS, "context"),
    "local": ("platform-split",),
    "tar": ("platform-split",),
    "cacheonly": (),
}

ANNOTATION_TYPES = ("index", "index-descriptor", "manifest", "manifest-descriptor")
_KEY_RE = re.compile(r"^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/.-]+)\])?\.(\S+)$")
_TYPE_RE = re.compile(r"^([a-z-]+)(?:\[([A-Za-z0-9_/.-]+)\])?$")


@dataclass(frozen=True)
class Annotation:
    """One annotation: where it goes, for which platform (None: all), key, value."""

    type: str  # index, index-descriptor, manifest, manifest-descriptor
    platform: Optional[Platform]
    key: str
    value: str

    def attr(self) -> str:
        """The exporter attribute that carries it (``annotation-index.K``)."""
        where = "" if self.type == "manifest" and self.platform is None else "-" + self.type
        plat = f"[{self.platform}]" if self.platform is not None else ""
        return f"annotation{where}{plat}.{self.key}"


@dataclass(frozen=True)
class ImageOptions:
    """How an image is made: layer compression, media types, annotations.

    Hashable: outputs with equal options share one built image."""

    compression: str = "gzip"
    level: Optional[int] = None
    force: bool = False
    oci: bool = True
    annotations: Tuple[Annotation, ...] = ()
    rewrite_timestamp: bool = False


@dataclass(frozen=True)
class OutputSpec:
    """One checked output of one target."""

    target: str
    type: str
    dest: str = ""
    names: Tuple[str, ...] = ()
    push: bool = False
    push_by_digest: bool = False
    tar: bool = True
    platform_split: Optional[bool] = None  # None: split when there are several platforms
    image: ImageOptions = field(default_factory=ImageOptions)

    @property
    def makes_image(self) -> bool:
        return self.type in IMAGE_TYPES


def _err(target: str, entry: str, msg: str, hint: Optional[str] = None) -> BakeryError:
    return BakeryError(f"target {target}: output {entry}: {msg}", hint=hint)


def _bool(target: str, entry: str, key: str, value: str) -> bool:
    from bakery.bakefile.buildflags import _FALSE, _TRUE

    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _err(target, entry, f"{key}={value!r} is not a boolean", hint=f"write {key}=true or {key}=false")


def _describe(entry: Any) -> str:
    parts = [f"type={entry.type}"] if entry.type else []
    if entry.dest:
        parts.append(f"dest={entry.dest}")
    parts += [f"{k}={v}" for k, v in sorted(entry.attrs.items())]
    return '"' + ",".join(parts) + '"'


def _platform(target: str, entry: str, text: str) -> Platform:
    try:
        return parse_platform(text)
    except BakeryError as e:
        raise _err(target, entry, f"invalid platform {text!r} in an annotation: {e.message}") from None


def parse_annotation_attr(target: str, entry: str, key: str, value: str) -> Annotation:
    """``annotation[-TYPE][[PLATFORM]].KEY`` = value, as BuildKit reads it."""
    m = _KEY_RE.match(key)
    if m is None:
        raise _err(target, entry, f"could not parse the annotation attribute {key!r}",
                   hint="write annotation.KEY=VALUE or annotation-index.KEY=VALUE")
    typ, plat, name = m.group(1) or "manifest", m.group(2), m.group(3)
    if typ not in ANNOTATION_TYPES:
        raise _err(target, entry, f"unknown annotation type {typ!r} in {key!r}",
                   hint="use one of: " + ", ".join(ANNOTATION_TYPES))
    platform = _platform(target, entry, plat) if plat else None
    if platform is not None and typ.startswith("index"):
        raise _err(target, entry, f"{key!r}: index annotations cannot be per platform")
    return Annotation(typ, platform, name, value)


def parse_target_annotations(target: str, values: Iterable[str]) -> List[Annotation]:
    """A target's ``annotations`` (buildx's syntax) as annotations."""
    out: List[Annotation] = []
    for text in values:
        if not text:
            continue
        k, sep, v = text.partition("=")
        if not sep:
            raise BakeryError(f"target {target}: invalid annotation {text!r}, expected key=value",
                              hint='e.g. "manifest:org.opencontainers.image.title=app"')
        types, colon, key = k.partition(":")
        if not colon:
            out.append(Annotation("manifest", None, k, v))
            continue
        for one in types.split(","):
            m = _TYPE_RE.match(one)
            if m is None:
                raise BakeryError(f"target {target}: invalid annotation type {one!r} in {text!r}, "
                                  "expected a type and an optional platform in square brackets",
                                  hint='e.g. "manifest[linux/amd64]:KEY=VALUE"')
            typ, plat = m.group(1), m.group(2)
            if typ not in ANNOTATION_TYPES:
                raise BakeryError(f"target {target}: unknown annotation type {typ!r} in {text!r}",
                                  hint="use one of: " + ", ".join(ANNOTATION_TYPES))
            platform = _platform(target, repr(text), plat) if plat else None
            out.append(Annotation(typ, platform, key, v))
    return out


def parse_output(target: str, entry: Any, tags: Sequence[str] = (), platforms: int = 1,
                 annotations: Sequence[Annotation] = ()) -> OutputSpec:
    """Check one output entry (a buildflags ``ExportEntry``) of ``target``
    built for ``platforms`` platforms."""
    desc = _describe(entry)
    typ = entry.type
    if typ not in EXPORTER_TYPES:
        raise _err(target, desc, f"unknown output type {typ!r}",
                   hint="use one of: " + ", ".join(EXPORTER_TYPES))
    attrs: Mapping[str, str] = entry.attrs
    known = _KNOWN[typ]
    ignored = _IGNORED["image" if typ in IMAGE_TYPES else "local" if typ in ("local", "tar") else typ] \
        if typ != "cacheonly" else ()
    for key in attrs:
        base = "annotation" if key.startswith(("annotation.", "annotation-", "annotation[")) else key
        if base not in known and key not in ignored:
            raise _err(target, desc, f"unknown attribute {key!r} for type={typ}",
                       hint="accepted: " + ", ".join(sorted(set(known) - {"annotation"}) +
                                                     (["annotation.KEY"] if "annotation" in known else []))
                       if known else f"type={typ} takes no attributes")
    dest = entry.dest
    if dest == "-":
        raise _err(target, desc, "dest=- (writing to standard output) is not supported",
                   hint="give a file name: dest=out.tar")
    if typ in ("local", "tar", "oci") and not dest:
        raise _err(target, desc, f"type={typ} needs dest=PATH",
                   hint=f"e.g. type={typ},dest=out" + (".tar" if typ != "local" else ""))
    names = tuple(n.strip() for n in attrs.get("name", "").split(",") if n.strip()) or tuple(tags)
    if "name" in attrs and not names:
        raise _err(target, desc, "name= is empty", hint="give an image name, e.g. name=registry/app:tag")
    if typ in IMAGE_TYPES:
        from bakery.oci.reference import parse_reference

        for n in names:
            try:
                parse_reference(n)
            except BakeryError as e:
                raise _err(target, desc, f"invalid image name {n!r}: {e.message}", e.hint) from None
    push = typ == "registry"
    if "push" in attrs:
        push = _bool(target, desc, "push", attrs["push"])
        if typ == "registry" and not push:
            raise _err(target, desc, "type=registry always pushes", hint="use type=image,push=false")
    push_by_digest = _bool(target, desc, "push-by-digest", attrs["push-by-digest"]) \
        if "push-by-digest" in attrs else False
    if typ in ("image", "registry") and not names and push:
        raise _err(target, desc, "an image output needs a name",
                   hint="set name=REGISTRY/REPO:TAG on the output, or the target's tags")
    tar = _bool(target, desc, "tar", attrs["tar"]) if "tar" in attrs else True
    split = _bool(target, desc, "platform-split", attrs["platform-split"]) \
        if "platform-split" in attrs else None
    if typ == "docker" and platforms > 1:
        raise _err(target, desc, "docker exporter does not currently support exporting manifest lists "
                   f"(the target has {platforms} platforms)",
                   hint="build one platform (--set TARGET.platform=linux/amd64), or use type=oci or "
                        "type=registry for a multi-platform image")
    image = ImageOptions()
    if typ in IMAGE_TYPES:
        image = _image_options(target, desc, typ, attrs, platforms, annotations)
    return OutputSpec(target, typ, dest, names, push, push_by_digest, tar, split, image)


def _image_options(target: str, desc: str, typ: str, attrs: Mapping[str, str], platforms: int,
                   extra: Sequence[Annotation]) -> ImageOptions:
    comp = attrs.get("compression", "gzip")
    if comp not in COMPRESSIONS:
        raise _err(target, desc, f"unknown compression {comp!r}",
                   hint="use one of: " + ", ".join(COMPRESSIONS))
    if comp == "zstd":  # the optional module: missing, fail now rather than after the build
        from bakery.oci.image import _zstandard

        try:
            _zstandard()
        except BakeryError as e:
            raise _err(target, desc, e.message, e.hint) from None
    level: Optional[int] = None
    if "compression-level" in attrs:
        raw = attrs["compression-level"]
        try:
            level = int(raw)
        except ValueError:
            raise _err(target, desc, f"compression-level={raw!r} is not an integer") from None
        low, top = {"gzip": (0, 9), "zstd": (0, 22), "uncompressed": (0, 0)}[comp]
        if comp == "uncompressed":
            level = None  # BuildKit ignores a level without compression
        elif not low <= level <= top:
            raise _err(target, desc, f"compression-level={level} is out of range for {comp}",
                       hint=f"use a level from {low} to {top}")
    force = _bool(target, desc, "force-compression", attrs["force-compression"]) \
        if "force-compression" in attrs else False
    oci = typ != "docker"
    if "oci-mediatypes" in attrs:
        oci = _bool(target, desc, "oci-mediatypes", attrs["oci-mediatypes"])
    anns: Dict[Tuple[str, str, str], Annotation] = {}
    for key, value in sorted(attrs.items()):
        if key.startswith("annotation"):
            a = parse_annotation_attr(target, desc, key, value)
            anns[(a.type, str(a.platform), a.key)] = a
    for a in extra:  # the target's annotations win, as buildx sets them last
        anns[(a.type, str(a.platform), a.key)] = a
    if anns and not oci:
        raise _err(target, desc, "annotations need OCI media types; Docker manifests cannot carry them",
                   hint="set oci-mediatypes=true or drop the annotations")
    if platforms <= 1 and any(a.type.startswith("index") for a in anns.values()):
        raise _err(target, desc, "index annotations not supported for single platform export",
                   hint="use manifest annotations, or build several platforms")
    ordered = tuple(anns[k] for k in sorted(anns))
    rewrite = _bool(target, desc, "rewrite-timestamp", attrs["rewrite-timestamp"]) \
        if "rewrite-timestamp" in attrs else False
    return ImageOptions(comp, level, force, oci, ordered, rewrite)


def apply_shorthands(entries: Sequence[Any], push: Optional[bool] = None,
                     load: bool = False) -> List[Any]:
    """bake's ``--push`` and ``--load`` on a target's outputs: ``--push``
    sets push=true on its image outputs (adds ``type=image,push=true``
    when it has none); ``--load`` adds ``type=docker`` unless there is one."""
    from bakery.bakefile.buildflags import ExportEntry

    out = list(entries)
    if push:
        images = [e for e in out if e.type in ("image", "registry")]
        if images:
            out = [e.with_attrs(push="true") if e.type == "image" else e for e in out]
        else:
            out.append(ExportEntry("image", {"push": "true"}))
    if load and not any(e.type == "docker" for e in out):
        out.append(ExportEntry("docker", {}))
    return out


def parse_outputs(target: Any, platforms: int, push: Optional[bool] = None,
                  load: bool = False) -> List[OutputSpec]:
    """Every output of a resolved target, checked; ``push=False`` turns
    pushing off everywhere (``type=registry`` then keeps the image only).
    ``--push``/``--load`` do not reach linked targets (built only as another
    target's context: their output is the cache)."""
    anns = parse_target_annotations(target.name, target.annotations or [])
    entries = list(target.output or [])
    if not getattr(target, "linked", False):  # a linked target's output is the cache only
        entries = apply_shorthands(entries, push, load)
    specs = [parse_output(target.name, e, tuple(target.tags or ()), platforms, anns) for e in entries]
    if push is False:
        specs = [OutputSpec(s.target, "image" if s.type == "registry" else s.type, s.dest, s.names, False,
                            s.push_by_digest, s.tar, s.platform_split, s.image) for s in specs]
    return specs


def annotations_for(opts: ImageOptions, kind: str, platform: Optional[Platform] = None) -> Dict[str, str]:
    """The annotations of one kind (``manifest``, ``manifest-descriptor``,
    ``index``, ``index-descriptor``) that apply to ``platform``."""
    out: Dict[str, str] = {}
    for a in opts.annotations:
        if a.type != kind:
            continue
        if a.platform is not None and (platform is None or str(a.platform) != str(platform)):
            continue
        out[a.key] = a.value
    return out
