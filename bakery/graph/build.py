"""One merged build graph for every requested target and platform.

:func:`build_graph` turns resolved bake targets into a :class:`BuildGraph`:

1. the requested names (targets, or groups when ``groups`` is given) are
   expanded; the targets they link to (``contexts = { x = "target:y" }``)
   and the targets they ``depends_on`` are added; a cycle through either
   kind of edge is a :class:`~bakery.errors.BakeryError` naming the cycle;
2. each target is built for each of its platforms (none, or ``local``, means
   the build platform); a linked target without platforms of its own is
   built for the platforms of the targets that use it; linked targets are
   built before the targets that use them;
3. for each target and platform a :class:`~bakery.dockerfile.request.BuildRequest`
   is made (the Dockerfile from ``dockerfile_inline`` or read from
   ``context/dockerfile`` — ``cwd://`` and absolute paths as in buildx —, the
   applicable .dockerignore, named contexts: ``target:NAME`` is NAME's
   root filesystem on the same platform, ``docker-image://REF`` an image,
   anything else a local directory relative to ``cwd``) and the frontend's
   ``convert(request, image_config)`` gives an :class:`~bakery.graph.ops.Export`;
4. every op of every export is keyed (:mod:`bakery.graph.keys`) and merged:
   equal keys are one :class:`Node`, used by the (target, platform) exports
   that need it.

``depends_on`` (bakery's own attribute) orders without passing data: each
export of the dependent target comes after every export of the targets it
depends on, and so do the steps that only dependent targets use (only the
first such steps on each path carry the edge, in ``Node.after``).

Stable order: nodes are numbered in discovery order (targets in build order,
platforms in order, each export's DAG from its root, inputs in declaration
order); :meth:`BuildGraph.waves` groups them with ``graphlib`` into waves
whose members only need earlier waves, each wave sorted by that number, and
:meth:`BuildGraph.order` is the waves concatenated.  The same inputs give
the same order in every process.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from bakery.bakefile.model import Group, Target
from bakery.dockerfile.dockerignore import IgnoreMatcher, ignore_file_for, read_ignore_patterns
from bakery.dockerfile.request import (
    BuildRequest,
    ImageConfigResolver,
    NamedContext,
    parse_shm_size,
    parse_ulimits,
)
from bakery.errors import BakeryError, closest, register_source
from bakery.graph.context import ContextHasher
from bakery.graph.keys import FileDigest, Keyer, op_inputs, short_key
from bakery.graph.ops import (
    Copy,
    Exec,
    Export,
    FileOp,
    ImageSource,
    LocalSource,
    Merge,
    Mkdir,
    Mkfile,
    Op,
    Platform,
    Rm,
    ScratchSource,
    Symlink,
)
from bakery.graph.platforms import host_platform, normalize_image_ref, parse_platform

try:
    import graphlib
except ImportError:  # pragma: no cover - Python 3.8 without graphlib-backport
    graphlib = None  # type: ignore[assignment]

__all__ = [
    "BuildGraph",
    "ExportNode",
    "Node",
    "TargetInfo",
    "build_graph",
    "describe_op",
    "export_id",
]

Convert = Callable[[BuildRequest, ImageConfigResolver], Export]

JSON_VERSION = 1


# -- the graph ----------------------------------------------------------------


@dataclass
class Node:
    """One merged step: every op with this key, in every target."""

    key: str
    op: Op
    kind: str  # image | local | scratch | exec | file | merge
    description: str
    deps: Tuple[str, ...]  # keys of the data inputs, in input order
    index: int  # discovery number (the stable tie-break)
    users: Set[Tuple[str, str]] = field(default_factory=set)  # (target, platform)
    after: Tuple[str, ...] = ()  # export ids this step waits for (depends_on)

    @property
    def short(self) -> str:
        return short_key(self.key)


@dataclass
class ExportNode:
    """What one target wants on one platform."""

    id: str  # "export:<target>@<platform>"
    target: str
    platform: str
    root: str  # key of the root filesystem's step
    export: Export
    index: int
    after: Tuple[str, ...] = ()  # export ids (depends_on)


@dataclass
class TargetInfo:
    name: str
    platforms: Tuple[str, ...]  # as built, in order
    requested: bool  # asked for (directly or through a group)
    linked: bool  # used through contexts = { x = "target:NAME" }
    depends_on: Tuple[str, ...]
    tags: Tuple[str, ...]
    explicit_platforms: Tuple[str, ...]  # as written ("" when not set)
    no_cache: bool = False
    no_cache_filter: Tuple[str, ...] = ()
    context: str = ""
    dockerfile: str = ""
    exports: List[str] = field(default_factory=list)
    links: Tuple[str, ...] = ()  # targets used through contexts = { x = "target:NAME" }


def export_id(target: str, platform: str) -> str:
    return f"export:{target}@{platform}"


@dataclass
class BuildGraph:
    """The merged graph: steps by key, exports, targets (see module doc)."""

    nodes: Dict[str, Node]
    exports: Dict[str, ExportNode]
    targets: Dict[str, TargetInfo]
    requested: Tuple[str, ...]  # as given (targets or groups)
    groups: Dict[str, Tuple[str, ...]]  # requested groups -> their targets
    build_platform: str
    _waves: Optional[List[List[str]]] = field(default=None, repr=False)

    # -- order ----------------------------------------------------------------

    def waves(self, include_exports: bool = False) -> List[List[str]]:
        """Steps (and export ids) grouped so that each only needs earlier
        groups; each group sorted by discovery number."""
        if self._waves is None:
            self._waves = self._compute_waves()
        if include_exports:
            return [list(w) for w in self._waves]
        out = [[k for k in w if k in self.nodes] for w in self._waves]
        return [w for w in out if w]

    def _compute_waves(self) -> List[List[str]]:
        rank: Dict[str, int] = {k: n.index for k, n in self.nodes.items()}
        base = len(rank)
        for e in self.exports.values():
            rank[e.id] = base + e.index
        graph: Dict[str, List[str]] = {}
        for k, n in self.nodes.items():
            graph[k] = [*n.deps, *n.after]
        for e in self.exports.values():
            graph[e.id] = [e.root, *e.after]
        if graphlib is None:  # pragma: no cover
            raise RuntimeError("graphlib is required (pip install graphlib-backport)")
        ts = graphlib.TopologicalSorter(graph)
        try:
            ts.prepare()
        except graphlib.CycleError as e:
            raise BakeryError(
                "cycle in the build graph: " + " -> ".join(map(str, e.args[1]))
            ) from None
        waves: List[List[str]] = []
        while ts.is_active():
            ready = sorted(ts.get_ready(), key=lambda k: rank[k])
            waves.append(ready)
            ts.done(*ready)
        return waves

    def order(self, include_exports: bool = False) -> List[str]:
        """Execution order: the waves, concatenated."""
        return [k for w in self.waves(include_exports) for k in w]

    # -- queries --------------------------------------------------------------

    def target_nodes(self, target: str, platform: Optional[str] = None) -> Set[str]:
        """Keys of the steps that ``target`` (on ``platform``, or any) uses."""
        return {
            k for k, n in self.nodes.items()
            if any(t == target and (platform is None or p == platform) for t, p in n.users)
        }

    def user_labels(self, key: str) -> List[str]:
        """Who uses a step: ``target`` when the graph builds that target on
        one platform, ``target@platform`` otherwise; sorted."""
        out = set()
        for t, p in self.nodes[key].users:
            info = self.targets.get(t)
            if info is not None and len(info.platforms) <= 1:
                out.add(t)
            else:
                out.add(f"{t}@{p}")
        return sorted(out)

    def is_shared(self, key: str) -> bool:
        return len(self.nodes[key].users) > 1

    @property
    def total_steps(self) -> int:
        return len(self.nodes)

    @property
    def shared_steps(self) -> int:
        """Steps used by more than one (target, platform) export."""
        return sum(1 for k in self.nodes if self.is_shared(k))

    def matrix_targets(self) -> List[str]:
        """The requested targets, groups expanded, in request order."""
        out: List[str] = []
        for name in self.requested:
            for t in self.groups.get(name, (name,)):
                if t not in out and t in self.targets:
                    out.append(t)
        return out

    # -- serialisation ----------------------------------------------------------

    def to_json(self) -> Dict[str, Any]:
        """The plan as JSON-able data (schema in bakery.graph.render)."""
        order = self.order()
        number = {k: i + 1 for i, k in enumerate(order)}
        steps = []
        for k in order:
            n = self.nodes[k]
            item: Dict[str, Any] = {
                "step": number[k],
                "key": k,
                "kind": n.kind,
                "description": n.description,
                "deps": list(n.deps),
                "users": self.user_labels(k),
                "shared": self.is_shared(k),
            }
            plat = getattr(n.op, "platform", None)
            if isinstance(plat, Platform):
                item["platform"] = str(plat)
            if isinstance(n.op, ImageSource):
                item["ref"] = n.op.ref
                item["digest"] = n.op.digest or None
            if isinstance(n.op, LocalSource):
                item["name"] = n.op.name
                item["path"] = n.op.path
            if n.after:
                item["after"] = list(n.after)
            steps.append(item)
        return {
            "version": JSON_VERSION,
            "build_platform": self.build_platform,
            "requested": list(self.requested),
            "groups": {g: list(ts) for g, ts in self.groups.items()},
            "targets": {
                name: {
                    "platforms": list(t.platforms),
                    "requested": t.requested,
                    "linked": t.linked,
                    "depends_on": list(t.depends_on),
                    "tags": list(t.tags),
                    "no_cache": t.no_cache,
                    "no_cache_filter": list(t.no_cache_filter),
                    "context": t.context,
                    "dockerfile": t.dockerfile,
                    "exports": list(t.exports),
                }
                for name, t in self.targets.items()
            },
            "exports": [
                {
                    "id": e.id,
                    "target": e.target,
                    "platform": e.platform,
                    "root": e.root,
                    "after": list(e.after),
                }
                for e in self.exports.values()
            ],
            "steps": steps,
            "counts": {
                "targets": len(self.targets),
                "exports": len(self.exports),
                "steps": self.total_steps,
                "shared": self.shared_steps,
            },
        }


# -- descriptions ---------------------------------------------------------------


def _kind(op: Op) -> str:
    return {
        ImageSource: "image", LocalSource: "local", ScratchSource: "scratch",
        Exec: "exec", FileOp: "file", Merge: "merge",
    }.get(type(op), type(op).__name__.lower())


def _action(a: Any) -> str:
    if isinstance(a, Copy):
        return f"copy {' '.join(a.src)} {a.dest}"
    if isinstance(a, Mkdir):
        return f"mkdir {a.path}"
    if isinstance(a, Mkfile):
        return f"mkfile {a.path}"
    if isinstance(a, Rm):
        return f"rm {a.path}"
    if isinstance(a, Symlink):
        return f"symlink {a.path} -> {a.target}"
    return type(a).__name__.lower()  # pragma: no cover


def describe_op(op: Op) -> str:
    """A one-line label: the op's description, or one made from its fields."""
    desc = getattr(op, "description", "")
    if desc:
        return str(desc)
    if isinstance(op, ImageSource):
        return op.ref + (f"@{op.digest}" if op.digest else "")
    if isinstance(op, LocalSource):
        return f"{op.name} {op.path}"
    if isinstance(op, ScratchSource):
        return "scratch"
    if isinstance(op, Exec):
        args = op.args
        if len(args) == 3 and args[1] == "-c":
            return "RUN " + args[2]
        return "RUN " + " ".join(args)
    if isinstance(op, FileOp):
        return "; ".join(_action(a) for a in op.actions) or "file"
    if isinstance(op, Merge):
        return f"merge {len(op.inputs)} layers"
    return type(op).__name__  # pragma: no cover


