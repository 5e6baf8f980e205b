"""``bakery plan`` renderings of a :class:`~bakery.graph.build.BuildGraph`.

Nothing is built and nothing touches the network: image sources whose
digest is not known are shown as *unresolved*.  Every rendering is
deterministic (same graph, same bytes): steps are numbered in execution
order (:meth:`BuildGraph.order`), sets are sorted.

``render(graph, fmt)`` with ``fmt`` one of:

``text``
    targets, then steps in execution order (number, short key, kind,
    description, inputs, ``(shared by a, b)``), then exports.
``json``
    the stable schema below, indented by 2, keys in a fixed order.
``dot``
    a graphviz digraph, one node per merged step, one per export; data
    edges solid, ``depends_on`` ordering edges dashed.
``mermaid``
    the same as a Mermaid ``flowchart``.
``html``
    one self-contained page (inline CSS and JS, no external assets) from
    the jinja2 template ``bakery/ui/templates/plan.html.j2``.
``matrix``
    a GitHub Actions ``strategy.matrix``:
    ``{"include": [{"target": "app", "platform": "linux/arm64"}, ...]}``, one
    entry per requested target (groups expanded) and platform, on one line
    (for ``$GITHUB_OUTPUT``); targets without platforms get ``"local"``.

JSON schema (``version`` 1)::

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
from typing import Callable, Dict, List

from bakery.errors import BakeryError
from bakery.graph.build import BuildGraph
from bakery.graph.keys import short_key
from bakery.graph.ops import ImageSource
from bakery.graph.platforms import parse_platform

__all__ = ["FORMATS", "render"]


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


def render_text(graph: BuildGraph) -> str:
    num = _numbers(graph)
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
        out.append(line.rstrip())
    out.append("")
    out.append("exports:")
    for e in graph.exports.values():
        line = f"  {e.target}@{e.platform}  <- #{num[e.root]} {short_key(e.root)}"
        if e.after:
            line += "  after " + ", ".join(a[len("export:"):] for a in e.after)
        out.append(line)
    return "\n".join(out) + "\n"


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


def render_matrix(graph: BuildGraph) -> str:
    include: List[Dict[str, str]] = []
    for name in graph.matrix_targets():
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
    "matrix": render_matrix,
}


def render(graph: BuildGraph, fmt: str) -> str:
    """``graph`` as ``fmt`` (one of :data:`FORMATS`)."""
    fn = FORMATS.get(fmt)
    if fn is None:
        raise BakeryError(
            f"unknown plan format {fmt!r}",
            hint="use one of " + ", ".join(FORMATS),
        )
    return fn(graph)

