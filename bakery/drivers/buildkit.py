"""The ``buildkit`` driver: build resolved targets on a remote ``buildkitd``
through ``buildctl build --frontend dockerfile.v0`` (see buildkit's
docs/reference/buildctl.md for the flags used here).

:func:`buildctl_args` turns one target (for one platform, or all of its
platforms) into a ``buildctl`` command line; it is pure (path arithmetic
only).  Endpoints: ``unix://``, ``tcp://`` (with ``--tlscacert``,
``--tlscert``, ``--tlskey`` for mTLS) and ``kube-pod://POD?namespace=NS``
(buildctl reaches the pod through kubectl).  What buildctl cannot be told is
a :class:`BakeryError` naming the target and attribute: ``target:``
contexts (use ``depends_on`` and an image reference), ``call`` other than
build, ``policy``, entitlements other than ``network.host`` and
``security.insecure``.

:class:`BuildkitNode` runs one build with the ``buildctl`` binary
(``$BAKERY_BUILDCTL`` or ``buildctl`` on PATH); when there is none, the
error says so (Debian 12 does not package it).

Example::

    argv = buildctl_args(target, "linux/arm64", node, "/src",
                         outputs=["type=oci,dest=/tmp/a.tar"])
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import List, Mapping, Optional, Sequence

from bakery.bakefile.model import Target
from bakery.drivers.builders import Node
from bakery.drivers.docker import (
    DockerDriver,
    ProgressCallback,
    _abs,
    _csv,
    _entry_fields,
    _is_remote,
    _output_names,
    secret_ssh_args,
)
from bakery.errors import BakeryError

__all__ = ["BuildkitNode", "buildctl_args", "find_buildctl", "target_outputs"]

ENTITLEMENTS = ("network.host", "security.insecure")
NETWORK_MODES = {"host": "host", "none": "none", "default": None}


def _bad(t: Target, attr: str, why: str, hint: Optional[str] = None) -> BakeryError:
    return BakeryError(f"target {t.name}: {attr} is not supported by the buildkit driver: {why}",
                       hint=hint)


def target_outputs(t: Target, cwd: str) -> List[str]:
    """``t``'s outputs as ``--output`` values: tags become the image name
    (as buildx does for image/oci/docker exports), paths absolute."""
    outs: List[str] = []
    for o in t.output or []:
        attrs = dict(getattr(o, "attrs", {}) or {})
        typ = o.type
        if typ == "registry":
            typ = "image"
            attrs["push"] = "true"
        if typ == "docker" and not o.dest:
            raise _bad(t, "output", "type=docker without dest would load into a Docker engine, "
                       "which a buildkitd is not", hint="use type=docker,dest=FILE.tar, type=oci or "
                       "type=registry")
        if typ in ("image", "oci", "docker", "moby"):
            names = _output_names(o) or list(t.tags or [])
            if names:
                attrs["name"] = ",".join(names)
            elif typ == "image" and not _falsy_push(attrs):
                raise BakeryError(f"target {t.name}: output type={o.type} pushes but has no "
                                  "image name", hint="set tags, or name=REF on the output")
        fields = [f"type={typ}"]
        if o.dest:
            fields.append(f"dest={o.dest if o.dest == '-' else _abs(o.dest, cwd)}")
        fields += [f"{k}={attrs[k]}" for k in sorted(attrs)]
        outs.append(_csv(fields))
    return outs


def _falsy_push(attrs: dict) -> bool:
    return attrs.get("push", "false").lower() in ("0", "f", "false", "")


def buildctl_args(target: Target, platform: Optional[str], node: Node, cwd: str,
                  buildctl: str = "buildctl", outputs: Optional[Sequence[str]] = None,
                  inline_dir: Optional[str] = None,
                  metadata_file: Optional[str] = None) -> List[str]:
    """The ``buildctl [--addr ...] build ...`` command line for ``target``.

    ``platform``: one platform (None: all of the target's, comma-joined, or
    the node's default); ``outputs``: ``--output`` values replacing the
    target's own (a split build writes an OCI tar for the driver to join);
    ``inline_dir``: the directory where the caller wrote a
    ``dockerfile-inline`` as ``Dockerfile``."""
    t = target
    argv: List[str] = [buildctl, "--addr", node.endpoint]
    if node.tlscacert:
        argv += ["--tlscacert", node.tlscacert]
    if node.tlscert:
        argv += ["--tlscert", node.tlscert]
    if node.tlskey:
        argv += ["--tlskey", node.tlskey]
    argv += ["build", "--progress", "plain", "--frontend", "dockerfile.v0"]

    if t.call not in (None, "", "build"):
        raise _bad(t, "call", f"call={t.call}")
    if t.policy:
        raise _bad(t, "policy", "buildctl reads source policies from a file of its own format",
                   hint="remove policy")
    ctx = t.context or "."
    opts: List[str] = []
    if _is_remote(ctx):
        opts.append(f"context={ctx}")
        if t.dockerfile_inline is None:
            opts.append(f"filename={t.dockerfile or 'Dockerfile'}")
    else:
        argv += ["--local", f"context={_abs(ctx, cwd)}"]
    if t.dockerfile_inline is not None:
        if inline_dir is None:
            raise BakeryError(f"target {t.name}: dockerfile-inline needs a directory to write to")
        argv += ["--local", f"dockerfile={inline_dir}"]
        opts.append("filename=Dockerfile")
    elif not _is_remote(ctx):
        df = t.dockerfile or "Dockerfile"
        path = _abs(df, cwd) if df.startswith("cwd://") or os.path.isabs(df) else \
            os.path.normpath(os.path.join(_abs(ctx, cwd), df))
        argv += ["--local", f"dockerfile={os.path.dirname(path)}"]
        opts.append(f"filename={os.path.basename(path)}")

    for name in sorted(t.contexts or {}):
        value = (t.contexts or {})[name]
        if value.startswith("target:"):
            raise _bad(t, "contexts", f"{name}={value}: buildctl cannot feed one build's result "
                       "into another", hint="push the other target and use "
                       "docker-image://REF, with depends_on for the order")
        if value.startswith(("docker-image://", "oci-layout://")) or _is_remote(value):
            opts.append(f"context:{name}={value}")
        else:
            local = f"ctx-{name}"
            argv += ["--local", f"{local}={_abs(value, cwd)}"]
            opts.append(f"context:{name}=local:{local}")
    if t.target:
        opts.append(f"target={t.target}")
    plats = [platform] if platform else list(t.build_platforms or [])
    if plats:
        opts.append("platform=" + ",".join(plats))
    for k in sorted(t.args or {}):
        v = (t.args or {})[k]
        if v is not None:
            opts.append(f"build-arg:{k}={v}")
    for k in sorted(t.labels or {}):
        v = (t.labels or {})[k]
        if v is not None:
            opts.append(f"label:{k}={v}")
    hosts = [f"{h}={ip}" for h, ip in sorted((t.extra_hosts or {}).items()) if ip is not None]
    if hosts:
        opts.append("add-hosts=" + ",".join(hosts))
    if t.shm_size:
        opts.append(f"shm-size={t.shm_size}")
    for u in t.ulimits or []:
        opts.append(f"ulimit={u}")
    if t.pull:
        opts.append("image-resolve-mode=pull")
    if t.no_cache_filter:
        opts.append("no-cache=" + ",".join(t.no_cache_filter))
    allow: List[str] = []
    if t.network is not None:
        if t.network not in NETWORK_MODES:
            raise _bad(t, "network", f"network={t.network}",
                       hint="use " + ", ".join(NETWORK_MODES))
        mode = NETWORK_MODES[t.network]
        if mode:
            opts.append(f"force-network-mode={mode}")
        if mode == "host":
            allow.append("network.host")
    for e in t.entitlements or []:
        if e not in ENTITLEMENTS:
            raise _bad(t, "entitlements", e, hint="buildctl grants " + ", ".join(ENTITLEMENTS))
        if e not in allow:
            allow.append(e)
    for a in t.attest or []:
        if getattr(a, "disabled", False):
            continue
        attrs = dict(getattr(a, "attrs", {}) or {})
        opts.append(f"attest:{a.type}=" + _csv(f"{k}={attrs[k]}" for k in sorted(attrs)))
    for o in opts:
        argv += ["--opt", o]
    for e in allow:
        argv += ["--allow", e]
    if t.no_cache:
        argv.append("--no-cache")
    argv += secret_ssh_args(t, cwd)
    for c in t.cache_from or []:
        argv += ["--import-cache", _cache(c, cwd)]
    for c in t.cache_to or []:
        argv += ["--export-cache", _cache(c, cwd)]
    for out in target_outputs(t, cwd) if outputs is None else outputs:
        argv += ["--output", out]
    if metadata_file:
        argv += ["--metadata-file", metadata_file]
    return argv


def _cache(c: object, cwd: str) -> str:
    fields = _entry_fields(c)
    out = []
    for f in fields:
        k, _, v = f.partition("=")
        if k in ("src", "dest") and getattr(c, "type", "") == "local":
            v = _abs(v, cwd)
        out.append(f"{k}={v}")
    typ = [f for f in out if f.startswith("type=")]
    return _csv(typ + [f for f in out if not f.startswith("type=")])


def find_buildctl(env: Optional[dict] = None) -> str:
    """The buildctl binary, or a BakeryError saying how to get one."""
    env = dict(os.environ if env is None else env)
    path = env.get("BAKERY_BUILDCTL") or shutil.which("buildctl") or ""
    if not path or not os.access(path, os.X_OK):
        raise BakeryError("the buildkit driver needs buildctl, which is not installed"
                          + (f" ({path} is not executable)" if path else ""),
                          hint="install buildctl from a BuildKit release "
                          "(github.com/moby/buildkit/releases; Debian 12 does not package it) "
                          "and put it on PATH or in $BAKERY_BUILDCTL")
    return path


class BuildkitNode:
    """Runs builds on one buildkitd node with ``buildctl`` (output streamed
    like the docker driver's; the same cancellation and timeout)."""

    def __init__(self, node: Node, buildctl: str, cwd: str, timeout: Optional[float] = None,
                 env: Optional[Mapping[str, str]] = None):
        self.node = node
        self.buildctl = buildctl
        self.cwd = cwd
        # the process runner is the docker driver's (streaming, cancel, timeout)
        self.runner = DockerDriver(node.endpoint, docker=buildctl, cwd=cwd, env=env,
                                   timeout=timeout)

    def build(self, name: str, t: Target, platform: Optional[str],
              outputs: Optional[Sequence[str]], progress_cb: Optional[ProgressCallback]) -> str:
        """Run one ``buildctl build``; return the image digest buildctl
        reports in its metadata file ("" when the output makes no image)."""
        work = tempfile.mkdtemp(prefix="bakery-buildctl-")
        try:
            inline = None
            if t.dockerfile_inline is not None:
                inline = os.path.join(work, "inline")
                os.makedirs(inline)
                with open(os.path.join(inline, "Dockerfile"), "w", encoding="utf-8") as fh:
                    fh.write(t.dockerfile_inline)
            if outputs is None:  # buildctl writes a file dest, but not its directory
                for o in t.output or []:
                    if o.dest and o.dest != "-" and o.type != "local":
                        os.makedirs(os.path.dirname(_abs(o.dest, self.cwd)), exist_ok=True)
            meta = os.path.join(work, "metadata.json")
            argv = buildctl_args(t, platform, self.node, self.cwd, self.buildctl, outputs, inline,
                                 metadata_file=meta)
            self.runner._command(name, argv, None, progress_cb, "buildctl build")
            try:
                with open(meta, encoding="utf-8") as fh:
                    doc = json.load(fh)
            except (OSError, ValueError):
                return ""
            return str(doc.get("containerimage.digest", "")) if isinstance(doc, dict) else ""
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def cancel(self) -> None:
        self.runner._cancel()
