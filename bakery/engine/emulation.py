"""Foreign platforms through qemu-user-static and binfmt_misc.

A RUN step for ``linux/arm64`` on an amd64 machine executes the arm64
binaries of its root filesystem through ``qemu-aarch64-static``.  The kernel
finds the emulator through a binfmt_misc entry; :func:`ensure_emulator`
registers one when it is missing, with the flags containers need:

* ``F`` (fix binary): the kernel opens the emulator at registration, so it
  works inside the container's root filesystem, which has no qemu;
* ``P`` (preserve argv[0]) through Debian's ``*-binfmt-P`` names: busybox
  and other multi-call binaries pick their applet from argv[0].

Registering needs root and a mounted (or mountable) binfmt_misc; without
them the step fails with a message saying what to install or run.
"""

from __future__ import annotations

import os
import platform as _platform
import subprocess
from typing import Optional

from bakery.errors import BakeryError

__all__ = ["ensure_emulator", "native"]

BINFMT = "/proc/sys/fs/binfmt_misc"

# ELF magic and mask per qemu name, as qemu's scripts/qemu-binfmt-conf.sh has them
_MAGIC = {
    "aarch64": (r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    "arm": (r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    "x86_64": (r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
               r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    "riscv64": (r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    "s390x": (r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
              r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    "ppc64le": (r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00"),
}
_QEMU = {"arm64": "aarch64", "arm": "arm", "amd64": "x86_64", "riscv64": "riscv64",
         "s390x": "s390x", "ppc64le": "ppc64le"}
_HOST = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def native(arch: str) -> bool:
    host = _HOST.get(_platform.machine().lower(), _platform.machine().lower())
    return arch == host or (host == "amd64" and arch == "386") or (host == "arm64" and arch == "arm")


def ensure_emulator(arch: str) -> Optional[str]:
    """Make sure ``arch`` binaries can run here; returns a note or None."""
    if native(arch):
        return None
    q = _QEMU.get(arch)
    if q is None:
        raise BakeryError(f"no emulator known for {arch}")
    entry = os.path.join(BINFMT, f"qemu-{q}")
    if os.path.exists(entry):
        with open(entry) as fh:
            text = fh.read()
        if "enabled" in text and "F" in text.split("flags:")[-1]:
            return None
    interp = f"/usr/libexec/qemu-binfmt/{q}-binfmt-P"
    if not os.path.exists(interp):
        interp = f"/usr/bin/qemu-{q}-static"
    if not os.path.exists(interp):
        raise BakeryError(
            f"cannot run {arch} steps: qemu-{q}-static is not installed",
            hint="install Debian's qemu-user-static (apt-get install qemu-user-static)",
        )
    if os.geteuid() != 0:
        raise BakeryError(f"cannot run {arch} steps: the qemu-{q} binfmt_misc entry is missing",
                          hint="as root: bakery registers it itself; or run update-binfmts --enable")
    if not os.path.exists(os.path.join(BINFMT, "register")):
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT], capture_output=True)
    if os.path.exists(entry):
        with open(entry, "w") as fh:
            fh.write("-1")
    magic, mask = _MAGIC[q]
    flags = "OPF" if interp.endswith("-binfmt-P") else "F"
    try:
        with open(os.path.join(BINFMT, "register"), "w") as fh:
            fh.write(f":qemu-{q}:M::{magic}:{mask}:{interp}:{flags}")
    except OSError as e:
        raise BakeryError(f"cannot register the {arch} emulator: {e.strerror}",
                          hint="mount binfmt_misc (mount -t binfmt_misc binfmt_misc "
                               "/proc/sys/fs/binfmt_misc) and run as root") from None
    return f"registered qemu-{q} for {arch} steps (binfmt_misc, flags {flags})"