# -- building -------------------------------------------------------------------

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _is_remote(path: str) -> bool:
    if path.startswith("cwd://"):
        return False
    return bool(_URL.match(path)) or path.startswith("git@") or path.startswith("github.com/")


def _group_members(groups: Mapping[str, Any], name: str, seen: Tuple[str, ...] = ()) -> List[str]:
    g = groups[name]
    members = g.targets if isinstance(g, Group) else tuple(g)
    out: List[str] = []
    for m in members:
        if m in groups and m not in seen and m != name:
            out.extend(_group_members(groups, m, (*seen, name)))
        elif m not in out:
            out.append(m)
    return list(dict.fromkeys(out))


def _target_edges(t: Target) -> List[Tuple[str, str]]:
    """(kind, other) for every target ``t`` needs: links, then depends_on."""
    out: List[Tuple[str, str]] = []
    for v in (t.contexts or {}).values():
        if v.startswith("target:"):
            out.append(("contexts", v[len("target:"):]))
    out.extend(("depends_on", d) for d in (t.depends_on or []))
    return out


class _Builder:
    def __init__(
        self,
        targets: Mapping[str, Target],
        cwd: str,
        image_config: ImageConfigResolver,
        convert: Convert,
        keyer: Keyer,
        build_platform: Platform,
    ) -> None:
        self.targets = targets
        self.cwd = os.path.abspath(cwd)
        self.image_config = image_config
        self.convert = convert
        self.keyer = keyer
        self.build_platform = build_platform
        self.exports: Dict[Tuple[str, str], Export] = {}
        self.export_order: List[Tuple[str, str]] = []
        self.building: List[Tuple[str, str]] = []
        self.files: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {}

    # -- targets -----------------------------------------------------------------

    def target(self, name: str, needed_by: Optional[str] = None) -> Target:
        t = self.targets.get(name)
        if t is None:
            by = f" (needed by {needed_by})" if needed_by else ""
            raise BakeryError(
                f"failed to find target {name}{by}",
                hint=closest(name, self.targets) or "run `bakery ls` to see the targets",
            )
        return t

    def platforms(self, t: Target) -> List[Platform]:
        specs = t.build_platforms or []
        if not specs:
            return [self.build_platform]
        out: List[Platform] = []
        for s in specs:
            p = self.build_platform if s == "local" else parse_platform(s)
            if p not in out:
                out.append(p)
        return out

    def check_cycles(self, roots: Iterable[str]) -> List[str]:
        """Every target reachable from ``roots``, dependencies first."""
        done: List[str] = []
        state: Dict[str, int] = {}

        def visit(name: str, path: List[Tuple[str, str]], needed_by: Optional[str]) -> None:
            s = state.get(name)
            if s == 2:
                return
            if s == 1:
                names = [n for n, _ in path]
                start = names.index(name)
                cycle = " -> ".join(names[start:])
                kinds = sorted({k for _, k in path[start + 1:]})
                raise BakeryError(
                    f"cycle between targets: {cycle}",
                    hint="targets linked with " + " and ".join(kinds)
                    + " must not depend on themselves",
                )
            t = self.target(name, needed_by)
            state[name] = 1
            for kind, other in _target_edges(t):
                if other == name:
                    raise BakeryError(f"cycle between targets: {name} -> {name}",
                                      hint=f"target {name} cannot use itself ({kind})")
                visit(other, [*path, (other, kind)], name)
            state[name] = 2
            done.append(name)

        for r in roots:
            visit(r, [(r, "")], None)
        return done

    # -- one target on one platform -------------------------------------------------

    def export(self, name: str, platform: Platform) -> Export:
        k = (name, str(platform))
        hit = self.exports.get(k)
        if hit is not None:
            return hit
        if k in self.building:  # pragma: no cover - check_cycles runs first
            raise BakeryError(f"cycle between targets at {name}")
        self.building.append(k)
        try:
            t = self.target(name)
            req = self.request(t, platform)
            exp = self.convert(req, self.image_config)
            if not isinstance(exp, Export):
                raise TypeError(f"convert returned {type(exp).__name__}, not Export")
        finally:
            self.building.pop()
        self.exports[k] = exp
        self.export_order.append(k)
        return exp

    def linked_platform(self, user: str, other: str, platform: Platform) -> Platform:
        t = self.target(other, user)
        if not t.build_platforms:
            return platform  # no platforms of its own: built for its users'
        plats = self.platforms(t)
        if platform in plats:
            return platform
        if len(plats) == 1:
            return plats[0]
        raise BakeryError(
            f"target {other} can't be used by {user} on {platform}: "
            f"{other} is built for {', '.join(map(str, plats))}",
            hint=f"add {platform} to the platforms of {other}",
        )

    def dockerfile(self, t: Target, context_dir: str) -> Tuple[str, str, Tuple[str, ...]]:
        """(text, name for messages, .dockerignore patterns)."""
        if t.dockerfile_inline is not None:
            name = f"{t.name}:dockerfile-inline"
            text = t.dockerfile_inline
            ignore = os.path.join(context_dir, ".dockerignore")
            ignore_path: Optional[str] = ignore if os.path.isfile(ignore) else None
        else:
            df = t.dockerfile or "Dockerfile"
            if df.startswith("cwd://"):
                path = os.path.join(self.cwd, df[len("cwd://"):])
            elif os.path.isabs(df):
                path = df
            else:
                path = os.path.join(context_dir, df)
            path = os.path.normpath(path)
            cached = self.files.get(path)
            if cached is not None:
                return cached
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except FileNotFoundError:
                raise BakeryError(
                    f"target {t.name}: failed to read dockerfile: open {path}: no such file or directory",
                    hint="set `dockerfile` (relative to the context) or `dockerfile-inline`",
                ) from None
            except (OSError, UnicodeDecodeError) as e:
                raise BakeryError(f"target {t.name}: failed to read dockerfile {path}: {e}") from None
            rel = os.path.relpath(path, self.cwd)
            name = path if rel.startswith("..") else rel
            ignore_path = ignore_file_for(path, context_dir)
        patterns: Tuple[str, ...] = ()
        if ignore_path is not None:
            with open(ignore_path, encoding="utf-8", errors="surrogateescape") as fh:
                itext = fh.read()
            rel = os.path.relpath(ignore_path, self.cwd)
            IgnoreMatcher.from_text(itext, source=ignore_path if rel.startswith("..") else rel)
            patterns = tuple(read_ignore_patterns(itext))
        register_source(name, text)
        out = (text, name, patterns)
        if t.dockerfile_inline is None:
            self.files[os.path.normpath(path)] = out
        return out

    def request(self, t: Target, platform: Platform) -> BuildRequest:
        ctx = t.context or "."
        if _is_remote(ctx):
            raise BakeryError(f"target {t.name}: remote context {ctx} is not supported yet",
                              hint="check the repository out and use a local context")
        if ctx.startswith("cwd://"):
            ctx = ctx[len("cwd://"):]
        context_dir = os.path.normpath(os.path.join(self.cwd, ctx))
        if not os.path.isdir(context_dir):
            raise BakeryError(f"target {t.name}: context {ctx} is not a directory ({context_dir})")
        text, name, ignore = self.dockerfile(t, context_dir)
        named: Dict[str, NamedContext] = {}
        for cname, value in (t.contexts or {}).items():
            if value.startswith("target:"):
                other = value[len("target:"):]
                exp = self.export(other, self.linked_platform(t.name, other, platform))
                named[cname] = exp.rootfs
            elif value.startswith("docker-image://"):
                named[cname] = ImageSource(normalize_image_ref(value[len("docker-image://"):]),
                                           platform)
            elif _is_remote(value):
                raise BakeryError(
                    f"target {t.name}: context {cname}={value} is not supported yet",
                    hint="use a local directory, docker-image://REF or target:NAME",
                )
            else:
                if value.startswith("cwd://"):
                    value = value[len("cwd://"):]
                named[cname] = os.path.normpath(os.path.join(self.cwd, value))
        secrets = tuple(str(getattr(s, "id", "") or "") for s in (t.secret or []))
        ssh = tuple(str(getattr(s, "id", "") or "default") for s in (t.ssh or []))
        return BuildRequest(
            target=t.name,
            dockerfile=text,
            dockerfile_name=name,
            context=context_dir,
            platform=platform,
            build_platform=self.build_platform,
            build_args={k: v for k, v in (t.args or {}).items() if v is not None},
            stage=t.target or None,
            named_contexts=named,
            dockerignore=ignore,
            labels={k: v for k, v in (t.labels or {}).items() if v is not None},
            network=t.network or "default",
            extra_hosts=tuple(f"{h}={ip}" for h, ip in sorted((t.extra_hosts or {}).items())
                              if ip is not None),
            no_cache_filter=tuple(t.no_cache_filter or ()),
            secrets=tuple(s for s in secrets if s),
            ssh=ssh,
            shm_size=parse_shm_size(t.name, t.shm_size),
            ulimits=parse_ulimits(t.name, t.ulimits),
        )


