"""The archive exporters: ``type=oci`` (an OCI layout tar, or a directory
with ``tar=false``) and ``type=docker`` (a ``docker load`` tar; without
``dest``, loaded into the Docker engine at ``$DOCKER_HOST``, as ``--load``).

The layout's ``index.json`` entry carries the image names and the
``annotation-index-descriptor.*`` (several platforms) or
``annotation-manifest-descriptor.*`` (one platform) annotations.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List

from bakery.errors import BakeryError
from bakery.export.image import BuiltImage, ExportContext
from bakery.export.spec import OutputSpec, annotations_for

__all__ = ["write_docker", "write_oci"]


def _dest(ctx: ExportContext, spec: OutputSpec) -> str:
    dest = os.path.join(ctx.cwd, spec.dest)
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    return dest


def write_oci(ctx: ExportContext, spec: OutputSpec, built: BuiltImage) -> List[str]:
    from bakery.oci.layout import write_oci_layout

    root = built.root
    if len(built.manifests) > 1:
        root = root.with_annotations(annotations_for(spec.image, "index-descriptor") or None)
    write_oci_layout(ctx.blobs, root, _dest(ctx, spec), spec.names, tar=spec.tar)
    return [f"{spec.target}: OCI layout {spec.dest}" + ("" if spec.tar else " (directory)")]


def write_docker(ctx: ExportContext, spec: OutputSpec, built: BuiltImage) -> List[str]:
    from bakery.oci.layout import write_docker_archive

    if not spec.dest:
        return [_docker_load(ctx, spec, built)]
    if not spec.tar:
        raise BakeryError(f"target {spec.target}: type=docker,tar=false is not supported",
                          hint="use type=oci,tar=false for a layout directory")
    write_docker_archive(ctx.blobs, built.root, _dest(ctx, spec), spec.names)
    return [f"{spec.target}: docker archive {spec.dest}"]


def _docker_load(ctx: ExportContext, spec: OutputSpec, built: BuiltImage) -> str:
    """``docker load`` into the engine at $DOCKER_HOST (one platform: Docker's
    classic image store takes one)."""
    from bakery.oci.layout import write_docker_archive

    docker = ctx.docker or os.environ.get("BAKERY_DOCKER") or shutil.which("docker")
    if not docker:
        raise BakeryError(f"target {spec.target}: type=docker without dest loads into a Docker engine, "
                          "but there is no docker CLI", hint="give type=docker a dest=FILE.tar")
    tmp = ctx.store.tmpdir("load-")
    try:
        archive = os.path.join(tmp, "image.tar")
        write_docker_archive(ctx.blobs, built.root, archive, spec.names)
        r = subprocess.run([docker, "load", "-i", archive], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise BakeryError(f"target {spec.target}: docker load failed: {r.stderr.strip()[-2000:]}",
                              hint="is a Docker engine reachable at $DOCKER_HOST?")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    where = os.environ.get("DOCKER_HOST", "the local Docker engine")
    return f"{spec.target}: loaded into {where} as {', '.join(spec.names) or built.root.digest}"
