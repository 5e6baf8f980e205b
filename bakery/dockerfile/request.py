"""What the frontend is asked to build: one target on one platform.

The graph layer makes a :class:`BuildRequest` from each resolved bake target
and platform; ``bakery.dockerfile.convert.convert(request, image_config)``
turns it into an :class:`~bakery.graph.ops.Export`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from bakery.errors import BakeryError
from bakery.graph.ops import ImageSource, Platform, Ref

from ._go import ram_in_bytes

__all__ = [
    "BuildRequest",
    "ImageConfigResolver",
    "NamedContext",
    "ResolvedConfig",
    "parse_shm_size",
    "parse_ulimits",
]

# A named context (``contexts = { name = ... }``) as the frontend sees it:
# an image reference (from "docker-image://REF" or a bare "REF:TAG"),
# a local directory (absolute path), or another target's result (a Ref).
NamedContext = Union[ImageSource, str, Ref]

# Returns the OCI image config ("config" object of the image configuration:
# Env, WorkingDir, User, Cmd, Entrypoint, Labels, ExposedPorts, Volumes,
# StopSignal, Healthcheck, Shell, OnBuild) for an image, or None when it is
# not known (``bakery plan`` never touches the network).
ImageConfigResolver = Callable[[ImageSource], Optional[Mapping[str, object]]]


class ResolvedConfig(dict):
    """An image config a resolver looked up, with the manifest digest it came
    from: the frontend pins the image to that digest, so a tag that moves
    gives the steps after FROM new cache keys."""

    def __init__(self, config: Mapping[str, object], digest: str):
        super().__init__(config)
        self.digest = digest


@dataclass(frozen=True)
class BuildRequest:
    target: str  # the bake target's name (for messages and the Export)
    dockerfile: str  # the Dockerfile's text
    dockerfile_name: str  # its path, for error positions
    context: str  # absolute path of the local build context
    platform: Platform  # the target platform
    build_platform: Platform  # the platform bakery runs on (BUILDPLATFORM)
    build_args: Mapping[str, str] = field(default_factory=dict)
    stage: Optional[str] = None  # the `target` attribute; None = the last stage
    named_contexts: Mapping[str, NamedContext] = field(default_factory=dict)
    dockerignore: Tuple[str, ...] = ()  # patterns of the applicable .dockerignore
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = "default"
    extra_hosts: Tuple[str, ...] = ()
    no_cache_filter: Tuple[str, ...] = ()
    secrets: Tuple[str, ...] = ()  # ids the target provides
    ssh: Tuple[str, ...] = ()  # ids the target provides
    source_date_epoch: Optional[int] = None
    shm_size: int = 0  # bytes of /dev/shm for RUN steps; 0 = the default (64 MiB)
    ulimits: Tuple[str, ...] = ()  # normalised by parse_ulimits

    def arg_overrides(self) -> Dict[str, str]:
        return dict(self.build_args)


def parse_shm_size(target: str, value: Optional[str]) -> int:
    """The target's ``shm-size`` (``"128m"``, ``"1g"``, ``"65536"``: go-units
    RAMInBytes, binary multiples, as buildx reads it) in bytes; 0 when unset."""
    if value is None or value.strip() == "":
        return 0
    n = ram_in_bytes(value.strip())
    if n is None:
        raise BakeryError(f"target {target}: invalid value {value!r} for membytes key shm-size",
                          hint='write a size such as shm-size = "128m" (k, m, g: binary multiples)')
    return n


def parse_ulimits(target: str, values: Optional[Iterable[str]]) -> Tuple[str, ...]:
    """The target's ``ulimits`` (``["nofile=1024:2048", "nproc=512"]``),
    checked as Docker checks ``--ulimit`` and normalised to
    ``name=soft:hard`` sorted by name (a later entry for the same name
    wins, as in Docker's option map), so equivalent spellings share a cache
    key."""
    if not values:
        return ()
    from bakery.engine.sandbox.oci import parse_ulimit  # pure; imported only when needed

    by_name: Dict[str, str] = {}
    for text in values or ():
        try:
            parse_ulimit(text)
        except BakeryError as e:
            raise BakeryError(f"target {target}: ulimits: {e.message}", hint=e.hint) from None
        name, _, limits = text.partition("=")
        parts: List[int] = [int(p.strip()) for p in limits.split(":")]
        soft, hard = parts[0], parts[-1]
        key = name.strip().lower()
        by_name[key] = f"{key}={soft}:{hard}"
    return tuple(by_name[k] for k in sorted(by_name))
