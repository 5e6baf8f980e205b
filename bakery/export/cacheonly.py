"""``type=cacheonly``: nothing leaves the build but its cache.

The steps ran (or came from the cache) and their results stay in the
store, where later builds and ``cache-to`` exports find them; no image is
made.  A target whose every output is cacheonly gets no image at all.
"""

from __future__ import annotations

from typing import List, Sequence

from bakery.export.spec import OutputSpec

__all__ = ["cache_only", "write_cacheonly"]


def cache_only(specs: Sequence[OutputSpec]) -> bool:
    """True when a target's outputs want no image and no files."""
    return bool(specs) and all(s.type == "cacheonly" for s in specs)


def write_cacheonly(spec: OutputSpec) -> List[str]:
    return [f"{spec.target}: cache only (results kept in the store)"]
