"""Pick the sandbox for this machine (``bakery info`` shows the reason)."""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

from bakery.errors import BakeryError

from .namespace import NamespaceSandbox, namespace_support
from .rootless import current_idmap, host_userns_problem
from .runc import RuncSandbox, find_runtime
from .spec import OutputCallback, RunResult, RunSpec
from .userns import reexecuted

__all__ = ["UnavailableSandbox", "detect_sandbox"]


class UnavailableSandbox:
    """Stands in when nothing can run RUN steps; ``run`` says why."""

    name = "unavailable"

    def __init__(self, reason: str, hint: Optional[str] = None):
        self.reason = reason
        self.hint = hint

    def run(self, spec: RunSpec, stdout_cb: Optional[OutputCallback] = None,
            cancel: Optional[Any] = None) -> RunResult:
        raise BakeryError(f"cannot run RUN steps: {self.reason}", hint=self.hint)


def detect_sandbox(prefer: Optional[str] = None, allow_network_host: bool = False,
                   tmp_dir: Optional[str] = None) -> Tuple[Any, str]:
    """(sandbox, why it was chosen).

    Order: runc, crun, the namespace fallback.  ``prefer`` (or the
    ``BAKERY_SANDBOX`` environment variable) is ``runc``, ``crun`` or
    ``namespace``.  Not as root, runc or else the namespace sandbox run
    rootless (see :mod:`.rootless`; crun is not used); without user
    namespaces the result is an :class:`UnavailableSandbox` that explains
    why."""
    choice = (prefer or os.environ.get("BAKERY_SANDBOX", "")).strip().lower() or "auto"
    if choice not in ("auto", "runc", "crun", "namespace"):
        raise BakeryError(f"unknown sandbox {choice!r}", hint="one of: runc, crun, namespace")
    if os.geteuid() != 0 or reexecuted():
        return _rootless(choice, allow_network_host, tmp_dir)
    runtimes = ("runc", "crun") if choice == "auto" else (choice,) if choice != "namespace" else ()
    for name in runtimes:
        path = find_runtime(name)
        if path is None:
            continue
        sb = RuncSandbox(path, allow_network_host=allow_network_host, tmp_dir=tmp_dir)
        ver = sb.version()
        why = f"{name}{' ' + ver if ver else ''} at {path}"
        if choice == "auto":
            why += " (the first OCI runtime found)"
        return sb, why
    if choice in ("runc", "crun"):
        return (UnavailableSandbox(f"{choice} is not installed", hint=f"apt-get install {choice}"),
                f"{choice} was asked for but is not installed")
    reason = namespace_support()
    if reason is not None:
        return UnavailableSandbox(reason), reason
    why = "Linux namespaces through a Python helper"
    if choice == "auto":
        why += " (no runc or crun installed; no cgroups, seccomp or device isolation)"
    return NamespaceSandbox(allow_network_host=allow_network_host, tmp_dir=tmp_dir), why


def _rootless(choice: str, allow_network_host: bool, tmp_dir: Optional[str]) -> Tuple[Any, str]:
    uid, gid = os.getuid(), os.getgid()
    mapping = (f"rootless: not root, so a user namespace maps uid {uid}/gid {gid} to root "
               "(a single-id mapping: steps run as root only)")
    if reexecuted():
        idmap = current_idmap()
        n = idmap.size if idmap is not None else 0
        mapping = (f"rootless: bakery runs in a user namespace of {n} ids (the invoking user is root, "
                   "then its subordinate ids from /etc/subuid and /etc/subgid)")
        if choice == "namespace":
            reason = "the namespace sandbox cannot nest subordinate ids; rootless with them needs runc"
            return UnavailableSandbox(reason, hint="unset BAKERY_SANDBOX, or set BAKERY_USERNS=0"), reason
    if choice == "crun":
        reason = "not root, and rootless runs use runc --rootless or the namespace sandbox, not crun"
        return UnavailableSandbox(reason, hint="unset BAKERY_SANDBOX, or run bakery as root"), reason
    problem = host_userns_problem()
    if problem is not None:
        reason = f"not root, and rootless runs need user namespaces: {problem}"
        return UnavailableSandbox(reason, hint="run bakery as root, or enable user namespaces "
                                  "(sysctl user.max_user_namespaces=15000)"), reason
    path = find_runtime("runc") if choice != "namespace" else None
    if path is not None:
        sb = RuncSandbox(path, allow_network_host=allow_network_host, tmp_dir=tmp_dir)
        ver = sb.version()
        return sb, f"runc{' ' + ver if ver else ''} at {path}, {mapping}"
    if choice == "runc":
        reason = "runc was asked for but is not installed"
        return UnavailableSandbox(reason, hint="apt-get install runc"), reason
    unsupported = namespace_support()
    if unsupported is not None:
        return UnavailableSandbox(unsupported), unsupported
    why = "Linux namespaces through a Python helper"
    if choice == "auto":
        why += " (no runc installed; no cgroups, seccomp or device isolation)"
    return NamespaceSandbox(allow_network_host=allow_network_host, tmp_dir=tmp_dir), f"{why}, {mapping}"
