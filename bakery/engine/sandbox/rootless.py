"""Rootless runs: RUN steps when bakery does not run as root.

The step runs in a user namespace where the invoking user is root
(``runc --rootless``, or the namespace sandbox's helper, with a ``user``
namespace and a single-id mapping ``0 -> getuid()``, ``0 -> getgid()``).
What follows from that:

* inside the step everything runs as uid 0 / gid 0; a ``USER`` other than
  root, ``chown`` to another id and ``setuid`` fail (those ids are not
  mapped), and so do secret mounts owned by another uid/gid;
* the root filesystem is the copying snapshotter's (bakery.engine.snapshots),
  a tree owned by the invoking user: files from the base layers appear owned
  by root in the step whatever owner their layer gave them;
* in the layer a step makes, a file owned by the invoking user is recorded
  as 0:0, except a file that existed in a lower layer and kept its owner:
  it keeps the owner its layer gave it (see :func:`layer_owner`);
* no cgroups (no device cgroup rules, no ``runc kill --all`` through the
  cgroup: the container's pid 1 is killed and the kernel kills the rest of
  its PID namespace), /sys is a read-only bind of the host's, devices are
  bind mounts of the host's.

With subordinate ids (/etc/subuid, /etc/subgid and Debian's uidmap) bakery
instead re-executes itself inside a user namespace that has them
(userns.py): it is then root there (``IdMap(0, 0, n)``), extracts, reads and
removes root filesystems in that namespace, and the steps share its ids (no
nested user namespace): ``USER``, chown and ``COPY --chown`` work and the
layers keep the owners the steps gave.  Without them, the single-id mapping
above.

Everything here is pure and unit-tested except :func:`current_idmap`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from bakery.errors import BakeryError

from .users import ExecUser

__all__ = ["IdMap", "check_user", "current_idmap", "host_userns_problem", "layer_owner", "rootless_config", "userns_support"]


@dataclass(frozen=True)
class IdMap:
    """Ids ``0..size-1`` of the step are ``uid..uid+size-1`` (``gid...``)
    outside: the invoking user's own ids (size 1), or, in the namespace
    bakery re-executed itself in (userns.py), all of its ids (uid 0)."""

    uid: int
    gid: int
    size: int = 1

    def uid_mappings(self) -> List[Dict[str, int]]:
        return [{"containerID": 0, "hostID": self.uid, "size": self.size}]

    def gid_mappings(self) -> List[Dict[str, int]]:
        return [{"containerID": 0, "hostID": self.gid, "size": self.size}]

    def mapped(self, i: int) -> bool:
        return 0 <= i < self.size

    def to_inside(self, uid: int, gid: int) -> Tuple[int, int]:
        """The ids a host owner has in the step's view (unmapped ids are
        the overflow id 65534, as the kernel shows them)."""
        u, g = uid - self.uid, gid - self.gid
        return (u if self.mapped(u) else 65534, g if self.mapped(g) else 65534)


def current_idmap() -> Optional[IdMap]:
    """The mapping to use: None when running as root (no user namespace)."""
    from .userns import namespace_ids, reexecuted

    if os.geteuid() == 0:
        return IdMap(0, 0, namespace_ids()) if reexecuted() else None
    return IdMap(os.getuid(), os.getgid())


def userns_support(max_user_namespaces: Optional[str]) -> Optional[str]:
    """None when user namespaces can be created (from the text of
    /proc/sys/user/max_user_namespaces, None when missing), else why not."""
    if max_user_namespaces is None:
        return "the kernel has no user namespaces (/proc/sys/user/max_user_namespaces is missing)"
    try:
        n = int(max_user_namespaces.strip())
    except ValueError:
        return f"cannot read /proc/sys/user/max_user_namespaces ({max_user_namespaces.strip()!r})"
    if n <= 0:
        return "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
    return None


def host_userns_problem() -> Optional[str]:
    """:func:`userns_support` for this machine (None: user namespaces work)."""
    try:
        with open("/proc/sys/user/max_user_namespaces", encoding="ascii") as f:
            text: Optional[str] = f.read()
    except OSError:
        text = None
    return userns_support(text)


def check_user(user: ExecUser, spec_user: str, idmap: Optional[IdMap] = None) -> None:
    """A rootless step can only run as a mapped id (only root with a
    single-id mapping)."""
    size = idmap.size if idmap is not None else 1
    ids = [user.uid, user.gid, *user.additional_gids]
    if any(not 0 <= i < size for i in ids):
        if size == 1:
            raise BakeryError(
                f"cannot run as user {spec_user!r} (uid {user.uid}, gid {user.gid}) without root: "
                "a rootless step has only uid 0 and gid 0 (the invoking user mapped to root)",
                hint="run bakery as root, give the user subordinate ids (/etc/subuid, /etc/subgid, "
                     "Debian's uidmap), or drop the USER instruction before this RUN",
            )
        raise BakeryError(
            f"cannot run as user {spec_user!r} (uid {user.uid}, gid {user.gid}): the rootless "
            f"user namespace maps ids 0 to {size - 1} only",
            hint="give the user a larger range in /etc/subuid and /etc/subgid, or run bakery as root")


def layer_owner(host_uid: int, host_gid: int, idmap: IdMap,
                original: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """The owner a changed file gets in the layer.

    ``original`` is the owner the lower layers gave the path (None for a
    new path).  A file still owned by the invoking user kept the owner it
    had (the step could not have chowned it to anything else but root, which
    is the same host owner), so it keeps ``original``; anything else is
    recorded as the step saw it."""
    if host_uid == idmap.uid and host_gid == idmap.gid and original is not None:
        return original
    return idmap.to_inside(host_uid, host_gid)


def _mapped_option(opt: str, idmap: IdMap) -> bool:
    try:
        return idmap.mapped(int(opt.partition("=")[2]))
    except ValueError:
        return False


def rootless_config(config: Dict[str, Any], idmap: IdMap) -> Dict[str, Any]:
    """A root spec made rootless (as ``runc spec --rootless`` does): a user
    namespace with the mappings (none inside bakery's own namespace, where
    ``idmap`` is the identity), no cgroup resources or cgroup
    mount, /sys bound from the host, devpts without a gid= that is not
    mapped (gid 5 with a single-id mapping)."""
    cfg = dict(config)
    linux = dict(cfg.get("linux") or {})
    if (idmap.uid, idmap.gid) != (0, 0):
        namespaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "user"]
        namespaces.append({"type": "user"})
        linux["namespaces"] = namespaces
        linux["uidMappings"] = idmap.uid_mappings()
        linux["gidMappings"] = idmap.gid_mappings()
    # else: bakery's own namespace (userns.py), whose ids the step shares as
    # they are (the kernel refuses a nested map of its root to its root)
    linux.pop("resources", None)
    linux.pop("cgroupsPath", None)
    cfg["linux"] = linux
    mounts = []
    for m in cfg.get("mounts", []):
        if m.get("type") == "cgroup":
            continue
        if m.get("destination") == "/sys":
            m = {"destination": "/sys", "type": "bind", "source": "/sys",
                 "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
        else:
            m = dict(m, options=[o for o in m.get("options", [])
                                 if not (o.startswith("gid=") and not _mapped_option(o, idmap))])
        mounts.append(m)
    cfg["mounts"] = mounts
    return cfg
