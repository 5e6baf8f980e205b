"""From raw targets to resolved ones: groups, ``inherits``, ``--set``, links.

Pure functions over :class:`~bakery.bakefile.model.Target` records, following
buildx's ``ReadTargets`` step by step:

1. requested names (globs allowed) are matched against groups and targets;
2. ``--set pattern.key[+]=value`` overrides are parsed; the pattern matches
   target names;
3. each requested group expands to its targets (nested groups, cycle-safe);
4. each target is resolved: its ``inherits`` chain merged parent-first
   (per-attribute rules in :data:`~bakery.bakefile.model.FIELDS`), then its
   overrides, then normalised (duplicates removed); parents get their own
   overrides too, so ``--set base.args.X=1`` reaches every child of ``base``;
5. the requested names form the synthetic ``default`` group;
6. targets named by ``contexts = { x = "target:y" }`` are added (as
   cache-only outputs when they were not requested), with cycle checks.

Example: ``merge_targets(Target("a", tags=["x"]), Target("a", tags=["y"]))``
gives ``tags == ["y"]`` (tags are replaced), while ``args`` maps merge.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.bakefile import buildflags
from bakery.bakefile.model import FIELDS, Config, Group, Target
from bakery.errors import BakeryError, closest

__all__ = [
    "Override",
    "Resolved",
    "merge_targets",
    "normalize_target",
    "parse_overrides",
    "read_targets",
]


# --------------------------------------------------------------------------
# Merging


def merge_targets(a: Target, b: Target) -> Target:
    """``a`` with ``b`` merged on top (buildx's Target.Merge)."""
    ad = a.__dict__
    changes: Dict[str, Any] = {}
    for f, bv in zip(FIELDS, [b.__dict__[f.attr] for f in FIELDS]):
        if bv is None:
            continue
        how = f.merge
        if how == "replace":
            if bv == "" and f.key == "description":
                continue
            changes[f.attr] = bv
        elif how == "append":
            av = ad[f.attr]
            changes[f.attr] = [*av, *bv] if av else list(bv)
        elif how == "mapmerge":
            m = dict(ad[f.attr] or {})
            for k, v in bv.items():
                if v is None and f.kind == "strmap":
                    continue
                m[k] = v
            changes[f.attr] = m
        else:  # buildflags kinds
            changes[f.attr] = buildflags.merge(f.kind, ad[f.attr], bv)
    if b.inherits:
        changes["inherits"] = (*a.inherits, *b.inherits)
    return a.evolve(**changes)


def _dedup(values: Optional[List[str]]) -> Optional[List[str]]:
    """buildx's removeDupesStr: drop duplicates and empty strings."""
    if values is None:
        return None
    seen = set()
    out = []
    for v in values:
        if v in seen or v == "":
            continue
        seen.add(v)
        out.append(v)
    return out


def normalize_target(t: Target) -> Target:
    ents = t.entitlements
    if t.network == "host":
        ents = [*(ents or []), "network.host"]
    contexts = t.contexts
    if contexts is not None:
        contexts = {k: v for k, v in contexts.items() if v != ""} or None
    return t.evolve(
        annotations=_dedup(t.annotations),
        attest=buildflags.normalize("attest", t.attest) if t.attest is not None else None,
        tags=_dedup(t.tags),
        secret=buildflags.normalize("secret", t.secret) if t.secret is not None else None,
        ssh=buildflags.normalize("ssh", t.ssh) if t.ssh is not None else None,
        platforms=_dedup(t.platforms),
        cache_from=buildflags.normalize("cache-from", t.cache_from) if t.cache_from is not None else None,
        cache_to=buildflags.normalize("cache-to", t.cache_to) if t.cache_to is not None else None,
        output=buildflags.normalize("output", t.output) if t.output is not None else None,
        no_cache_filter=_dedup(t.no_cache_filter),
        ulimits=_dedup(t.ulimits),
        entitlements=_dedup(ents),
        contexts=contexts,
    )


# --------------------------------------------------------------------------
# Overrides (--set)

_LIST_KEYS = {
    "output", "cache-to", "cache-from", "tags", "platform", "secrets", "ssh", "attest",
    "entitlements", "network", "annotations", "policy", "no-cache-filter", "ulimits",
}
_KNOWN_KEYS = {
    "context", "dockerfile", "args", "contexts", "labels", "tags", "policy", "cache-from",
    "cache-to", "target", "call", "secrets", "ssh", "platform", "output", "entitlements",
    "annotations", "attest", "no-cache", "no-cache-filter", "shm-size", "ulimits", "network",
    "pull", "push", "load", "extra-hosts", "depends_on",
}


@dataclass
class Override:
    value: str = ""
    values: List[str] = field(default_factory=list)
    append: bool = False


def _match(pattern: str, name: str) -> bool:
    # Go's path.Match: '*' does not cross '/', which target names never contain
    return fnmatch.fnmatchcase(name, pattern)


def _expand_targets(cfg: Config, pattern: str) -> List[str]:
    names = [t.name for t in cfg.targets]
    if pattern in names:
        return [pattern]
    out = [n for n in names if _match(pattern, n)]
    if not out:
        raise BakeryError(
            f"could not find any target matching '{pattern}'",
            hint=closest(pattern, names),
        )
    return out


def parse_overrides(
    cfg: Config, specs: Sequence[str], env: Mapping[str, str]
) -> Dict[str, Dict[str, Override]]:
    """``--set`` values → {target: {key: Override}} (buildx's newOverrides)."""
    out: Dict[str, Dict[str, Override]] = {}
    for spec in specs:
        lhs, sep, rhs = spec.partition("=")
        append = lhs.endswith("+")
        skey = lhs[:-1] if append else lhs
        keys = skey.split(".", 2)
        if len(keys) < 2:
            raise BakeryError(
                f"invalid override key {skey}, expected target.name",
                hint="write --set TARGET.KEY=VALUE, e.g. --set app.tags=app:dev",
            )
        pattern = keys[0]
        if not sep and keys[1] != "args":
            raise BakeryError(
                f"invalid override {spec}, expected target.name=value",
                hint="write --set TARGET.KEY=VALUE",
            )
        if keys[1] not in _KNOWN_KEYS:
            raise BakeryError(
                f"unknown key: {keys[1]}",
                hint=closest(keys[1], sorted(_KNOWN_KEYS)) or "see `bakery plan --help` for --set keys",
            )
        names = _expand_targets(cfg, pattern)
        okey = ".".join(keys[1:])
        for name in names:
            per = out.setdefault(name, {})
            o = per.get(okey) or Override()
            k = keys[1]
            if k in _LIST_KEYS:
                if sep:
                    o.append = append
                    o.values.append(rhs)
            else:
                if k in ("args", "contexts", "labels", "extra-hosts") and len(keys) != 3:
                    raise BakeryError(
                        f"invalid key {lhs}, {k} requires name",
                        hint=f"write --set {pattern}.{k}.NAME=VALUE",
                    )
                if k == "args" and not sep:
                    if keys[2] not in env:
                        continue
                    o.value = env[keys[2]]
                elif sep:
                    o.value = rhs
            per[okey] = o
    return out


def _parse_bool(key: str, value: str) -> bool:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise BakeryError(f"invalid value {value} for boolean key {key}",
                      hint="use true or false")


def _flags(kind: str, values: List[str], what: str) -> List[Any]:
    try:
        return buildflags.parse_list(kind, [v for v in values if v != ""])
    except ValueError as e:
        raise BakeryError(f"invalid value for {what}: {e}") from None


def apply_overrides(t: Target, overrides: Mapping[str, Override]) -> Target:
    """buildx's Target.AddOverrides."""
    for key, o in overrides.items():
        head, _, sub = key.partition(".")
        v = o.value
        if head in ("context", "dockerfile", "target", "call", "shm-size", "network"):
            attr = {"shm-size": "shm_size"}.get(head, head)
            if head == "network":
                v = o.values[-1] if o.values else v
            t = t.evolve(**{attr: v})
        elif head in ("args", "labels", "contexts", "extra-hosts"):
            if not sub:
                raise BakeryError(f"invalid format for {head}, expecting {head}.<name>=<value>")
            attr = head.replace("-", "_")
            m = dict(getattr(t, attr) or {})
            m[sub] = v
            t = t.evolve(**{attr: m})
        elif head in ("tags", "no-cache-filter", "ulimits", "platform"):
            attr = {"platform": "platforms", "no-cache-filter": "no_cache_filter"}.get(head, head)
            cur = getattr(t, attr)
            t = t.evolve(**{attr: [*(cur or []), *o.values] if o.append else list(o.values)})
        elif head in ("entitlements", "annotations"):
            cur = getattr(t, head)
            t = t.evolve(**{head: [*(cur or []), *o.values]})
        elif head in ("cache-from", "cache-to", "secrets", "ssh", "output", "policy"):
            kind = {"secrets": "secret"}.get(head, head)
            attr = {"cache-from": "cache_from", "cache-to": "cache_to", "secrets": "secret"}.get(head, head)
            entries = _flags(kind, o.values, head)
            cur = getattr(t, attr)
            if o.append:
                new = buildflags.merge(kind, cur, entries) if kind not in ("output", "policy") else [*(cur or []), *entries]
            else:
                new = entries
            t = t.evolve(**{attr: new})
        elif head == "attest":
            t = t.evolve(attest=buildflags.merge("attest", t.attest, _flags("attest", o.values, "attest")))
        elif head in ("no-cache", "pull"):
            t = t.evolve(**{head.replace("-", "_"): _parse_bool(head, v)})
        elif head == "push":
            t = t.evolve(output=buildflags.set_push(t.output or [], _parse_bool(head, v)))
        elif head == "load":
            t = t.evolve(output=buildflags.set_load(t.output or [], _parse_bool(head, v)))
        elif head == "depends_on":
            t = t.evolve(depends_on=[x for x in v.split(",") if x])
        else:
            raise BakeryError(f"unknown key: {head}")
    return t


# --------------------------------------------------------------------------
# Resolution


@dataclass
class Resolved:
    """The result of ``read_targets``: what ``--print`` shows."""

    targets: Dict[str, Target]
    groups: Dict[str, Group]


class _Resolver:
    def __init__(self, cfg: Config, overrides: Dict[str, Dict[str, Override]]):
        self.cfg = cfg
        self.overrides = overrides
        self.by_name = {t.name: t for t in cfg.targets}
        self.groups = {g.name: g for g in cfg.groups}
        self.memo: Dict[str, Target] = {}

    def group(self, name: str, visited: Dict[str, Tuple[List[str], List[str]]]) -> Tuple[List[str], List[str]]:
        if name in visited:
            return visited[name]
        g = self.groups.get(name)
        if g is None:
            return [name], []
        visited[name] = ([], [])
        targets: List[str] = []
        groups = [name]
        for member in g.targets:
            tt, tg = self.group(member, visited)
            # as buildx: a member that expands to nothing (an empty group, or
            # a group already being expanded) stays as a name, and fails to
            # resolve as a target below with a message saying why
            targets.extend(tt if tt else [member])
            groups.extend(tg)
        visited[name] = (targets, groups)
        return targets, groups

    def target(self, name: str, chain: List[str]) -> Target:
        """``name`` with its inherits chain merged, overrides applied.

        Memoised: a parent shared by a thousand targets is resolved once.
        A cycle in ``inherits`` is an error (buildx silently drops the
        back edge, which hides a mistake).
        """
        done = self.memo.get(name)
        if done is not None:
            return done
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name):], name])
            raise BakeryError(
                f"inherits cycle: {cycle}",
                self.cfg.positions.get(("target", chain[-1])),
                hint="a target cannot inherit from itself, directly or through its parents",
            )
        t = self.by_name.get(name)
        if t is None and name in self.groups:
            g = self.groups[name]
            why = "it is empty" if not g.targets else "its members form a cycle"
            raise BakeryError(
                f"group {name} cannot be used inside another group: {why}",
                self.cfg.positions.get(("group", name)),
            )
        if t is None:
            names = list(self.by_name) + list(self.groups)
            hint = closest(name, names)
            where = f" (inherited by {chain[-1]})" if chain else ""
            raise BakeryError(
                f"failed to find target {name}{where}",
                self.cfg.positions.get(("target", chain[-1])) if chain else None,
                hint=hint or "run `bakery ls` to see the targets",
            )
        base = Target(name=name)
        for parent in t.inherits:
            base = merge_targets(base, self.target(parent, [*chain, name]))
        merged = merge_targets(base, t)
        merged = apply_overrides(merged, self.overrides.get(name, {}))
        merged = normalize_target(merged)
        self.memo[name] = merged
        return merged

    def resolve(self, name: str) -> Target:
        t = self.target(name, []).evolve(inherits=())
        if t.context is None:
            t = t.evolve(context=".")
        if not t.dockerfile:
            t = t.evolve(dockerfile="Dockerfile")
        return t


