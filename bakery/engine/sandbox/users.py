"""Resolve a ``USER`` string through a root filesystem's passwd and group.

The rules are runc's ``user.GetExecUser`` (what BuildKit and Docker use):

* ``""`` is uid 0; ``name`` and ``uid`` are looked up in /etc/passwd,
  ``uid:gid`` and ``name:group`` also look the group up in /etc/group;
* a numeric uid (or gid) that is not in the files is used as is, with gid 0
  and home ``/`` when the passwd entry is missing;
* a name that is not there is an error: ``unable to find user NAME: no
  matching entries in passwd file`` (``... group NAME: ... group file``);
* additional groups are the groups listing the user as a member, only when
  no group was given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from bakery.errors import BakeryError

__all__ = [
    "ExecUser",
    "GroupEntry",
    "PasswdEntry",
    "parse_group",
    "parse_passwd",
    "resolve_user",
]


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: Tuple[str, ...]


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: Tuple[int, ...] = ()
    home: str = "/"
    name: str = ""


def _int(text: str) -> Optional[int]:
    text = text.strip()
    if not text or not text.isdigit():
        return None
    return int(text)


def parse_passwd(text: str) -> List[PasswdEntry]:
    """Entries of an /etc/passwd text; malformed lines are skipped."""
    out: List[PasswdEntry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 4:
            continue
        uid, gid = _int(parts[2]), _int(parts[3])
        if uid is None or gid is None:
            continue
        home = parts[5] if len(parts) > 5 and parts[5] else "/"
        out.append(PasswdEntry(parts[0], uid, gid, home))
    return out


def parse_group(text: str) -> List[GroupEntry]:
    """Entries of an /etc/group text; malformed lines are skipped."""
    out: List[GroupEntry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 3:
            continue
        gid = _int(parts[2])
        if gid is None:
            continue
        members = tuple(m.strip() for m in parts[3].split(",") if m.strip()) if len(parts) > 3 else ()
        out.append(GroupEntry(parts[0], gid, members))
    return out


def resolve_user(user: str, passwd: Optional[str], group: Optional[str]) -> ExecUser:
    """Resolve ``user`` given the texts of /etc/passwd and /etc/group (None
    when the file does not exist)."""
    user_arg, _, group_arg = user.partition(":")
    uid, gid, home, name = 0, 0, "/", ""
    users = parse_passwd(passwd) if passwd is not None else []
    num_uid = _int(user_arg)
    if user_arg == "":
        match = [u for u in users if u.uid == 0]
    elif num_uid is not None:
        match = [u for u in users if u.uid == num_uid]
    else:
        match = [u for u in users if u.name == user_arg]
    matched = bool(match)
    if match:
        u = match[0]
        uid, gid, home, name = u.uid, u.gid, u.home, u.name
    elif user_arg and num_uid is None:
        raise BakeryError(
            f"unable to find user {user_arg}: no matching entries in passwd file",
            hint="create the user in an earlier step (adduser/useradd) or use a numeric uid",
        )
    elif num_uid is not None:
        uid = num_uid

    extra: Tuple[int, ...] = ()
    if group_arg or matched:
        groups = parse_group(group) if group is not None else []
        if group_arg:
            num_gid = _int(group_arg)
            if num_gid is not None:
                gid = num_gid
            else:
                found = [g for g in groups if g.name == group_arg]
                if not found:
                    raise BakeryError(
                        f"unable to find group {group_arg}: no matching entries in group file",
                        hint="create the group in an earlier step or use a numeric gid",
                    )
                gid = found[0].gid
        else:
            seen: List[int] = []
            for g in groups:
                if name in g.members and g.gid not in seen:
                    seen.append(g.gid)
            extra = tuple(seen)
    return ExecUser(uid=uid, gid=gid, additional_gids=extra, home=home, name=name)
