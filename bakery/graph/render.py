"""``bakery plan`` renderings of a :class:`~bakery.graph.build.BuildGraph`.

Nothing is built and nothing touches the network: image sources whose
digest is not known are shown as *unresolved*.  Every rendering is
deterministic (same graph, same bytes): steps are numbered in execution
order (:meth:`BuildGraph.order`), sets are sorted.

``render(graph, fmt)`` with ``fmt`` one of:

``text``
    targets, then steps in execution order (number, short key, kind,
    description, inputs, ``(shared by a, b)``, ``cached``), then exports and
    a summary line (targets, platforms, nodes, shared nodes, cached).  A step
    is marked ``cached`` when ``cached(key)`` is true (``render(...,
    cached=...)``; the CLI asks the store); without ``cached`` nothing is
    marked and the summary leaves the count out.
``json``
    the stable schema below (``schemas/plan.schema.json``), indented by 2,
    keys in a fixed order.
``dot``
    a graphviz digraph, one node per merged step, one per export; data
    edges solid, ``depends_on`` ordering edges dashed.
``mermaid``
    the same as a Mermaid ``flowchart``.
``html``
    one self-contained page (inline CSS and JS, no external assets) from
    the jinja2 template ``bakery/ui/templates/plan.html.j2``.
``github-matrix``
    a GitHub Actions ``strategy.matrix`` on one line (for
    ``$GITHUB_OUTPUT``): ``{"include": [{"target": "app"}, ...]}``, one entry
    per requested target (groups expanded), or with ``split="platforms"``
    one per target and platform,
    ``{"include": [{"target": "app", "platform": "linux/arm64"}, ...]}``;
    targets without platforms get ``"local"``.
``matrix``
    the older name of ``github-matrix``; it splits by platform unless
    ``split`` says otherwise (as it always did).

JSON schema (``version`` 1; formally in ``schemas/plan.schema.json``)::

    {
      "version": 1,
      "build_platform": "linux/amd64",
      "requested": ["default"],              # names as given
      "groups": {"default": ["a", "b"]},     # requested groups -> targets
      "targets": {
        "a": {"platforms": ["linux/amd64"],  # as built
              "requested": true, "linked": false, "depends_on": [],
              "tags": [], "no_cache": false, "no_cache_filter": [],
              "context": ".", "dockerfile": "Dockerfile",
              "exports": ["export:a@linux/amd64"]}
      },
      "exports": [{"id": "export:a@linux/amd64", "target": "a",
                   "platform": "linux/amd64", "root": "sha256:...",
                   "after": []}],             # export ids (depends_on)
      "steps": [                              # in execution order
        {"step": 1, "key": "sha256:...", "kind": "image",
         "description": "...", "deps": ["sha256:..."],
         "users": ["a", "b@linux/arm64"], "shared": true,
         "platform": "linux/amd64",           # when the op has one
         "ref": "...", "digest": null,        # image sources
         "name": "context", "path": "/abs",   # local sources
         "after": ["export:..."]}             # only when not empty
      ],
      "counts": {"targets": 2, "exports": 2, "steps": 9, "shared": 3}
    }

``kind`` is one of ``image``, ``local``, ``scratch``, ``exec``, ``file``,
``merge``.  New keys may be added in version 1; none are removed or change
meaning without a version change.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Optional

from bakery.errors import BakeryError
from bakery.graph.build import BuildGraph
from bakery.graph.keys import short_key
from bakery.graph.ops import ImageSource
from bakery.graph.platforms import parse_platform

__all__ = ["FORMATS", "SPLITS", "render"]

Cached = Callable[[str], bool]


def _one_line(s: str, limit: int = 0) -> str:
    s = " ".join(s.split())
    if limit and len(s) > limit:
        s = s[: limit - 3] + "..."
    return s


def _label(graph: BuildGraph, key: str) -> str:
    n = graph.nodes[key]
    desc = n.description
    op = n.op
    if isinstance(op, ImageSource):
        desc = f"{desc} [{op.platform}]" + ("" if op.digest else " (unresolved)")
    return desc


def _numbers(graph: BuildGraph) -> Dict[str, int]:
    return {k: i + 1 for i, k in enumerate(graph.order())}


def render_text(graph: BuildGraph, cached: Optional[Cached] = None) -> str:
    num = _numbers(graph)
    hits = {k for k in num if cached(k)} if cached is not None else set()
    out: List[str] = []
    out.append(
        f"plan: {len(graph.targets)} targets, {len(graph.exports)} exports, "
        f"{graph.total_steps} steps ({graph.shared_steps} shared)"
    )
    out.append(f"build platform: {graph.build_platform}")
    out.append("")
    out.append("targets:")
    width = max((len(t) for t in graph.targets), default=0)
    for name, t in graph.targets.items():
        extra: List[str] = []
        if t.linked and not t.requested:
            extra.append("linked")
        if t.depends_on:
            extra.append("depends on " + ", ".join(t.depends_on))
        if t.tags:
            extra.append("tags " + ", ".join(t.tags))
        if t.no_cache:
            extra.append("no-cache")
        plats = ", ".join(t.platforms) or "-"
        line = f"  {name.ljust(width)}  {plats}"
        if extra:
            line += "  (" + "; ".join(extra) + ")"
        out.append(line)
    out.append("")
    out.append("steps (execution order):")
    nw = len(str(len(num)))
    kw = max((len(n.kind) for n in graph.nodes.values()), default=0)
    for k, i in num.items():
        n = graph.nodes[k]
        line = f"  #{str(i).ljust(nw)}  {n.short}  {n.kind.ljust(kw)}  {_one_line(_label(graph, k))}"
        if n.deps:
            line += "  <- " + ", ".join(f"#{num[d]}" for d in n.deps)
        if n.after:
            line += "  after " + ", ".join(e[len("export:"):] for e in n.after)
        if graph.is_shared(k):
            line += "  (shared by " + ", ".join(graph.user_labels(k)) + ")"
        if k in hits:
            line += "  cached"
        out.append(line.rstrip())
    out.append("")
    out.append("exports:")
    for e in graph.exports.values():
        line = f"  {e.target}@{e.platform}  <- #{num[e.root]} {short_key(e.root)}"
        if e.after:
            line += "  after " + ", ".join(a[len("export:"):] for a in e.after)
        out.append(line)
    out.append("")
    platforms = {e.platform for e in graph.exports.values()}
    summary = (
        f"summary: {_count(len(graph.targets), 'target')}, "
        f"{_count(len(platforms), 'platform')}, {_count(graph.total_steps, 'node')}, "
        f"{graph.shared_steps} shared"
    )
    if cached is not None:
        summary += f", {len(hits)} cached"
    out.append(summary)
    return "\n".join(out) + "\n"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def render_json(graph: BuildGraph) -> str:
    return json.dumps(graph.to_json(), indent=2, ensure_ascii=False) + "\n"


def _dot_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(graph: BuildGraph) -> str:
    num = _numbers(graph)
    out = [
        "digraph bakery {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="monospace", fontsize=10];',
    ]
    for k, i in num.items():
        n = graph.nodes[k]
        label = f"#{i} {n.short}\\n{_dot_quote(_one_line(_label(graph, k), 60))[1:-1]}"
        attrs = [f'label="{label}"']
        if graph.is_shared(k):
            attrs.append('style=filled, fillcolor="#ffe9a8"')
        if n.kind in ("image", "local", "scratch"):
            attrs.append("shape=ellipse")
        out.append(f"  {_dot_quote(k)} [{', '.join(attrs)}];")
    for e in graph.exports.values():
        out.append(
            f"  {_dot_quote(e.id)} [label={_dot_quote(e.target + '@' + e.platform)}, "
            "shape=doubleoctagon];"
        )
    for k in num:
        n = graph.nodes[k]
        for d in n.deps:
            out.append(f"  {_dot_quote(d)} -> {_dot_quote(k)};")
        for a in n.after:
            out.append(f"  {_dot_quote(a)} -> {_dot_quote(k)} [style=dashed];")
    for e in graph.exports.values():
        out.append(f"  {_dot_quote(e.root)} -> {_dot_quote(e.id)};")
        for a in e.after:
            out.append(f"  {_dot_quote(a)} -> {_dot_quote(e.id)} [style=dashed];")
    out.append("}")
    return "\n".join(out) + "\n"


def _mm(s: str) -> str:
    return (s.replace("&", "#amp;").replace('"', "#quot;")
            .replace("<", "#lt;").replace(">", "#gt;"))


def render_mermaid(graph: BuildGraph) -> str:
    num = _numbers(graph)
    eids = {e.id: f"e{i + 1}" for i, e in enumerate(graph.exports.values())}
    out = ["flowchart LR"]
    for k, i in num.items():
        n = graph.nodes[k]
        text = _mm(f"{i}: {n.short} {_one_line(_label(graph, k), 60)}")
        if n.kind in ("image", "local", "scratch"):
            out.append(f'  s{i}(["{text}"])')
        else:
            out.append(f'  s{i}["{text}"]')
    for e in graph.exports.values():
        out.append(f'  {eids[e.id]}{{{{"{_mm(e.target + "@" + e.platform)}"}}}}')
    for k, i in num.items():
        n = graph.nodes[k]
        for d in n.deps:
            out.append(f"  s{num[d]} --> s{i}")
        for a in n.after:
            out.append(f"  {eids[a]} -.-> s{i}")
    for e in graph.exports.values():
        out.append(f"  s{num[e.root]} --> {eids[e.id]}")
        for a in e.after:
            out.append(f"  {eids[a]} -.-> {eids[e.id]}")
    out.append("  classDef shared fill:#ffe9a8,stroke:#b08800")
    out.append("  classDef export fill:#d7f5dd,stroke:#2b8a3e")
    shared = [f"s{i}" for k, i in num.items() if graph.is_shared(k)]
    if shared:
        out.append(f"  class {','.join(shared)} shared")
    if eids:
        out.append(f"  class {','.join(eids.values())} export")
    return "\n".join(out) + "\n"


def _templates_dir() -> str:
    import bakery

    return os.path.join(os.path.dirname(os.path.abspath(bakery.__file__)), "ui", "templates")


def render_html(graph: BuildGraph) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_templates_dir()),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    num = _numbers(graph)
    steps = []
    for k, i in num.items():
        n = graph.nodes[k]
        steps.append({
            "number": i,
            "key": k,
            "short": n.short,
            "kind": n.kind,
            "label": _one_line(_label(graph, k)),
            "deps": [num[d] for d in n.deps],
            "after": [a[len("export:"):] for a in n.after],
            "users": graph.user_labels(k),
            "targets": sorted({t for t, _ in n.users}),
            "shared": graph.is_shared(k),
        })
    exports = [
        {
            "id": e.id,
            "label": f"{e.target}@{e.platform}",
            "target": e.target,
            "root": num[e.root],
            "after": [a[len("export:"):] for a in e.after],
        }
        for e in graph.exports.values()
    ]
    return env.get_template("plan.html.j2").render(
        graph=graph,
        targets=list(graph.targets.values()),
        steps=steps,
        exports=exports,
    )


SPLITS = ("targets", "platforms")


def render_github_matrix(graph: BuildGraph, split: str = "targets") -> str:
    return render_matrix(graph, split)


def render_matrix(graph: BuildGraph, split: str = "platforms") -> str:
    if split not in SPLITS:
        raise BakeryError(f"unknown matrix split {split!r}", hint="use one of " + ", ".join(SPLITS))
    include: List[Dict[str, str]] = []
    for name in graph.matrix_targets():
        if split == "targets":
            include.append({"target": name})
            continue
        t = graph.targets[name]
        plats = [p if p == "local" else str(parse_platform(p)) for p in t.explicit_platforms]
        for p in dict.fromkeys(plats or ["local"]):
            include.append({"target": name, "platform": p})
    return json.dumps({"include": include}, separators=(",", ":")) + "\n"


FORMATS: Dict[str, Callable[[BuildGraph], str]] = {
    "text": render_text,
    "json": render_json,
    "dot": render_dot,
    "mermaid": render_mermaid,
    "html": render_html,
    "github-matrix": render_github_matrix,
    "matrix": render_matrix,  # the older name: split by platform by default
}


def render(
    graph: BuildGraph,
    fmt: str,
    *,
    cached: Optional[Cached] = None,
    split: Optional[str] = None,
) -> str:
    """``graph`` as ``fmt`` (one of :data:`FORMATS`).

    ``cached(key)`` says whether a step's result is in the store (``text``
    marks those steps); ``split`` is ``targets`` or ``platforms`` (one
    ``github-matrix`` entry per target, or per target and platform; None:
    the format's default)."""
    fn = FORMATS.get(fmt)
    if fn is None:
        raise BakeryError(
            f"unknown plan format {fmt!r}",
            hint="use one of " + ", ".join(FORMATS),
        )
    if fn is render_text:
        return render_text(graph, cached)
    if split is not None and fn is render_matrix:
        return render_matrix(graph, split)
    if split is not None and fn is render_github_matrix:
        return render_github_matrix(graph, split)
    return fn(graph)

