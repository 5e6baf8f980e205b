"""Pure pieces of a sandboxed run: the OCI runtime spec and its files.

Everything here is a function of its arguments (no I/O), so the unit tests
can check namespaces, mounts, hosts and resolv.conf contents and ulimits
without a runtime.  The defaults follow Docker's and BuildKit's default spec
(moby ``oci/defaults.go``, BuildKit ``executor/oci``).
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bakery.errors import BakeryError

from .seccomp import default_profile
from .spec import DEFAULT_PATH, MOUNT_TYPES, NETWORK_MODES, RunSpec, SandboxMount
from .users import ExecUser

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_NAMESERVERS",
    "DEFAULT_RESOLV_CONF",
    "DEVICES",
    "MASKED_PATHS",
    "READONLY_PATHS",
    "RLIM_INFINITY",
    "build_oci_config",
    "check_spec",
    "make_hosts",
    "make_resolv_conf",
    "mount_target",
    "network_notes",
    "parse_extra_host",
    "parse_ulimit",
    "process_env",
    "standard_mounts",
    "user_mount",
]

#: Docker's default capability set (what a RUN step gets).
DEFAULT_CAPABILITIES: Tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: Tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: Tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: (path, major, minor): the character devices of a minimal /dev.
DEVICES: Tuple[Tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)

RLIM_INFINITY = 2**64 - 1

_RLIMITS = {
    "as": "RLIMIT_AS",
    "core": "RLIMIT_CORE",
    "cpu": "RLIMIT_CPU",
    "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS",
    "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE",
    "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC",
    "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK",
}

DEFAULT_NAMESERVERS: Tuple[str, ...] = (
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
)
DEFAULT_RESOLV_CONF = "".join(f"nameserver {ns}\n" for ns in DEFAULT_NAMESERVERS)


# -- ulimits, hosts, resolv.conf ----------------------------------------------


def parse_ulimit(text: str) -> Tuple[str, int, int]:
    """``"nofile=1024:2048"`` → ``("RLIMIT_NOFILE", 1024, 2048)`` (soft,
    hard); one value sets both; -1 is unlimited.  Docker's syntax and
    messages (go-units ``ParseUlimit``)."""
    name, eq, values = text.partition("=")
    if not eq:
        raise BakeryError(f"invalid ulimit argument: {text}", hint='write it as "nofile=1024:2048"')
    rtype = _RLIMITS.get(name.strip().lower())
    if rtype is None:
        raise BakeryError(f"invalid ulimit type: {name}",
                          hint="one of: " + ", ".join(sorted(_RLIMITS)))
    parts = values.split(":")
    if len(parts) > 2:
        raise BakeryError(f"too many limit value arguments - {values}, can only have up to two, "
                          "`soft[:hard]`")
    nums: List[int] = []
    for p in parts:
        try:
            nums.append(int(p.strip()))
        except ValueError:
            raise BakeryError(f"invalid ulimit value {p!r} in {text}") from None
    soft = nums[0]
    hard = nums[1] if len(nums) > 1 else soft
    if soft < -1 or hard < -1:
        raise BakeryError(f"invalid ulimit value in {text}: limits are -1 (unlimited) or >= 0")
    if hard != -1 and (soft == -1 or soft > hard):
        raise BakeryError(f"ulimit soft limit must be less than or equal to hard limit: "
                          f"{soft} > {hard}")

    def conv(v: int) -> int:
        return RLIM_INFINITY if v == -1 else v

    return rtype, conv(soft), conv(hard)


def parse_extra_host(text: str) -> Tuple[str, str]:
    """``"name=ip"`` or ``"name:ip"`` → (name, normalised ip)."""
    sep = "=" if "=" in text else ":"
    name, found, ip = text.partition(sep)
    name, ip = name.strip(), ip.strip()
    if not found or not name or not ip:
        raise BakeryError(f"invalid extra host {text!r}", hint='write it as "name=ip"')
    if ip == "host-gateway":
        raise BakeryError(f"extra host {text!r}: host-gateway needs a bridge network, "
                          "which bakery's sandbox does not provide",
                          hint="give an IP address, or use network=host")
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise BakeryError(f"invalid IP address in extra host {text!r}") from None
    return name, str(addr)


def make_hosts(hostname: str, extra_hosts: Sequence[str] = ()) -> str:
    """/etc/hosts as BuildKit writes it for a RUN step."""
    lines = [f"127.0.0.1\tlocalhost {hostname or 'buildkitsandbox'}",
             "::1\tlocalhost ip6-localhost ip6-loopback"]
    for h in extra_hosts:
        name, ip = parse_extra_host(h)
        lines.append(f"{ip}\t{name}")
    return "\n".join(lines) + "\n"


def _nameservers(text: str) -> List[str]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            out.append(fields[1])
    return out


def _is_loopback(ns: str) -> bool:
    try:
        return ipaddress.ip_address(ns.split("%")[0]).is_loopback
    except ValueError:
        return False


def make_resolv_conf(host_text: Optional[str], host_network: bool = False) -> str:
    """/etc/resolv.conf for a RUN step, from the host's (None if missing).

    As BuildKit: with the host network the host's file is used as is; in a
    network namespace, loopback nameservers (127.0.0.53 and friends) cannot
    work and are dropped, and when none is left Google's public servers are
    used."""
    if host_text is None:
        return DEFAULT_RESOLV_CONF
    if host_network and _nameservers(host_text):
        return host_text if host_text.endswith("\n") else host_text + "\n"
    kept = []
    for line in host_text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and _is_loopback(fields[1]):
            continue
        kept.append(line)
    text = "\n".join(kept).strip("\n")
    text = text + "\n" if text else ""
    if not _nameservers(text):
        text += DEFAULT_RESOLV_CONF
    return text


# -- the process -------------------------------------------------------------


def check_spec(spec: RunSpec) -> None:
    """Reject specs no sandbox can run (before anything is created)."""
    if not spec.args:
        raise BakeryError("nothing to run: the command is empty")
    if spec.network not in NETWORK_MODES:
        raise BakeryError(f"unknown network mode {spec.network!r}",
                          hint="one of: " + ", ".join(NETWORK_MODES))
    if spec.shm_size is not None and spec.shm_size < 0:
        raise BakeryError(f"invalid shm size {spec.shm_size}")
    for m in spec.mounts:
        if m.type not in MOUNT_TYPES:
            raise BakeryError(f"unknown mount type {m.type!r}", hint="one of: " + ", ".join(MOUNT_TYPES))
        if m.type in ("bind", "cache", "ssh") and not m.source:
            raise BakeryError(f"{m.type} mount at {m.target} has no source")
        if m.type == "secret" and not m.source and m.data is None:
            raise BakeryError(f"secret mount at {m.target} has no source")
        if not m.target:
            raise BakeryError(f"{m.type} mount has no target")
    for name in spec.secret_env:
        if not name or "=" in name or "\0" in name:
            raise BakeryError(f"invalid environment variable name for a secret: {name!r}")
    for u in spec.ulimits:
        parse_ulimit(u)
    for h in spec.extra_hosts:
        parse_extra_host(h)


def network_notes(spec: RunSpec) -> List[str]:
    if spec.network == "default":
        return ["network mode \"default\" runs without a network (loopback only): "
                "bakery's sandbox has no bridge network"]
    return []


def process_env(spec: RunSpec, user: ExecUser, with_secrets: bool = True) -> List[str]:
    """The process environment: ``spec.env`` with PATH and HOME filled in
    when absent, then ``spec.secret_env`` (overriding) when asked for."""
    env = list(spec.env)
    names = {e.partition("=")[0] for e in env}
    if "PATH" not in names:
        env.append(f"PATH={DEFAULT_PATH}")
    if "HOME" not in names:
        env.append(f"HOME={user.home or '/'}")
    if with_secrets and spec.secret_env:
        env = [e for e in env if e.partition("=")[0] not in spec.secret_env]
        env.extend(f"{k}={v}" for k, v in spec.secret_env.items())
    return env


def mount_target(m: SandboxMount, cwd: str) -> str:
    """The absolute, normalised target of a mount (relative → from cwd)."""
    return posixpath.normpath(posixpath.join(cwd or "/", m.target))


def standard_mounts(shm_size: int, with_cgroup: bool = True) -> List[Dict[str, Any]]:
    """/proc, a minimal /dev, /sys: Docker's default mounts."""
    mounts: List[Dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    if with_cgroup:
        mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                       "options": ["ro", "nosuid", "noexec", "nodev", "relatime"]})
    return mounts


