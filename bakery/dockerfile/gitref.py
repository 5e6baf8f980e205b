"""Git references in ``ADD`` sources, as BuildKit's gitutil.ParseGitRef reads them.

A source is a git reference when it is

* a URL with the ``git://`` or ``ssh://`` scheme,
* an ``http://`` or ``https://`` URL whose path ends with ``.git``,
* an SCP-style address ``user@host:path``,

optionally followed by a fragment: ``#ref:subdir`` (a branch, tag or
commit, and a directory inside the repository), or the CSV form
``##ref=...,subdir=...,commit=...``.

Example::

    >>> parse_git_ref("https://example.com/r.git#v1.0:docs")
    GitRef(remote='https://example.com/r.git', ref='v1.0', subdir='docs', commit='')
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Optional

__all__ = ["GitRef", "is_git_ref", "parse_git_ref"]

_PROTO = re.compile(r"^([a-zA-Z0-9]+)://")
_SCP = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:(?!//)[^#]*")
_SUPPORTED = ("http", "https", "ssh", "git")


@dataclass(frozen=True)
class GitRef:
    remote: str  # what git is given (no fragment)
    ref: str = ""  # branch, tag or commit; "" = the remote's HEAD
    subdir: str = ""
    commit: str = ""  # the CSV form's commit=, checked against what ref resolves to


def _fragment(frag: str) -> GitRef:
    if frag.startswith("#"):  # "##" in the URL: the CSV form
        out = {"ref": "", "subdir": "", "commit": ""}
        body = frag[1:]
        if body:
            for f in body.split(","):
                k, sep, v = f.partition("=")
                if not sep:
                    raise ValueError(f"invalid field '{f}' must be a key=value pair")
                k = k.strip().lower()
                if k not in out:
                    raise ValueError(f"unexpected key '{k}' in '{f}' (supported keys: ref, commit, subdir)")
                out[k] = v
        if out["commit"] and not out["ref"]:
            out["ref"] = out["commit"]
        return GitRef("", out["ref"], out["subdir"], out["commit"])
    ref, _, subdir = frag.partition(":")
    return GitRef("", ref, subdir)


def parse_git_ref(src: str) -> Optional[GitRef]:
    """The git reference ``src`` names, None when it is not one.
    Raises ValueError for a git URL with a bad fragment or protocol."""
    m = _PROTO.match(src)
    if m:
        proto = m.group(1).lower()
        if proto not in _SUPPORTED:
            return None
        base, _, frag = src.partition("#")
        parts = urllib.parse.urlsplit(base)
        if proto in ("http", "https") and not parts.path.endswith(".git"):
            return None
        if not parts.hostname and proto != "ssh":
            raise ValueError(f"invalid git URL {src!r}: no host")
    elif _SCP.match(src):
        base, _, frag = src.partition("#")
    else:
        return None
    f = _fragment(frag) if frag else GitRef("")
    return GitRef(base, f.ref, f.subdir, f.commit)


def is_git_ref(src: str) -> bool:
    try:
        return parse_git_ref(src) is not None
    except ValueError:
        return True  # a git URL, badly written: reported where it is used
