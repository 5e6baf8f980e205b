"""Exporters: a built target → the outputs its ``output`` entries ask for.

* :mod:`bakery.export.spec` - output entries parsed and checked (pure)
* :mod:`bakery.export.image` - images (layers, config, manifests, index);
  ``type=image`` / ``type=registry`` push
* :mod:`bakery.export.archive` - ``type=oci`` (tar or layout directory),
  ``type=docker`` (archive, or ``docker load`` without dest)
* :mod:`bakery.export.local` - ``type=local`` and ``type=tar`` (``platform-split``)
* :mod:`bakery.export.cacheonly` - ``type=cacheonly``
* :mod:`bakery.export.metadata` - ``--metadata-file``

:func:`export_target` is what the engine's shell calls for each target
once every step is done: it builds the image(s) the outputs need (once
per set of image options) and writes each output, returning the lines to
report and the target's metadata entry.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from bakery.export.archive import write_docker, write_oci
from bakery.export.cacheonly import cache_only, write_cacheonly
from bakery.export.image import BuiltImage, ExportContext, ImageBuilder, push_image
from bakery.export.local import write_local, write_tar
from bakery.export.metadata import image_metadata, write_metadata_file
from bakery.export.spec import ImageOptions, OutputSpec, parse_outputs

__all__ = [
    "BuiltImage",
    "ExportContext",
    "ImageBuilder",
    "OutputSpec",
    "export_target",
    "parse_outputs",
    "write_metadata_file",
]


def export_target(builder: ImageBuilder, target: str, specs: Sequence[OutputSpec],
                  items: Sequence[Tuple[Any, Any]]) -> Tuple[List[str], Dict[str, Any]]:
    """Write ``target``'s outputs; (report lines, metadata entry).

    ``items``: (graph export, engine state) per platform.  A target with no
    output still gets its image made in the store (its digest is what
    ``bakery run`` reports and the metadata file records)."""
    ctx = builder.ctx
    done: List[str] = []
    first: Tuple[Any, ...] = ()
    if not specs:
        built = builder.build(target, items, ImageOptions())
        return [], image_metadata(built)
    if cache_only(specs):
        return write_cacheonly(specs[0]), {}
    for spec in specs:
        if spec.type == "cacheonly":
            done.extend(write_cacheonly(spec))
            continue
        if spec.type == "local":
            done.extend(write_local(ctx, spec, items))
            continue
        if spec.type == "tar":
            done.extend(write_tar(ctx, spec, items))
            continue
        built = builder.build(target, items, spec.image)
        if not first:
            first = (built, spec.names)
        if spec.type == "oci":
            done.extend(write_oci(ctx, spec, built))
        elif spec.type == "docker":
            done.extend(write_docker(ctx, spec, built))
        elif spec.push:
            done.extend(push_image(ctx, spec, built))
        else:
            done.append(f"{target}: image {', '.join(spec.names) or built.root.digest} "
                        "(in the store; push=true to push)")
    return done, image_metadata(*first) if first else {}
