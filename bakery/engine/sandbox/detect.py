"""Pick the sandbox for this machine (``bakery info`` shows the reason)."""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

from bakery.errors import BakeryError

from .namespace import NamespaceSandbox, namespace_support
from .runc import RuncSandbox, find_runtime
from .spec import OutputCallback, RunResult, RunSpec

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
    ``namespace``.  Everything needs root: rootless runs (user namespaces,
    ``runc --rootless``) are not supported yet, so a non-root user gets an
    :class:`UnavailableSandbox` that explains it."""
    choice = (prefer or os.environ.get("BAKERY_SANDBOX", "")).strip().lower() or "auto"
    if choice not in ("auto", "runc", "crun", "namespace"):
        raise BakeryError(f"unknown sandbox {choice!r}", hint="one of: runc, crun, namespace")
    if os.geteuid() != 0:
        return (UnavailableSandbox(
            "running RUN steps needs root; rootless sandboxes (user namespaces) are not "
            "supported yet", hint="run bakery as root (e.g. with sudo)"),
            "not root: rootless sandboxes are not supported yet")
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