def _sanitize(name: str) -> str:
    return name.replace(".", "_")


def _match_names(cfg: Config, pattern: str) -> List[str]:
    if not re.search(r"[*?\[\]]", pattern):
        return [pattern]
    names = [g.name for g in cfg.groups if _match(pattern, g.name)]
    names += [t.name for t in cfg.targets if _match(pattern, t.name)]
    if not names:
        raise BakeryError(f'could not find any target matching "{pattern}"',
                          hint="run `bakery ls` to see the targets and groups")
    return names


def clean_context(path: str) -> str:
    """buildx cleans the local context path (not URLs, not cwd://)."""
    if path.startswith("cwd://"):
        path = path[len("cwd://"):]
    elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) or _is_git_ref(path):
        return path
    return posixpath.normpath(path) if path else "."


def _is_git_ref(path: str) -> bool:
    return path.startswith(("git@", "github.com/")) or bool(re.match(r"^[^/]+\.git(#.*)?$", path))


def read_targets(
    cfg: Config,
    names: Sequence[str],
    overrides: Sequence[str],
    env: Mapping[str, str],
) -> Resolved:
    requested: List[str] = []
    for n in names or ["default"]:
        for m in _match_names(cfg, _sanitize(n)):
            if m not in requested:
                requested.append(m)
    ov = parse_overrides(cfg, overrides, env)
    r = _Resolver(cfg, ov)
    targets: Dict[str, Target] = {}
    groups: Dict[str, Group] = {}
    for name in requested:
        ts, gs = r.group(name, {})
        for tname in dict.fromkeys(ts):
            targets[tname] = r.resolve(tname)
        for gname in dict.fromkeys(gs):
            groups[gname] = r.groups[gname]
    default_members: List[str] = list(groups["default"].targets) if "default" in groups else []
    for name in requested:
        if "default" in groups and name == "default":
            continue
        default_members.append(name)
    if default_members or "default" in groups:
        groups["default"] = Group("default", tuple(sorted(dict.fromkeys(default_members))),
                                  groups["default"].description if "default" in groups else "")
    for name in list(targets):
        _load_links(r, name, targets[name], targets, [])
    # bakery's depends_on: the targets named there are built too (first)
    pending = [d for t in list(targets.values()) for d in (t.depends_on or [])]
    while pending:
        dep = pending.pop()
        if dep not in targets:
            targets[dep] = r.resolve(dep)
            _load_links(r, dep, targets[dep], targets, [])
            pending.extend(targets[dep].depends_on or [])
    targets = {k: v.evolve(context=clean_context(v.context or ".")) for k, v in targets.items()}
    return Resolved(targets, groups)


