"""The build graph: operations with content cache keys, merged across targets.

``bakery.graph.build_graph`` and ``bakery.graph.BuildGraph`` are loaded
lazily, so that ``bakery.graph.ops`` (imported by the frontend) stays free of
import cycles.  Renderings: ``from bakery.graph.render import render``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BuildGraph", "build_graph"]


def __getattr__(name: str) -> Any:
    if name in ("BuildGraph", "build_graph"):
        from bakery.graph import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
