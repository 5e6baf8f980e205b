"""Image references, parsed and normalised as Docker does.

``busybox`` is ``docker.io/library/busybox:latest``; ``user/app`` is
``docker.io/user/app:latest``; the first path component is a registry host
when it has a ``.`` or a ``:`` or is ``localhost`` (``127.0.0.1:5000/app``,
``ghcr.io/o/app``); ``index.docker.io`` is ``docker.io``.  A tag follows the
last ``:`` after the last ``/``; a digest follows ``@``.  Repository names
must be lowercase.

Example::

    >>> r = parse_reference("localhost:5000/team/app:v1@sha256:" + "0" * 64)
    >>> r.registry, r.repository, r.tag, r.digest[:9]
    ('localhost:5000', 'team/app', 'v1', 'sha256:00')
    >>> str(parse_reference("busybox")), parse_reference("busybox").familiar()
    ('docker.io/library/busybox:latest', 'busybox:latest')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

from bakery.errors import BakeryError

__all__ = ["DOCKER_HUB", "Reference", "parse_reference"]

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host[:port] the registry API answers on."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest, else the tag, else latest."""
        return self.digest or self.tag or "latest"

    def familiar_name(self) -> str:
        if self.registry == DOCKER_HUB:
            repo = self.repository
            return repo[len("library/"):] if repo.startswith("library/") and repo.count("/") == 1 else repo
        return self.name

    def familiar(self) -> str:
        """The short form Docker shows (``busybox:latest``, ``user/app:v1``)."""
        out = self.familiar_name()
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def _bad(s: str, why: str) -> BakeryError:
    return BakeryError(f"invalid reference {s!r}: {why}",
                       hint='a reference is [REGISTRY/]NAME[:TAG][@DIGEST], e.g. "docker.io/library/busybox:1.36"')


def parse_reference(s: str, default_tag: Optional[str] = "latest") -> Reference:
    """Parse and normalise ``s``; with neither tag nor digest, the tag is
    ``default_tag`` (None keeps it empty)."""
    text = s.strip() if isinstance(s, str) else ""
    if not text:
        raise _bad(str(s), "empty")
    if _HEX64_RE.match(text):
        raise _bad(s, "cannot specify 64-byte hexadecimal strings as a repository name")
    rest, digest = text, None
    if "@" in text:
        rest, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise _bad(s, f"invalid digest {digest!r}")
        algo, hexd = digest.split(":", 1)
        if algo == "sha256" and len(hexd) != 64:
            raise _bad(s, "a sha256 digest has 64 hex digits")
    i = rest.find("/")
    first = rest[:i] if i >= 0 else ""
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost"
                   and first.lower() == first):
        domain, remainder = DOCKER_HUB, rest
    else:
        domain, remainder = first, rest[i + 1:]
        if not _DOMAIN_RE.match(domain):
            raise _bad(s, f"invalid registry host {domain!r}")
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    tag = None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG_RE.match(tag):
            raise _bad(s, f"invalid tag {tag!r}")
    if not remainder:
        raise _bad(s, "no repository name")
    if remainder.lower() != remainder:
        raise _bad(s, f"repository name ({remainder}) must be lowercase")
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = "library/" + remainder
    for comp in remainder.split("/"):
        if not _PATH_COMPONENT_RE.match(comp):
            raise _bad(s, f"invalid repository name component {comp!r}")
    if len(domain) + 1 + len(remainder) > 255:
        raise _bad(s, "repository name must not be longer than 255 characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(domain, remainder, tag, digest)
