"""Build operations: the contract between the frontends and the engine.

An operation is a frozen, serialisable description of one step, in the
spirit of BuildKit's LLB: a source (an image, a local directory, scratch, a
file over HTTP, a git repository), an
exec (a ``RUN``), a file operation (copy, mkdir, mkfile, rm, symlink) or a
merge (``COPY --link``).  Operations name their inputs as other operations'
outputs (:class:`Ref`), so a target on a platform is a DAG of operations
ending in an :class:`Export` request.

Fields that do not change what a step computes (``description``, ``source``
locations for error messages, progress names) are declared with
``compare=False`` and stay out of cache keys (see bakery.graph.keys).

Example (``FROM busybox`` + ``RUN echo hi > /f``)::

    base = Ref(ImageSource("docker.io/library/busybox:latest", LINUX_AMD64))
    run = Exec(rootfs=base, args=("/bin/sh", "-c", "echo hi > /f"),
               env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",), cwd="/",
               platform=LINUX_AMD64)
    Ref(run)   # the root filesystem after the RUN
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

__all__ = [
    "Copy",
    "Exec",
    "Export",
    "FileAction",
    "FileOp",
    "GitSource",
    "HttpSource",
    "ImageConfig",
    "ImageSource",
    "LocalSource",
    "Merge",
    "Mkdir",
    "Mkfile",
    "Mount",
    "Op",
    "Platform",
    "Ref",
    "Rm",
    "ScratchSource",
    "SourceLocation",
    "Symlink",
    "parse_checksum",
]


@dataclass(frozen=True)
class Platform:
    """os/arch[/variant], normalised (``linux/arm64``, ``linux/arm/v7``)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class SourceLocation:
    """Where a step comes from (file, first and last line): for errors only."""

    file: str
    start_line: int
    end_line: int


# -- sources -----------------------------------------------------------------


@dataclass(frozen=True)
class ImageSource:
    """A registry image. ``ref`` is normalised (docker.io/library/x:latest);
    ``digest`` is empty until the engine resolves the tag (plan never does)."""

    ref: str
    platform: Platform
    digest: str = ""


@dataclass(frozen=True)
class LocalSource:
    """Files from a local directory (the build context or a named context).

    Only the paths that steps read are hashed: ``include``/``exclude`` are
    patterns relative to ``path`` (``exclude`` holds .dockerignore's rules).
    """

    name: str  # "context", "dockerfile", or a named context
    path: str  # absolute path on the client
    include: Tuple[str, ...] = ()
    exclude: Tuple[str, ...] = ()


@dataclass(frozen=True)
class ScratchSource:
    """An empty filesystem (``FROM scratch``)."""


@dataclass(frozen=True)
class HttpSource:
    """One file fetched over HTTP(S) (``ADD <url>``): a filesystem holding
    ``/<filename>`` (mode ``perm``, 0600 when 0; owner ``uid:gid``; mtime
    from the response's Last-Modified, else the epoch).

    ``filename`` empty means "from Content-Disposition, else the URL path".
    With a ``checksum`` (``sha256:...``) the content is fixed by the key;
    without one the key names only the URL and the engine pins the steps
    after it to the digest of what it fetched (see bakery.engine.executor).
    """

    url: str
    filename: str = ""
    checksum: str = ""
    perm: int = 0
    uid: int = 0
    gid: int = 0
    description: str = field(default="", compare=False)
    location: Optional[SourceLocation] = field(default=None, compare=False)


@dataclass(frozen=True)
class GitSource:
    """A git repository's tree at ``ref`` (``ADD <git url>``): ``ref`` is a
    branch, tag or commit ("" = the remote's HEAD), ``subdir`` a directory
    of it.  The key names the remote and ref; the engine pins the steps
    after it to the commit the ref resolves to."""

    remote: str
    ref: str = ""
    subdir: str = ""
    keep_git_dir: bool = False
    checksum: str = ""  # a commit (prefix) the ref must resolve to
    description: str = field(default="", compare=False)
    location: Optional[SourceLocation] = field(default=None, compare=False)


_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


def parse_checksum(value: str) -> Tuple[str, str]:
    """``"sha256:<hex>"`` -> ``("sha256", hex)``, as go-digest's Parse
    accepts it (sha256, sha384, sha512); ValueError with its message."""
    alg, sep, hexpart = value.partition(":")
    if not sep or not alg or not hexpart:
        raise ValueError(f"invalid checksum digest format: {value!r}")
    if alg not in _DIGEST_HEX:
        raise ValueError(f"unsupported digest algorithm: {value!r}")
    if len(hexpart) != _DIGEST_HEX[alg] or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise ValueError(f"invalid checksum digest length or characters: {value!r}")
    return alg, hexpart


