"""bake's ``--metadata-file``: per target, what buildx writes.

For a target whose outputs made an image::

    {
      "app": {
        "containerimage.config.digest": "sha256:...",   # one platform only
        "containerimage.descriptor": {
          "annotations": {"config.digest": "sha256:...",
                          "org.opencontainers.image.created": "2026-..."},
          "digest": "sha256:...",
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 1234
        },
        "containerimage.digest": "sha256:...",
        "image.name": "registry/app:1,registry/app:latest"
      }
    }

A multi-platform image's descriptor is its index (no annotations and no
config digest, as BuildKit's).  Targets that made no image (``local``,
``tar``, ``cacheonly`` outputs) get no image keys.  Beyond buildx's keys,
``bakery.build.steps`` says what the run did for the target:
``{"run": N, "cached": M}`` (steps executed, steps taken from the cache;
see :func:`bakery.engine.run.step_counts`).  Keys are sorted and
the file is indented by two spaces (Go's ``json.MarshalIndent``); it is
written atomically.  Nothing secret is in it: digests, media types, sizes,
names and times only.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from bakery.errors import BakeryError
from bakery.export.image import BuiltImage
from bakery.fsutil import atomic_write

__all__ = ["image_metadata", "render_metadata", "write_metadata_file"]


def image_metadata(built: Optional[BuiltImage], names: Sequence[str] = ()) -> Dict[str, Any]:
    """One target's entry."""
    if built is None:
        return {}
    root = built.root
    desc: Dict[str, Any] = {"digest": root.digest, "mediaType": root.media_type, "size": root.size}
    out: Dict[str, Any] = {"containerimage.digest": root.digest}
    if built.config_digest:
        desc["annotations"] = {"config.digest": built.config_digest,
                               "org.opencontainers.image.created": built.created}
        out["containerimage.config.digest"] = built.config_digest
    out["containerimage.descriptor"] = desc
    if names:
        out["image.name"] = ",".join(names)
    return out


def render_metadata(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_metadata_file(path: str, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` to ``path`` atomically (a temporary sibling, renamed)."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise BakeryError(f"cannot write the metadata file {path}: {parent} is not a directory",
                          hint="create the directory first, as buildx expects")
    try:
        atomic_write(path, render_metadata(doc), mode=0o644)
    except OSError as e:
        raise BakeryError(f"cannot write the metadata file {path}: {e.strerror or e}") from None