def _default_convert() -> Convert:
    mod = importlib.import_module("bakery.dockerfile.convert")
    fn: Convert = mod.convert
    return fn


def _default_hasher() -> ContextHasher:
    from bakery.bakefile.files import cache_dir

    return ContextHasher(os.path.join(cache_dir(), "context", "metadata.json"))


def build_graph(
    targets: Mapping[str, Target],
    requested: Sequence[str],
    cwd: str,
    image_config: ImageConfigResolver = lambda i: None,
    convert: Optional[Convert] = None,
    *,
    groups: Optional[Mapping[str, Union[Group, Sequence[str]]]] = None,
    file_digest: Optional[FileDigest] = None,
    build_platform: Optional[Platform] = None,
) -> BuildGraph:
    """The merged graph of ``requested`` (see the module docstring).

    ``file_digest`` defaults to a :class:`ContextHasher` with its metadata
    cache in bakery's cache directory (saved when the graph is built);
    ``build_platform`` to the host's.
    """
    groups = groups or {}
    bp = build_platform or host_platform()
    hasher: Optional[ContextHasher] = None
    if file_digest is None:
        hasher = _default_hasher()
        file_digest = hasher
    keyer = Keyer(file_digest)
    b = _Builder(targets, cwd, image_config, convert or _default_convert(), keyer, bp)

    # 1. names -> targets
    wanted: List[str] = []
    group_map: Dict[str, Tuple[str, ...]] = {}
    for name in requested:
        if name in groups and name not in targets:
            members = _group_members(groups, name)
            group_map[name] = tuple(members)
            wanted.extend(m for m in members if m not in wanted)
        elif name not in wanted:
            b.target(name)
            wanted.append(name)
    order = b.check_cycles(wanted)

    # 2. exports, dependencies first
    built_for: Dict[str, List[str]] = {}
    for name in order:
        t = b.target(name)
        if name not in wanted and _only_linked(name, order, targets):
            continue  # built on demand, for the platforms its users need
        for p in b.platforms(t):
            b.export(name, p)
    for name, plat in b.export_order:
        built_for.setdefault(name, []).append(plat)

    # 3. merge
    nodes: Dict[str, Node] = {}
    exports: Dict[str, ExportNode] = {}
    linked = {o for n in order for k, o in _target_edges(b.target(n)) if k == "contexts"}
    infos: Dict[str, TargetInfo] = {}
    for name in order:
        t = b.target(name)
        infos[name] = TargetInfo(
            name=name,
            platforms=tuple(built_for.get(name, [])),
            requested=name in wanted,
            linked=name in linked or t.linked,
            depends_on=tuple(t.depends_on or ()),
            tags=tuple(t.tags or ()),
            explicit_platforms=tuple(t.build_platforms or ()),
            no_cache=bool(t.no_cache),
            no_cache_filter=tuple(t.no_cache_filter or ()),
            context=t.context or ".",
            dockerfile="<inline>" if t.dockerfile_inline is not None else (t.dockerfile or "Dockerfile"),
            links=tuple(dict.fromkeys(o for k, o in _target_edges(t) if k == "contexts")),
        )
    for name, plat in b.export_order:
        exp = b.exports[(name, plat)]
        root = _merge(nodes, keyer, exp.rootfs.op)
        user = (name, plat)
        _mark_users(nodes, root, user)
        eid = export_id(name, plat)
        exports[eid] = ExportNode(eid, name, plat, root, exp, len(exports))
        infos[name].exports.append(eid)

    # 4. depends_on
    _order_edges(nodes, exports, infos, targets)
    if hasher is not None:
        hasher.save()
    return BuildGraph(
        nodes=nodes,
        exports=exports,
        targets=infos,
        requested=tuple(requested),
        groups=group_map,
        build_platform=str(bp),
    )