# -- exec --------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A ``RUN --mount``.  ``source`` is the mounted filesystem (None for
    tmpfs, cache without ``from``, secret and ssh)."""

    type: str  # bind | cache | tmpfs | secret | ssh
    target: str
    source: Optional[Ref] = None
    selector: str = ""  # path inside source
    readonly: bool = False
    cache_id: str = ""
    sharing: str = "shared"  # shared | private | locked
    secret_id: str = ""  # secret and ssh ids: the id only, never the content
    env: str = ""  # secret as an environment variable
    required: bool = False
    mode: Optional[int] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    size: Optional[int] = None  # tmpfs bytes


@dataclass(frozen=True)
class Exec:
    """Run ``args`` on ``rootfs`` (a RUN step); its output is the new rootfs."""

    rootfs: Ref
    args: Tuple[str, ...]
    env: Tuple[str, ...]
    cwd: str
    platform: Platform
    user: str = ""
    mounts: Tuple[Mount, ...] = ()
    network: str = "default"  # default | none | host
    security: str = "sandbox"  # sandbox | insecure
    extra_hosts: Tuple[str, ...] = ()
    # the target's shm-size in bytes (0 = the sandbox's default, 64 MiB) and
    # ulimits ("nofile=1024:2048", normalised: see bakery.dockerfile.request);
    # BuildKit keeps both in the exec op, so they are part of the key (and
    # a step without them keeps the key it had before they existed)
    shm_size: int = 0
    ulimits: Tuple[str, ...] = ()
    # proxy build args (HTTP_PROXY=...), set for the process after ``env``;
    # like BuildKit's ProxyEnv they are never part of the key
    proxy_env: Tuple[str, ...] = field(default=(), compare=False)
    # never part of the key: progress label and Dockerfile lines
    description: str = field(default="", compare=False)
    location: Optional[SourceLocation] = field(default=None, compare=False)


# -- files -------------------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    source: Ref
    src: Tuple[str, ...]  # paths (wildcards allowed) inside source
    dest: str
    chown: str = ""  # "uid:gid" after user/group resolution, or "" to keep
    chmod: str = ""  # octal or symbolic, as written
    include: Tuple[str, ...] = ()
    exclude: Tuple[str, ...] = ()
    follow_symlinks: bool = True
    dir_contents_only: bool = True
    create_dest_path: bool = True
    allow_wildcard: bool = True
    allow_empty_wildcard: bool = False
    parents: bool = False
    unpack: bool = False  # ADD of a local archive
    checksum: str = ""  # ADD --checksum


@dataclass(frozen=True)
class Mkdir:
    path: str
    mode: int = 0o755
    make_parents: bool = True
    chown: str = ""


@dataclass(frozen=True)
class Mkfile:
    path: str
    data: bytes
    mode: int = 0o644
    chown: str = ""


@dataclass(frozen=True)
class Rm:
    path: str
    allow_not_found: bool = True


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str


FileAction = Union[Copy, Mkdir, Mkfile, Rm, Symlink]


@dataclass(frozen=True)
class FileOp:
    """File actions applied in order on ``base`` (None = scratch)."""

    base: Optional[Ref]
    actions: Tuple[FileAction, ...]
    platform: Optional[Platform] = None
    description: str = field(default="", compare=False)
    location: Optional[SourceLocation] = field(default=None, compare=False)


@dataclass(frozen=True)
class Merge:
    """Layers of ``inputs`` stacked in order (``COPY --link``)."""

    inputs: Tuple[Ref, ...]
    description: str = field(default="", compare=False)


Op = Union[ImageSource, LocalSource, ScratchSource, HttpSource, GitSource, Exec, FileOp, Merge]


@dataclass(frozen=True)
class Ref:
    """An operation's output (a filesystem)."""

    op: Op


# -- the end of a target -----------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The OCI image config a target's image gets (as BuildKit writes it)."""

    platform: Platform
    env: Tuple[str, ...] = ()
    cmd: Optional[Tuple[str, ...]] = None
    entrypoint: Optional[Tuple[str, ...]] = None
    workdir: str = ""
    user: str = ""
    labels: Tuple[Tuple[str, str], ...] = ()
    exposed_ports: Tuple[str, ...] = ()
    volumes: Tuple[str, ...] = ()
    stop_signal: str = ""
    healthcheck: Optional[Dict[str, object]] = field(default=None, compare=False, hash=False)
    shell: Optional[Tuple[str, ...]] = None
    onbuild: Tuple[str, ...] = ()
    # (created_by, empty_layer) per step, for the image history
    history: Tuple[Tuple[str, bool], ...] = ()
    # the base image whose config this one extends (None for scratch or unknown)
    base: Optional[ImageSource] = None


@dataclass(frozen=True)
class Export:
    """What one target wants on one platform: a filesystem and its config."""

    target: str
    platform: Platform
    rootfs: Ref
    config: ImageConfig
