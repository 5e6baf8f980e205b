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

Subordinate id ranges (/etc/subuid with newuidmap) are deliberately not
used: files a step creates as a subordinate id could then be neither read
(to make the layer) nor removed by the invoking user outside the namespace.

Everything here is pure and unit-tested except :func:`current_idmap`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from bakery.errors import BakeryError

from .users import ExecUser

__all__ = ["IdMap", "check_user", "current_idmap", "layer_owner", "rootless_config", "userns_support"]


@dataclass(frozen=True)
class IdMap:
    """The invoking user's ids on the host, each mapped to 0 in the step."""

    uid: int
    gid: int

    def uid_mappings(self) -> List[Dict[str, int]]:
        return [{"containerID": 0, "hostID": self.uid, "size": 1}]

    def gid_mappings(self) -> List[Dict[str, int]]:
        return [{"containerID": 0, "hostID": self.gid, "size": 1}]

    def to_inside(self, uid: int, gid: int) -> Tuple[int, int]:
        """The ids a host owner has in the step's view (unmapped ids are
        the overflow id 65534, as the kernel shows them)."""
        return (0 if uid == self.uid else 65534, 0 if gid == self.gid else 65534)


def current_idmap() -> Optional[IdMap]:
    """The mapping to use: None when running as root (no user namespace)."""
    if os.geteuid() == 0:
        return None
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


def check_user(user: ExecUser, spec_user: str) -> None:
    """A rootless step can only run as root (the one mapped id)."""
    ids = [user.uid, user.gid, *user.additional_gids]
    if any(i != 0 for i in ids):
        raise BakeryError(
            f"cannot run as user {spec_user!r} (uid {user.uid}, gid {user.gid}) without root: "
            "a rootless step has only uid 0 and gid 0 (the invoking user mapped to root)",
            hint="run bakery as root, or drop the USER instruction before this RUN",
        )


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


def rootless_config(config: Dict[str, Any], idmap: IdMap) -> Dict[str, Any]:
    """A root spec made rootless (as ``runc spec --rootless`` does): a user
    namespace with the single-id mappings, no cgroup resources or cgroup
    mount, /sys bound from the host, devpts without a gid= (gid 5 is not
    mapped)."""
    cfg = dict(config)
    linux = dict(cfg.get("linux") or {})
    namespaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "user"]
    namespaces.append({"type": "user"})
    linux["namespaces"] = namespaces
    linux["uidMappings"] = idmap.uid_mappings()
    linux["gidMappings"] = idmap.gid_mappings()
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
            m = dict(m, options=[o for o in m.get("options", []) if not o.startswith("gid=")])
        mounts.append(m)
    cfg["mounts"] = mounts
    return cfg
