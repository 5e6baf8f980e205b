"""Platform strings and image references in their normal forms.

:func:`parse_platform` follows containerd's ``platforms.Parse`` +
``Normalize``: ``linux/x86_64`` -> ``linux/amd64``, ``linux/aarch64`` and
``linux/arm64/v8`` -> ``linux/arm64``, ``linux/arm`` -> ``linux/arm/v7``,
``arm64`` alone -> ``linux/arm64``.  :func:`normalize_image_ref` gives
``docker.io/library/alpine:latest`` for ``alpine``.
"""

from __future__ import annotations

import platform as _pyplatform
import sys

from bakery.errors import BakeryError
from bakery.graph.ops import Platform

__all__ = ["host_platform", "normalize_image_ref", "parse_platform"]

_OS = {"macos": "darwin"}
_ARCH = {
    "x86_64": "amd64", "x86-64": "amd64", "amd64": "amd64",
    "aarch64": "arm64", "arm64": "arm64",
    "armhf": "arm", "armel": "arm", "arm": "arm",
    "i386": "386", "i486": "386", "i586": "386", "i686": "386", "386": "386",
}
_DEFAULT_VARIANT = {"armhf": "v7", "armel": "v6"}
_KNOWN_OS = {
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
}


def _variant(arch: str, variant: str, raw_arch: str) -> str:
    variant = variant.lower()
    if arch == "arm64":
        return "" if variant in ("", "8", "v8") else variant
    if arch == "amd64":
        return "" if variant in ("", "v1") else variant
    if arch == "arm":
        if variant == "":
            return _DEFAULT_VARIANT.get(raw_arch, "v7")
        return {"5": "v5", "6": "v6", "7": "v7", "8": "v8"}.get(variant, variant)
    return variant


def parse_platform(spec: str) -> Platform:
    """``os/arch[/variant]`` (or a lone arch or os) in normal form."""
    parts = [p.strip() for p in spec.strip().split("/")]
    if not spec.strip() or len(parts) > 3 or any(not p for p in parts):
        raise BakeryError(f'invalid platform "{spec}"',
                          hint="write os/arch[/variant], e.g. linux/arm64 or linux/arm/v7")
    if len(parts) == 1:
        p = parts[0].lower()
        if p in _KNOWN_OS or p in _OS:
            osname = _OS.get(p, p)
            return Platform(osname, host_platform().architecture if osname == "linux" else "amd64")
        return Platform("linux", _ARCH.get(p, p), _variant(_ARCH.get(p, p), "", p))
    osname = _OS.get(parts[0].lower(), parts[0].lower())
    raw = parts[1].lower()
    arch = _ARCH.get(raw, raw)
    return Platform(osname, arch, _variant(arch, parts[2] if len(parts) == 3 else "", raw))


def host_platform() -> Platform:
    """The platform bakery runs on (BUILDPLATFORM)."""
    osname = "linux" if sys.platform.startswith("linux") else sys.platform
    raw = _pyplatform.machine().lower()
    arch = _ARCH.get(raw, raw)
    variant = ""
    if arch == "arm":
        variant = "v6" if raw.startswith("armv6") else "v7"
    elif raw.startswith("armv"):
        arch, variant = "arm", "v" + raw[4]
    return Platform(osname, arch, variant)


def normalize_image_ref(ref: str) -> str:
    """A reference as a registry sees it: domain, path and tag or digest."""
    name, _, digest = ref.partition("@")
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", name
    else:
        domain, path = first, rest
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    last = path.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        path += ":latest"
    out = f"{domain}/{path}"
    return f"{out}@{digest}" if digest else out
