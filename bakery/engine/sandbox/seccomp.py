"""The seccomp filter of a RUN step in an OCI runtime (runc, crun).

Docker's and BuildKit's default profile is an allowlist of about 300
system calls.  This one is the matching denylist: everything is allowed
except the system calls Docker's documentation lists as blocked for a
container without extra capabilities (docs.docker.com/engine/security/seccomp,
"Significant syscalls blocked by the default profile"), which fail with
EPERM:

* kernel modules, kexec, reboot, swap, quotas, accounting, the clock;
* mount and the new mount API, pivot_root, umount, and namespaces:
  ``unshare``, ``setns``, and ``clone`` with any ``CLONE_NEW*`` flag
  (``clone3`` fails with ENOSYS, so C libraries fall back to ``clone``,
  whose flags can be checked, as Docker does);
* the keyring (``add_key``, ``keyctl``, ``request_key``), ``bpf``,
  ``perf_event_open``, ``userfaultfd``, ``kcmp``, ``lookup_dcookie``,
  ``process_vm_readv/writev``, NUMA policy calls, file handles
  (``open_by_handle_at``), obsolete calls (``uselib``, ``ustat``, ``sysfs``,
  ``_sysctl``, ``vm86``...).

Not filtered, unlike Docker's allowlist: system calls newer than this list
and ``personality`` (Docker allows only some personas).  ``ptrace`` is
allowed, as Docker does on kernels from 4.8 on.  The namespace sandbox
(no runtime) installs no filter at all.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

__all__ = ["BLOCKED", "CLONE_NAMESPACE_FLAGS", "ENOSYS", "EPERM", "default_profile"]

EPERM = 1
ENOSYS = 38

BLOCKED: Tuple[str, ...] = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy",
    "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
    "lookup_dcookie", "mbind", "mount", "mount_setattr", "move_mount", "move_pages",
    "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open",
    "pivot_root", "process_vm_readv", "process_vm_writev", "query_module", "quotactl",
    "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns", "settimeofday", "stime",
    "swapoff", "swapon", "sysfs", "_sysctl", "umount", "umount2", "unshare", "uselib",
    "userfaultfd", "ustat", "vm86", "vm86old",
)

#: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
CLONE_NAMESPACE_FLAGS: Tuple[int, ...] = (
    0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
)

_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "armv7l": ["SCMP_ARCH_ARM"],
    "i686": ["SCMP_ARCH_X86"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}


def default_profile(machine: str) -> Dict[str, Any]:
    """The OCI ``linux.seccomp`` object for a host of ``machine``
    (``os.uname().machine``)."""
    syscalls: List[Dict[str, Any]] = [
        {"names": list(BLOCKED), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
    ]
    # clone's flags are its first argument, except on s390 (the second)
    arg = 1 if machine.startswith("s390") else 0
    for flag in CLONE_NAMESPACE_FLAGS:
        syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                         "args": [{"index": arg, "value": flag, "valueTwo": flag,
                                   "op": "SCMP_CMP_MASKED_EQ"}]})
    profile: Dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}
    arches = _ARCHES.get(machine)
    if arches:
        profile["architectures"] = arches
    return profile
