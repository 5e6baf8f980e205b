"""Run RUN steps in a real sandbox.

Interface::

    spec = RunSpec(rootfs="/path/to/rootfs", args=("/bin/sh", "-c", "echo hi"),
                   env=("PATH=/bin",), cwd="/work", user="nobody")
    sandbox, why = detect_sandbox()
    result = sandbox.run(spec, stdout_cb=progress.write, cancel=event)
    result.exit_code, result.output  # the last 64 KiB

Implementations:

* :class:`RuncSandbox`: an OCI runtime (runc, else crun) with a generated
  config.json: pid/ipc/uts/mount namespaces, a network namespace with only
  loopback (or the host's with ``network="host"`` when allowed), /proc, a
  minimal /dev, /sys, BuildKit's /etc/hosts and /etc/resolv.conf, Docker's
  capabilities and masked/read-only paths, a seccomp filter (seccomp.py).
* :class:`NamespaceSandbox`: the same through unshare(2)/pivot_root(2) in a
  Python helper when no runtime is installed (no cgroups or seccomp; see
  its module).
* Not as root, both run rootless: a user namespace maps the invoking user
  to root (rootless.py; runc ``--rootless``).
* :func:`detect_sandbox` picks one and says why.
* ssh.py: the agent sockets ``RUN --mount=type=ssh`` forwards.

Not supported: subordinate id ranges in rootless runs (one mapped id only),
AppArmor/SELinux, resource limits through cgroups.  Foreign platforms run
through binfmt_misc handlers (bakery.engine.emulation).
"""

from __future__ import annotations

from .detect import UnavailableSandbox, detect_sandbox
from .namespace import NamespaceSandbox
from .oci import build_oci_config, make_hosts, make_resolv_conf, parse_ulimit
from .runc import RuncSandbox
from .spec import (
    DEFAULT_PATH,
    DEFAULT_SHM_SIZE,
    OUTPUT_TAIL,
    RunResult,
    RunSpec,
    Sandbox,
    SandboxCancelled,
    SandboxMount,
    SandboxTimeout,
)
from .users import ExecUser, resolve_user

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_SHM_SIZE",
    "OUTPUT_TAIL",
    "ExecUser",
    "NamespaceSandbox",
    "RunResult",
    "RunSpec",
    "RuncSandbox",
    "Sandbox",
    "SandboxCancelled",
    "SandboxMount",
    "SandboxTimeout",
    "UnavailableSandbox",
    "build_oci_config",
    "detect_sandbox",
    "make_hosts",
    "make_resolv_conf",
    "parse_ulimit",
    "resolve_user",
]
