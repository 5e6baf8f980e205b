"""The filesystem exporters: ``type=local,dest=DIR`` (the root filesystem
as a directory) and ``type=tar,dest=FILE`` (as one tar).

With several platforms, ``platform-split`` (default true) writes one
directory ``DIR/linux_amd64`` (one file ``FILE.linux_amd64``) per platform;
``platform-split=false`` merges them into one, later platforms over
earlier ones, as BuildKit does.  The tree is made in a temporary sibling
first: a new ``dest`` is renamed into place whole; an existing one gets the
new tree merged in (files the image has replace theirs, others stay, so
``dest=.`` is safe); a tar is written whole and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from typing import Any, Callable, List, Sequence, Tuple

from bakery.errors import BakeryError
from bakery.export.image import ExportContext
from bakery.export.spec import OutputSpec

__all__ = ["platform_dir", "write_local", "write_tar"]


def platform_dir(platform: Any) -> str:
    """``linux/arm/v7`` -> ``linux_arm_v7`` (BuildKit's directory names)."""
    return str(platform).replace("/", "_")


def _split(spec: OutputSpec, items: Sequence[Tuple[Any, Any]]) -> bool:
    return len(items) > 1 and spec.platform_split is not False


def _groups(spec: OutputSpec, items: Sequence[Tuple[Any, Any]], dest: str,
            name: Callable[[str, str], str]) -> List[Tuple[str, List[Any]]]:
    """(path, [layer lists applied in order]) per output path; ``name``
    makes a platform's path from ``dest`` and the platform's directory name."""
    if _split(spec, items):
        return [(name(dest, platform_dir(ex.export.platform)), [state.layers]) for ex, state in items]
    return [(dest, [state.layers for _, state in items])]


def _merge_into(src: str, dst: str) -> None:
    """Move the tree ``src`` into the directory ``dst``: directories merge,
    anything else replaces what has its name; other files in ``dst`` stay
    (BuildKit's local exporter writes into dest the same way)."""
    for name in sorted(os.listdir(src)):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        s_dir = os.path.isdir(s) and not os.path.islink(s)
        if s_dir and os.path.isdir(d) and not os.path.islink(d):
            _merge_into(s, d)
            shutil.copystat(s, d, follow_symlinks=False)
            continue
        if os.path.isdir(d) and not os.path.islink(d):
            shutil.rmtree(d)
        elif os.path.lexists(d):
            os.unlink(d)
        os.rename(s, d)


def write_local(ctx: ExportContext, spec: OutputSpec, items: Sequence[Tuple[Any, Any]]) -> List[str]:
    """The root filesystem into ``dest`` (made when missing); files already
    there that the image does not have are left alone."""
    dest = os.path.join(ctx.cwd, spec.dest)
    for path, stacks in _groups(spec, items, dest, lambda d, p: os.path.join(d, p)):
        path = os.path.abspath(path)
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise BakeryError(f"target {spec.target}: cannot write type=local to {path}: it is not a directory",
                              hint="give a directory (dest=DIR), or remove the file")
        tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".bakery-tmp-", dir=parent)
        try:
            for layers in stacks:
                ctx.snaps.materialize(layers, tmp)
            if not os.path.lexists(path):
                os.rename(tmp, path)
            else:
                _merge_into(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [f"{spec.target}: local {spec.dest}"]


def write_tar(ctx: ExportContext, spec: OutputSpec, items: Sequence[Tuple[Any, Any]]) -> List[str]:
    dest = os.path.join(ctx.cwd, spec.dest)
    for path, stacks in _groups(spec, items, dest, lambda d, p: f"{d}.{p}"):
        tmpdir = ctx.store.tmpdir("tar-")
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=parent)
        try:
            for layers in stacks:
                ctx.snaps.materialize(layers, tmpdir)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w",
                                                          format=tarfile.PAX_FORMAT) as tf:
                for n in sorted(os.listdir(tmpdir)):
                    tf.add(os.path.join(tmpdir, n), n)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [f"{spec.target}: tar {spec.dest}"]
