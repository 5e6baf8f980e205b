"""Foreign platforms through qemu-user-static and binfmt_misc.

A RUN step for ``linux/arm64`` on an amd64 machine executes the arm64
binaries of its root filesystem through ``qemu-aarch64``.  The kernel finds
the emulator through a binfmt_misc entry, which must have the ``F``
(fix-binary) flag: the kernel then opens the emulator at registration, so it
works inside the step's root filesystem, which has no qemu.

Handlers come from Debian's qemu-user-static (``/usr/share/binfmts/qemu-*``,
update-binfmts' format: magic, mask, offset, interpreter, preserve,
credentials), registered with ``F`` added; ``P`` (preserve argv[0]) is kept
as Debian has it (busybox and other multi-call binaries pick their applet
from argv[0]).  Without those files a small built-in table of ELF magics
with ``/usr/bin/qemu-*-static`` is used.

* :func:`ensure_emulator` (called for each architecture of a build's RUN
  steps): nothing when the host runs it or a handler with ``F`` is
  registered; registers one as root; otherwise a clear error.
* :func:`setup_emulation` (``bakery setup emulation``): registers the
  handlers of every (or the named) architecture, idempotently, and reports
  what it did.  A handler already registered with ``F`` and the same
  interpreter is left alone (a build using it is never disturbed).

Registering needs root and a mounted (or mountable) binfmt_misc.
"""

from __future__ import annotations

import os
import platform as _platform
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from bakery.errors import BakeryError

__all__ = [
    "Handler",
    "builtin_handler",
    "debian_handlers",
    "emulation_status",
    "ensure_emulator",
    "native",
    "parse_debian_binfmt",
    "parse_entry",
    "qemu_name",
    "register_line",
    "setup_emulation",
]

BINFMT = "/proc/sys/fs/binfmt_misc"
DEBIAN_BINFMTS = "/usr/share/binfmts"

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
# OCI architecture -> qemu's name
_QEMU = {"arm64": "aarch64", "arm": "arm", "amd64": "x86_64", "386": "i386", "riscv64": "riscv64",
         "s390x": "s390x", "ppc64le": "ppc64le", "ppc64": "ppc64", "mips64le": "mips64el",
         "mips64": "mips64", "mipsle": "mipsel", "mips": "mips", "loong64": "loongarch64"}
_HOST = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class Handler:
    """One binfmt_misc handler: ``name`` is the entry (``qemu-aarch64``)."""

    name: str
    interpreter: str
    magic: str  # \\x escapes, as the kernel's register file takes them
    mask: str
    offset: int = 0
    flags: str = "F"


def native(arch: str) -> bool:
    host = _HOST.get(_platform.machine().lower(), _platform.machine().lower())
    return arch == host or (host == "amd64" and arch == "386") or (host == "arm64" and arch == "arm")


def qemu_name(arch: str) -> str:
    """``arm64`` -> ``aarch64``; qemu's own names pass through."""
    a = arch.strip().lower()
    if a.startswith("linux/"):
        a = a.split("/")[1]
    return _QEMU.get(a, a)


def parse_debian_binfmt(name: str, text: str) -> Handler:
    """A /usr/share/binfmts file (update-binfmts' format) as a handler with
    the fix-binary flag."""
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            fields[key] = value.strip()
    missing = [k for k in ("interpreter", "magic") if not fields.get(k)]
    if missing:
        raise BakeryError(f"binfmt file for {name} has no {' or '.join(missing)}")
    flags = ""
    if fields.get("preserve") == "yes":
        flags += "P"
    if fields.get("credentials") == "yes":
        flags += "C"
    flags += "F"
    try:
        offset = int(fields.get("offset") or "0")
    except ValueError:
        raise BakeryError(f"binfmt file for {name}: bad offset {fields['offset']!r}") from None
    return Handler(name=name, interpreter=fields["interpreter"], magic=fields["magic"],
                   mask=fields.get("mask", ""), offset=offset, flags=flags)


def register_line(h: Handler) -> str:
    """What to write to binfmt_misc's ``register`` file for ``h``."""
    for part in (h.name, h.interpreter, h.magic, h.mask):
        if ":" in part:
            raise BakeryError(f"binfmt handler {h.name}: ':' is not allowed in {part!r}")
    return f":{h.name}:M:{h.offset or ''}:{h.magic}:{h.mask}:{h.interpreter}:{h.flags}"


