"""The resolved bake model: targets and groups as plain records.

A :class:`Target` mirrors buildx's ``bake.Target``: every attribute is
optional (``None`` means "not set", which matters for ``inherits`` merging),
composable attributes (``output``, ``cache-from``, ``secret``...) hold
:mod:`bakery.bakefile.buildflags` entries, maps of strings may hold ``None``
(an ``args`` entry set to null is "unset" and never printed).

The field table :data:`FIELDS` is the one source of truth for attribute
names, their kinds and the order in which ``--print`` shows them (buildx's
struct order).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from bakery.errors import Pos

__all__ = ["FIELDS", "FIELD_BY_KEY", "Config", "Field", "Group", "Target", "VariableInfo"]


@dataclass(frozen=True)
class Field:
    key: str  # the attribute name in bake files and in --print output
    attr: str  # the Python attribute on Target
    kind: str  # "str", "bool", "list", "map", "strmap" (values may be None), or a buildflags kind
    merge: str  # "replace", "append", "mapmerge", or "flags" (buildflags merge)


# In buildx's struct order, which is --print's key order.
FIELDS: Tuple[Field, ...] = (
    Field("description", "description", "str", "replace"),
    Field("annotations", "annotations", "list", "append"),
    Field("attest", "attest", "attest", "flags"),
    Field("context", "context", "str", "replace"),
    Field("contexts", "contexts", "map", "mapmerge"),
    Field("dockerfile", "dockerfile", "str", "replace"),
    Field("dockerfile-inline", "dockerfile_inline", "str", "replace"),
    Field("args", "args", "strmap", "mapmerge"),
    Field("labels", "labels", "strmap", "mapmerge"),
    Field("tags", "tags", "list", "replace"),
    Field("cache-from", "cache_from", "cache-from", "flags"),
    Field("cache-to", "cache_to", "cache-to", "replace"),
    Field("target", "target", "str", "replace"),
    Field("secret", "secret", "secret", "flags"),
    Field("ssh", "ssh", "ssh", "flags"),
    Field("platforms", "platforms", "list", "replace"),
    Field("output", "output", "output", "replace"),
    Field("pull", "pull", "bool", "replace"),
    Field("no-cache", "no_cache", "bool", "replace"),
    Field("network", "network", "str", "replace"),
    Field("no-cache-filter", "no_cache_filter", "list", "append"),
    Field("shm-size", "shm_size", "str", "replace"),
    Field("ulimits", "ulimits", "list", "append"),
    Field("call", "call", "str", "replace"),
    Field("entitlements", "entitlements", "list", "append"),
    Field("extra-hosts", "extra_hosts", "strmap", "mapmerge"),
    Field("policy", "policy", "policy", "append"),
    # bakery's own (not in buildx): ordering without passing data.
    Field("depends_on", "depends_on", "list", "append"),
)
FIELD_BY_KEY: Dict[str, Field] = {f.key: f for f in FIELDS}


@dataclass(frozen=True)
class Target:
    """One target; all attributes optional (``None`` = not set)."""

    name: str
    inherits: Tuple[str, ...] = ()
    description: Optional[str] = None
    annotations: Optional[List[str]] = None
    attest: Optional[List[Any]] = None
    context: Optional[str] = None
    contexts: Optional[Dict[str, str]] = None
    dockerfile: Optional[str] = None
    dockerfile_inline: Optional[str] = None
    args: Optional[Dict[str, Optional[str]]] = None
    labels: Optional[Dict[str, Optional[str]]] = None
    tags: Optional[List[str]] = None
    cache_from: Optional[List[Any]] = None
    cache_to: Optional[List[Any]] = None
    target: Optional[str] = None
    secret: Optional[List[Any]] = None
    ssh: Optional[List[Any]] = None
    platforms: Optional[List[str]] = None
    output: Optional[List[Any]] = None
    pull: Optional[bool] = None
    no_cache: Optional[bool] = None
    network: Optional[str] = None
    no_cache_filter: Optional[List[str]] = None
    shm_size: Optional[str] = None
    ulimits: Optional[List[str]] = None
    call: Optional[str] = None
    entitlements: Optional[List[str]] = None
    extra_hosts: Optional[Dict[str, Optional[str]]] = None
    policy: Optional[List[Any]] = None
    depends_on: Optional[List[str]] = None
    # Set on targets that are built only because another target's
    # ``contexts`` names them (``target:NAME``); their output is the cache.
    linked: bool = field(default=False, compare=False)

    def get(self, f: Field) -> Any:
        return getattr(self, f.attr)

    @property
    def build_platforms(self) -> Optional[List[str]]:
        """``platforms`` as a build reads them: buildx splits every entry on
        commas (``--set '*.platform=linux/amd64,linux/arm64'`` prints as one
        string but builds two platforms); empty parts and repeats dropped."""
        if self.platforms is None:
            return None
        out: List[str] = []
        for entry in self.platforms:
            for p in str(entry).split(","):
                p = p.strip()
                if p and p not in out:
                    out.append(p)
        return out

    def evolve(self, **changes: Any) -> Target:
        """A copy with ``changes`` (fields are not re-validated; this is the
        resolver's hot path, ~10x faster than dataclasses.replace)."""
        new = object.__new__(Target)
        d = new.__dict__
        d.update(self.__dict__)
        d.update(changes)
        return new


@dataclass(frozen=True)
class Group:
    name: str
    targets: Tuple[str, ...] = ()
    description: str = ""


@dataclass
class VariableInfo:
    name: str
    description: str
    value: Any
    type: Optional[str]
    pos: Optional[Pos]


@dataclass
class Config:
    """Raw targets and groups, in order of first appearance."""

    targets: List[Target] = field(default_factory=list)
    groups: List[Group] = field(default_factory=list)
    variables: List[VariableInfo] = field(default_factory=list)
    # where each target/group was first defined (for error messages)
    positions: Dict[Tuple[str, str], Pos] = field(default_factory=dict)
    # things a user should know that are not errors (ignored attributes...)
    warnings: List[str] = field(default_factory=list)
    # an impure function (timestamp(), uuidv4()...) was called: do not cache
    impure: bool = False
    # the variable overrides the evaluation asked for (name → value or None),
    # and whether the Config may be cached (see loader.load_files)
    env_reads: Dict[str, Optional[str]] = field(default_factory=dict)
    cacheable: bool = False


assert {f.attr for f in FIELDS} | {"name", "inherits", "linked"} == {
    f.name for f in fields(Target)
}
