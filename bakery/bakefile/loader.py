"""The bakefile layer's entry points: files → :class:`Config` → resolved targets.

``load`` reads and evaluates the bake files; ``resolve_targets`` applies
groups, inherits, ``--set`` and links for the requested names and runs the
checks buildx makes before printing (secret sources must exist).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from bakery.bakefile import buildflags, compose, hcl
from bakery.bakefile.evaluate import evaluate_bodies
from bakery.bakefile.files import BakeFile, builtin_variables, parse_cached, read_files
from bakery.bakefile.model import Config, Group, Target
from bakery.bakefile.resolve import Resolved, merge_targets, read_targets
from bakery.errors import BakeryError

__all__ = ["load", "load_files", "resolve_targets"]


def _truthy(v: Optional[str]) -> bool:
    return v is not None and v.lower() in ("1", "t", "true")


def _parse_body(f: BakeFile) -> Any:
    from bakery.bakefile import jsonsyntax, tomlsyntax

    name = f.name
    if name.endswith(".toml"):
        return parse_cached("toml", f, tomlsyntax.parse_toml)
    if name.endswith(".json"):
        return parse_cached("json", f, jsonsyntax.parse_json)
    if name.endswith(".hcl"):
        return parse_cached("hcl", f, hcl.parse)
    # no telling extension (e.g. stdin): HCL first, then JSON, as buildx
    try:
        return parse_cached("hcl", f, hcl.parse)
    except BakeryError as hcl_err:
        try:
            return parse_cached("json", f, jsonsyntax.parse_json)
        except BakeryError:
            raise hcl_err from None


def load_files(
    files: Sequence[BakeFile],
    cli_vars: Mapping[str, str],
    env: Mapping[str, str],
    cwd: str = ".",
) -> Config:
    allow_env = not _truthy(env.get("BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP"))

    def lookup(name: str) -> Optional[str]:
        if name in cli_vars:
            return cli_vars[name]
        if allow_env:
            return env.get(name)
        return None

    compose_files: List[BakeFile] = []
    bodies: List[Any] = []
    for f in files:
        if not f.name.endswith((".hcl", ".json", ".toml")) and compose.is_compose(f.text, f.name):
            compose_files.append(f)
        else:
            bodies.append(_parse_body(f))

    base = Config()
    if compose_files:
        cenv = dict(env) if allow_env else {}
        cenv.update(cli_vars)
        cgroups, ctargets = compose.load_compose(
            [(f.name, f.text) for f in compose_files], cenv, workdir=cwd
        )
        for gname, members in cgroups:
            base.groups.append(Group(gname, tuple(members)))
        by_name: Dict[str, Target] = {}
        for tname, attrs in ctargets:
            t = compose_target(tname, attrs)
            if tname in by_name:
                by_name[tname] = merge_targets(by_name[tname], t)
            else:
                by_name[tname] = t
        base.targets = list(by_name.values())
    if not bodies:
        return base
    cfg = evaluate_bodies(bodies, lookup, builtin_variables())
    if not compose_files:
        return cfg
    # HCL blocks merge over compose services of the same name (buildx order)
    merged = {t.name: t for t in base.targets}
    for t in cfg.targets:
        merged[t.name] = merge_targets(merged[t.name], t) if t.name in merged else t
    groups = {g.name: g for g in base.groups}
    for g in cfg.groups:
        groups[g.name] = g
    cfg.targets = list(merged.values())
    cfg.groups = list(groups.values())
    return cfg


def compose_target(name: str, attrs: Mapping[str, Any]) -> Target:
    """A compose service's raw attributes as a Target (same decoding as HCL)."""
    from bakery.bakefile.model import FIELD_BY_KEY

    kw: dict = {}
    for key, v in attrs.items():
        if v is None:
            continue
        f = FIELD_BY_KEY.get(key)
        if f is None:
            raise BakeryError(f"compose service {name}: unsupported attribute {key}")
        if f.merge == "flags" or f.kind in ("output", "cache-to", "policy"):
            v = buildflags.parse_list(f.kind, list(v))
        kw[f.attr] = v
    return Target(name=name, **kw)


def load(
    files: Sequence[str],
    cli_vars: Mapping[str, str],
    env: Mapping[str, str],
    cwd: str = ".",
    stdin: Any = None,
) -> Config:
    return load_files(read_files(files, cwd, stdin), cli_vars, env, cwd)


def resolve_targets(
    cfg: Config,
    names: Sequence[str],
    overrides: Sequence[str],
    env: Mapping[str, str],
    cwd: str = ".",
) -> Resolved:
    resolved = read_targets(cfg, names, overrides, env)
    for t in resolved.targets.values():
        if t.secret:
            buildflags.validate_secrets(t.secret, env, cwd)
        if t.context == "-":
            raise BakeryError(f"target {t.name}: context from stdin not allowed in bake")
        if t.dockerfile == "-":
            raise BakeryError(f"target {t.name}: dockerfile from stdin not allowed in bake")
    return resolved