def _only_linked(name: str, order: Sequence[str], targets: Mapping[str, Target]) -> bool:
    """True when ``name`` is needed only through ``target:`` links."""
    for other in order:
        for kind, o in _target_edges(targets[other]):
            if o == name and kind == "depends_on":
                return False
    return True


def _merge(nodes: Dict[str, Node], keyer: Keyer, root: Op) -> str:
    """Add ``root`` and its inputs to ``nodes`` (equal keys: one node)."""
    rk = keyer.key(root)
    if rk in nodes:
        return rk
    # iterative DFS, post-order numbering so inputs come first
    stack: List[Tuple[Op, bool]] = [(root, False)]
    pending: Set[str] = set()
    while stack:
        op, expanded = stack.pop()
        k = keyer.key(op)
        if k in nodes:
            continue
        ins = op_inputs(op)
        if not expanded:
            if k in pending:
                continue
            pending.add(k)
            stack.append((op, True))
            for ref, _ in reversed(ins):
                if keyer.key(ref.op) not in nodes:
                    stack.append((ref.op, False))
            continue
        deps = tuple(dict.fromkeys(keyer.key(r.op) for r, _ in ins))
        nodes[k] = Node(k, op, _kind(op), describe_op(op), deps, len(nodes))
    return rk


def _mark_users(nodes: Dict[str, Node], root: str, user: Tuple[str, str]) -> None:
    stack = [root]
    while stack:
        k = stack.pop()
        n = nodes[k]
        if user in n.users:
            continue
        n.users.add(user)
        stack.extend(n.deps)