def user_mount(m: SandboxMount, source: str, cwd: str) -> Dict[str, Any]:
    """The OCI mount for a spec mount whose host path is ``source`` (for a
    secret: the private copy)."""
    target = mount_target(m, cwd)
    if m.type == "tmpfs":
        opts = ["nosuid", "nodev"]
        if m.size:
            opts.append(f"size={int(m.size)}")
        if m.readonly:
            opts.append("ro")
        return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts}
    if m.type in ("secret", "ssh"):
        return {"destination": target, "type": "bind", "source": source,
                "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
    return {"destination": target, "type": "bind", "source": source,
            "options": ["rbind", "ro" if m.readonly else "rw"]}


def build_oci_config(
    spec: RunSpec,
    user: ExecUser,
    env: Sequence[str],
    hosts_path: str,
    resolv_path: str,
    mount_sources: Sequence[str],
    with_cgroup: bool = True,
    machine: Optional[str] = None,
) -> Dict[str, Any]:
    """The OCI runtime spec (config.json) for ``spec``.

    ``env`` is the final process environment (see :func:`process_env`);
    ``mount_sources[i]`` is the host path of ``spec.mounts[i]``; ``machine``
    (default: this host's) chooses the seccomp filter's architectures."""
    host_net = spec.network == "host"
    namespaces = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if not host_net:
        namespaces.append({"type": "network"})
    mounts = standard_mounts(spec.shm_size, with_cgroup=with_cgroup)
    mounts.append({"destination": "/etc/hosts", "type": "bind", "source": hosts_path,
                   "options": ["rbind", "ro"]})
    mounts.append({"destination": "/etc/resolv.conf", "type": "bind", "source": resolv_path,
                   "options": ["rbind", "ro"]})
    for m, src in zip(spec.mounts, mount_sources):
        mounts.append(user_mount(m, src, spec.cwd))
    rlimits: List[Dict[str, Any]] = []
    for u in spec.ulimits:
        rtype, soft, hard = parse_ulimit(u)
        rlimits = [r for r in rlimits if r["type"] != rtype]
        rlimits.append({"type": rtype, "soft": soft, "hard": hard})
    proc_user: Dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        proc_user["additionalGids"] = list(user.additional_gids)
    caps = list(DEFAULT_CAPABILITIES)
    process: Dict[str, Any] = {
        "terminal": False,
        "user": proc_user,
        "args": list(spec.args),
        "env": list(env),
        "cwd": posixpath.normpath(posixpath.join("/", spec.cwd or "/")),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": False,
    }
    if rlimits:
        process["rlimits"] = rlimits
    devices = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
               for p, ma, mi in DEVICES]
    dev_rules: List[Dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    dev_rules += [{"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
                  for _, ma, mi in DEVICES]
    dev_rules += [{"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
                  {"allow": True, "type": "c", "major": 136, "access": "rwm"}]  # pts
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": spec.rootfs, "readonly": False},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "devices": devices,
            "resources": {"devices": dev_rules},
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": default_profile(os.uname().machine if machine is None else machine),
        },
    }