def _load_links(r: _Resolver, name: str, t: Target, targets: Dict[str, Target], visited: List[str]) -> None:
    visited = [*visited, name]
    for v in (t.contexts or {}).values():
        if not v.startswith("target:"):
            continue
        other = v[len("target:"):]
        if other == name:
            raise BakeryError(f"target {other} cannot link to itself",
                              r.cfg.positions.get(("target", name)))
        if other in visited:
            raise BakeryError(f"infinite loop from {name} to {other}",
                              r.cfg.positions.get(("target", name)),
                              hint="contexts = { x = \"target:y\" } must not form a cycle")
        t2 = targets.get(other)
        if t2 is None and other not in r.by_name:
            raise BakeryError(
                f'target {name}: contexts names "target:{other}", but there is no target {other}',
                r.cfg.positions.get(("target", name)),
                hint=closest(other, list(r.by_name)) or "run `bakery ls` to see the targets",
            )
        if t2 is None:
            t2 = r.resolve(other)
            t2 = t2.evolve(output=buildflags.parse_list("output", ["type=cacheonly"]), linked=True)
            targets[other] = t2
        _load_links(r, other, t2, targets, visited)
        ents = list(t.entitlements or [])
        for e in t2.entitlements or []:
            if e not in ents:
                ents.append(e)
        if ents != list(t.entitlements or []):
            t = t.evolve(entitlements=ents)
            targets[name] = t
        if (
            len(t.platforms or []) > 1
            and len(t2.platforms or []) > 1
            and not set(t.platforms or []) <= set(t2.platforms or [])
        ):
            raise BakeryError(
                f"target {other} can't be used by {name} because its platforms "
                f"{t.platforms} are not a subset of {t2.platforms}"
            )