def parse_entry(text: str) -> Dict[str, str]:
    """A /proc/sys/fs/binfmt_misc/<name> file: ``enabled`` ("enabled" or
    "disabled"), ``interpreter``, ``flags``..."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line in ("enabled", "disabled"):
            out["enabled"] = line
            continue
        key, _, value = line.partition(" ")
        if key.endswith(":"):
            key = key[:-1]
        out[key] = value.strip()
    return out


def _usable(entry: Dict[str, str], h: Optional[Handler] = None) -> bool:
    if entry.get("enabled") != "enabled" or "F" not in entry.get("flags", ""):
        return False
    return h is None or entry.get("interpreter") == h.interpreter


def debian_handlers(directory: str = DEBIAN_BINFMTS) -> Dict[str, Handler]:
    """qemu-user-static's handlers by qemu name (``aarch64``...)."""
    out: Dict[str, Handler] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for n in names:
        if not n.startswith("qemu-"):
            continue
        try:
            with open(os.path.join(directory, n), encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        if "package qemu-user-static" not in text:
            continue
        h = parse_debian_binfmt(n, text)
        if os.path.exists(h.interpreter):
            out[n[len("qemu-"):]] = h
    return out


def builtin_handler(q: str) -> Optional[Handler]:
    """The built-in table's handler for qemu name ``q`` when its static
    emulator is installed."""
    interp = f"/usr/libexec/qemu-binfmt/{q}-binfmt-P"
    flags = "PF"
    if not os.path.exists(interp):
        interp, flags = f"/usr/bin/qemu-{q}-static", "F"
    if q not in _MAGIC or not os.path.exists(interp):
        return None
    magic, mask = _MAGIC[q]
    return Handler(f"qemu-{q}", interp, magic, mask, 0, flags)


def _read_entry(name: str) -> Optional[Dict[str, str]]:
    try:
        with open(os.path.join(BINFMT, name), encoding="utf-8") as f:
            return parse_entry(f.read())
    except OSError:
        return None


def _mount_binfmt() -> None:
    if not os.path.exists(os.path.join(BINFMT, "register")):
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT], capture_output=True)
    if not os.path.exists(os.path.join(BINFMT, "register")):
        raise BakeryError(f"binfmt_misc is not mounted at {BINFMT} and cannot be mounted",
                          hint="mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc")


def _register(h: Handler) -> str:
    """Register ``h`` (replacing an unusable entry of the same name);
    returns what was done."""
    entry = _read_entry(h.name)
    if entry is not None and _usable(entry, h):
        return f"{h.name}: already registered ({entry.get('interpreter')}, flags {entry.get('flags')})"
    if entry is not None:
        with open(os.path.join(BINFMT, h.name), "w") as fh:
            fh.write("-1")
    try:
        with open(os.path.join(BINFMT, "register"), "w") as fh:
            fh.write(register_line(h))
    except OSError as e:
        raise BakeryError(f"cannot register {h.name}: {e.strerror}",
                          hint="run as root, with binfmt_misc mounted") from None
    now = _read_entry(h.name) or {}
    what = "re-registered" if entry is not None else "registered"
    return f"{h.name}: {what} ({h.interpreter}, flags {now.get('flags', h.flags)})"


def _in_user_namespace() -> bool:
    from bakery.engine.sandbox.userns import in_user_namespace

    return in_user_namespace()


def _need_root(what: str) -> None:
    if os.geteuid() != 0 or _in_user_namespace():
        raise BakeryError(f"{what} needs root (it registers binfmt_misc handlers for the whole machine)",
                          hint="run it as root: sudo bakery setup emulation")


def setup_emulation(arches: Sequence[str] = ()) -> List[str]:
    """Register qemu-user-static's handlers (all, or those of ``arches``:
    OCI or qemu names); one report line per handler."""
    _need_root("bakery setup emulation")
    handlers = debian_handlers()
    if not handlers:
        handlers = {q: h for q in _MAGIC if (h := builtin_handler(q)) is not None}
    if not handlers:
        raise BakeryError("no qemu-user-static emulators are installed",
                          hint="apt-get install qemu-user-static")
    host_q = qemu_name(_HOST.get(_platform.machine().lower(), _platform.machine().lower()))
    if arches:
        chosen = {}
        for a in arches:
            q = qemu_name(a)
            if q == host_q:
                continue  # the host runs it natively
            if q not in handlers:
                raise BakeryError(f"no qemu-user-static emulator for {a}",
                                  hint="known: " + ", ".join(sorted(handlers)))
            chosen[q] = handlers[q]
        handlers = chosen
    else:
        handlers.pop(host_q, None)
    _mount_binfmt()
    return [_register(handlers[q]) for q in sorted(handlers)]


def emulation_status() -> str:
    """One line for ``bakery info``: the qemu handlers RUN steps can use."""
    try:
        names = sorted(n for n in os.listdir(BINFMT) if n.startswith("qemu-"))
    except OSError:
        return f"binfmt_misc is not mounted at {BINFMT} (bakery setup emulation mounts it)"
    usable: List[str] = []
    unusable: List[str] = []
    for n in names:
        entry = _read_entry(n)
        if entry is None:
            continue
        (usable if _usable(entry) else unusable).append(n[len("qemu-"):])
    if not usable:
        line = "no qemu handler with the fix-binary flag: foreign platforms cannot run RUN steps"
        hint = " (run `bakery setup emulation` as root)"
        if not debian_handlers():
            hint = " (apt-get install qemu-user-static, then `bakery setup emulation` as root)"
        return line + hint
    line = "qemu for " + ", ".join(usable)
    if unusable:
        line += f"; not usable (disabled or without F): {', '.join(unusable)}"
    return line


def ensure_emulator(arch: str) -> Optional[str]:
    """Make sure ``arch`` binaries can run here; returns a note or None."""
    if native(arch):
        return None
    q = qemu_name(arch)
    entry = _read_entry(f"qemu-{q}")
    if entry is not None and _usable(entry):
        return None
    h = debian_handlers().get(q) or builtin_handler(q)
    if h is None:
        raise BakeryError(
            f"cannot run {arch} steps: no qemu-user-static emulator for {arch} is installed",
            hint="install Debian's qemu-user-static (apt-get install qemu-user-static)",
        )
    if os.geteuid() != 0 or _in_user_namespace():
        raise BakeryError(f"cannot run {arch} steps: no binfmt_misc handler with the F flag for qemu-{q}",
                          hint="as root, run `bakery setup emulation` once (or bakery as root)")
    _mount_binfmt()
    return _register(h)
