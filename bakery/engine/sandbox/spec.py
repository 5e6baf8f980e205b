"""What a sandboxed process is, and what running it returns.

:class:`RunSpec` is the engine's request to run one process (a ``RUN``
step) on a prepared root filesystem; :class:`RunResult` is what came out.
Both are plain data: the sandboxes (runc, the namespace fallback) turn a
spec into a real process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Protocol, Tuple

from bakery.errors import BakeryError

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_SHM_SIZE",
    "MOUNT_TYPES",
    "NETWORK_MODES",
    "OUTPUT_TAIL",
    "OutputCallback",
    "RunResult",
    "RunSpec",
    "Sandbox",
    "SandboxCancelled",
    "SandboxMount",
    "SandboxTimeout",
]

#: BuildKit's PATH for Linux processes whose environment has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: /dev/shm size when the spec gives none (Docker's and BuildKit's 64 MiB).
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
#: How much of the output a :class:`RunResult` keeps for error reports.
OUTPUT_TAIL = 64 * 1024

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
NETWORK_MODES = ("none", "host", "default")

OutputCallback = Callable[[bytes], None]


@dataclass(frozen=True)
class SandboxMount:
    """One mount of a run, with host paths already resolved by the engine.

    * ``bind`` / ``cache``: ``source`` is a host file or directory, mounted
      at ``target`` (read-write unless ``readonly``).
    * ``tmpfs``: an empty tmpfs of ``size`` bytes (no limit when None).
    * ``secret``: the secret's value is read from the host file ``source``
      (or taken from ``data``), copied into a private directory with
      ``mode`` (default 0400), ``uid`` and ``gid`` (default 0) and bound
      read-only at ``target`` (usually ``/run/secrets/<id>``).  ``data``
      never appears in ``repr``.
    * ``ssh``: ``source`` is an agent socket on the host, bound read-only at
      ``target``; ``mode``/``uid``/``gid`` are not applied to a socket.
    """

    type: str
    source: str
    target: str
    readonly: bool = False
    size: Optional[int] = None
    mode: Optional[int] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    data: Optional[bytes] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RunSpec:
    """One process to run on ``rootfs`` (a prepared, writable directory).

    ``user`` is ``""`` (root), a name, ``uid``, ``uid:gid`` or
    ``name:group``, resolved through the rootfs's /etc/passwd and /etc/group.
    ``network`` is ``"none"`` (a network namespace with only loopback),
    ``"host"`` (only when the sandbox allows it) or ``"default"`` (the same
    as none: there is no bridge; the result carries a note).  ``extra_hosts``
    are ``"name=ip"`` or ``"name:ip"``; ``ulimits`` are ``"nofile=1024:2048"``.
    ``secret_env`` values reach the process's environment only, never logs
    or files on disk (see the sandboxes).  ``timeout`` is in seconds.
    """

    rootfs: str
    args: Tuple[str, ...]
    env: Tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    hostname: str = "bakery"
    network: str = "none"
    mounts: Tuple[SandboxMount, ...] = ()
    extra_hosts: Tuple[str, ...] = ()
    shm_size: int = DEFAULT_SHM_SIZE
    ulimits: Tuple[str, ...] = ()
    secret_env: Dict[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)
    platform: str = ""
    timeout: Optional[float] = None

    def __repr__(self) -> str:  # secret_env: names only
        names = ",".join(sorted(self.secret_env))
        return (f"RunSpec(rootfs={self.rootfs!r}, args={self.args!r}, cwd={self.cwd!r}, "
                f"user={self.user!r}, network={self.network!r}, secret_env=[{names}])")


@dataclass(frozen=True)
class RunResult:
    """How the process ended: its exit code (128+N when killed by signal N),
    the last :data:`OUTPUT_TAIL` bytes of its output (stdout and stderr
    together), how long it ran, and notes for the user (``network=default``
    treated as none, a foreign platform without emulation)."""

    exit_code: int
    output: bytes
    duration: float
    notes: Tuple[str, ...] = ()


class SandboxCancelled(BakeryError):
    """The run was cancelled; the process tree has been killed."""


class SandboxTimeout(BakeryError):
    """The process outlived ``RunSpec.timeout``; it has been killed."""


class Sandbox(Protocol):
    """Runs a :class:`RunSpec`; see RuncSandbox and NamespaceSandbox."""

    name: str

    def run(self, spec: RunSpec, stdout_cb: Optional[OutputCallback] = None,
            cancel: Optional[object] = None) -> RunResult:
        """Run to completion, streaming output to ``stdout_cb``.

        ``cancel`` is a ``threading.Event``: setting it kills the process
        tree and raises :class:`SandboxCancelled`.  Nothing the run created
        (mounts, processes, runtime state, temporary directories) outlives
        the call.
        """
        ...