def _order_edges(
    nodes: Dict[str, Node],
    exports: Dict[str, ExportNode],
    infos: Dict[str, TargetInfo],
    targets: Mapping[str, Target],
) -> None:
    """``depends_on``: exports after exports; steps only dependents use after
    the exports they wait for (only where no input already waits)."""
    closure: Dict[str, FrozenSet[str]] = {}

    def deps_of(name: str) -> FrozenSet[str]:
        hit = closure.get(name)
        if hit is not None:
            return hit
        out: Set[str] = set()
        for d in targets[name].depends_on or []:
            out.add(d)
            out |= deps_of(d)
        closure[name] = frozenset(out)
        return closure[name]

    if not any(targets[n].depends_on for n in infos):
        return
    for e in exports.values():
        waits = sorted(
            eid for d in targets[e.target].depends_on or [] for eid in infos[d].exports
        )
        e.after = tuple(dict.fromkeys(waits))
    gates: Dict[str, FrozenSet[str]] = {}
    for k in sorted(nodes, key=lambda k: nodes[k].index):  # inputs first
        n = nodes[k]
        users = {t for t, _ in n.users}
        g = frozenset.intersection(*(deps_of(u) for u in users)) if users else frozenset()
        gates[k] = g
        inherited: Set[str] = set()
        for d in n.deps:
            inherited |= gates[d]
        extra = sorted(g - inherited)
        if extra:
            n.after = tuple(eid for t in extra for eid in infos[t].exports)

