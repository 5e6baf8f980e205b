"""The bakefile layer's entry points: files → :class:`Config` → resolved targets.

``load`` reads and evaluates the bake files; ``resolve_targets`` applies
groups, inherits, ``--set`` and links for the requested names and runs the
checks buildx makes before printing (secret sources must exist).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.bakefile import buildflags
from bakery.bakefile.files import (
    BakeFile,
    builtin_variables,
    cache_get,
    cache_put,
    digest,
    parse_cached,
    read_files,
)
from bakery.bakefile.model import Config, Group, Target
from bakery.bakefile.resolve import Resolved, merge_targets, read_targets
from bakery.errors import BakeryError

__all__ = ["load", "load_files", "plan_print", "resolve_targets"]


def _truthy(v: Optional[str]) -> bool:
    return v is not None and v.lower() in ("1", "t", "true")


def _parse_body(f: BakeFile) -> Any:
    from bakery.bakefile import hcl, jsonsyntax, tomlsyntax

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


def _is_compose(f: BakeFile) -> bool:
    from bakery.bakefile import compose  # imports yaml: only when needed

    return compose.is_compose(f.text, f.name)


class _Lookup:
    """Variable overrides: ``--var`` first, then the environment (unless
    BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP), remembering every name asked for."""

    def __init__(self, cli_vars: Mapping[str, str], env: Mapping[str, str]):
        self.cli_vars = cli_vars
        self.env = env
        self.allow_env = not _truthy(env.get("BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP"))
        self.reads: Dict[str, Optional[str]] = {}

    def get(self, name: str) -> Optional[str]:
        if name in self.cli_vars:
            v: Optional[str] = self.cli_vars[name]
        else:
            v = self.env.get(name) if self.allow_env else None
        self.reads[name] = v
        return v

    def unchanged(self, reads: Mapping[str, Optional[str]]) -> bool:
        return all(self.get(k) == v for k, v in reads.items())


def _split(files: Sequence[BakeFile]) -> Tuple[List[BakeFile], List[BakeFile]]:
    compose_files: List[BakeFile] = []
    bake_files: List[BakeFile] = []
    for f in files:
        if not f.name.endswith((".hcl", ".json", ".toml")) and _is_compose(f):
            compose_files.append(f)
        else:
            bake_files.append(f)
    return compose_files, bake_files


def _config_key(bake_files: Sequence[BakeFile], lk: _Lookup) -> str:
    return digest(
        "config",
        *(part for f in bake_files for part in (f.name, f.text)),
        repr(sorted(lk.cli_vars.items())),
        repr(sorted(builtin_variables().items())),
        str(lk.allow_env),
    )


def load_files(
    files: Sequence[BakeFile],
    cli_vars: Mapping[str, str],
    env: Mapping[str, str],
    cwd: str = ".",
) -> Config:
    """Evaluate bake files into a Config.

    The result is cached on disk, keyed by the files and ``--var``, and used
    again while every environment variable the evaluation read still has the
    value it had; configs from compose files or impure functions (such as
    ``timestamp()``) are never cached.
    """
    lk = _Lookup(cli_vars, env)
    compose_files, bake_files = _split(files)
    key = _config_key(bake_files, lk)
    if not compose_files:
        hit = cache_get("config", key)
        if isinstance(hit, Config) and lk.unchanged(hit.env_reads):
            return hit
        lk.reads.clear()

    # imported here: a cache hit needs neither the parser nor the evaluator
    from bakery.bakefile.evaluate import evaluate_bodies

    bodies = [_parse_body(f) for f in bake_files]

    base = Config()
    if compose_files:
        from bakery.bakefile import compose

        cenv = dict(env) if lk.allow_env else {}
        cenv.update(cli_vars)
        cgroups, ctargets = compose.load_compose(
            [(f.name, f.text) for f in compose_files], cenv, workdir=cwd
        )
        for gname, members in cgroups:
            base.groups.append(Group(gname, tuple(members)))
        by_name: Dict[str, Target] = {}
        for tname, attrs in ctargets:
            t = compose_target(tname, attrs)
            by_name[tname] = merge_targets(by_name[tname], t) if tname in by_name else t
        base.targets = list(by_name.values())
        base.cacheable = False
    if not bodies:
        return base
    cfg = evaluate_bodies(bodies, lk.get, builtin_variables())
    cfg.env_reads = dict(lk.reads)
    if not compose_files:
        cfg.cacheable = not cfg.impure
        if cfg.cacheable:
            cache_put("config", key, cfg)
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
    cfg.cacheable = False
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


def plan_print(
    files: Sequence[BakeFile],
    cli_vars: Mapping[str, str],
    env: Mapping[str, str],
    cwd: str,
    names: Sequence[str],
    overrides: Sequence[str],
) -> Tuple[str, List[str]]:
    """``--print``'s text and the warnings to show, cached like the Config.

    The cache key adds the requested names and ``--set`` values (and the
    environment values that bare ``--set T.args.NAME`` reads); secrets are
    checked again on every hit, since they name files and variables.
    """
    from bakery.bakefile.printer import print_json

    lk = _Lookup(cli_vars, env)
    compose_files, bake_files = _split(files)
    key = ""
    if not compose_files:
        bare = [(s, env.get(s.rsplit(".", 1)[-1])) for s in overrides if "=" not in s]
        key = digest("print", _config_key(bake_files, lk), repr(list(names)), repr(list(overrides)), repr(bare))
        hit = cache_get("print", key)
        if isinstance(hit, tuple) and len(hit) == 4 and lk.unchanged(hit[0]):
            _, text, warnings, secrets = hit
            for entries in secrets:
                buildflags.validate_secrets(entries, env, cwd)
            return text, warnings
    cfg = load_files(files, cli_vars, env, cwd)
    resolved = resolve_targets(cfg, names, overrides, env, cwd)
    text = print_json(resolved)
    if cfg.cacheable and key:
        secrets = [t.secret for t in resolved.targets.values() if t.secret]
        cache_put("print", key, (cfg.env_reads, text, cfg.warnings, secrets))
    return text, cfg.warnings


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


