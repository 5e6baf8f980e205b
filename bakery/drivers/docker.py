"""The ``docker`` driver: build resolved targets with a Docker engine's own
BuildKit through the ``docker`` CLI (Docker 20.10, ``DOCKER_BUILDKIT=1``;
no buildx).

:func:`docker_build_args` turns one target (for one platform) into a
``docker -H HOST build ...`` command line and the text to feed on stdin (a
``dockerfile-inline``); it is pure (path arithmetic only, no file access).
Named ``contexts`` (Docker 20.10 has no ``--build-context``): a
``target:NAME`` is built first under a temporary tag, a local directory
into a ``FROM scratch`` image, a ``docker-image://REF`` is REF, and the
dependent's Dockerfile is rewritten to name those images
(:func:`context_plan`, :mod:`bakery.drivers.rewrite`); the temporary tags
are removed after the run.

Whatever the engine cannot do is a :class:`BakeryError` naming the target and
the attribute, never dropped silently: ``oci-layout://`` and remote named
contexts, ``pull`` with contexts bakery builds, ``cache-to``,
cache imports other than registry references, outputs other than the engine's
image store, ``type=local`` and ``type=tar`` (and only one of them), pushing,
several platforms (this driver makes no multi-platform manifest index),
``call``, ``attest``, ``annotations``, ``policy``, ``no-cache-filter``,
entitlements beyond ``network.host`` and networks other than
``default``/``host``/``none``.

:class:`DockerDriver` runs the builds of a set of targets: the targets a
target ``depends_on`` first, independent ones concurrently (up to ``jobs``),
each build's output streamed line by line to ``progress_cb(target, line)``.
It returns target -> image id (read from ``--iidfile``; ``""`` for a target
whose output is ``type=local``/``type=tar``, which leaves no image).

Example::

    argv, stdin = docker_build_args(target, "linux/amd64", "unix:///run/docker.sock", "/src")
    ids = DockerDriver("unix:///run/docker.sock").run(targets, ["app"], 4,
                                                       lambda t, line: print(t, line))
"""

from __future__ import annotations

import collections
import contextlib
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from bakery.bakefile.buildflags import parse_bool
from bakery.bakefile.model import Target
from bakery.dockerfile.request import parse_shm_size, parse_ulimits
from bakery.drivers.rewrite import context_key, rewrite_dockerfile
from bakery.drivers.schedule import target_deps
from bakery.errors import BakeryError

__all__ = [
    "DEFAULT_DOCKER",
    "BuildCommand",
    "ContextJob",
    "ContextSource",
    "DockerDriver",
    "ProgressCallback",
    "check_target",
    "context_plan",
    "context_sources",
    "docker_build_args",
    "dockerfile_path",
    "prepare_dockerfile",
]

DEFAULT_DOCKER = "/usr/bin/docker"
# builds here have no bridge network: RUN steps use the host's
DEFAULT_NETWORK = "host"
# what dockerd 20.10's builder accepts (builder-next: anything else is an error)
NETWORKS = ("default", "host", "none")
TAIL_LINES = 40

ProgressCallback = Callable[[str, str], None]


class BuildCommand(NamedTuple):
    """A ``docker build`` command line and what to write on its stdin (the
    ``dockerfile-inline`` text for ``-f -``), or None for no stdin; ``push``:
    the tags to ``docker push`` once the build succeeded."""

    argv: List[str]
    stdin: Optional[str]
    push: Tuple[str, ...] = ()


def _unsupported(t: Target, attr: str, why: str, hint: Optional[str] = None) -> BakeryError:
    return BakeryError(f"target {t.name}: {attr} is not supported by the docker driver: {why}",
                       hint=hint)


def _is_remote(ctx: str) -> bool:
    """A URL or git reference (not ``cwd://``), which the CLI sends as is."""
    if ctx.startswith("cwd://"):
        return False
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", ctx) or ctx.startswith(("git@", "github.com/")):
        return True
    return bool(re.match(r"^[^/]+\.git(#.*)?$", ctx))


def _abs(path: str, cwd: str) -> str:
    if path.startswith("cwd://"):
        path = path[len("cwd://"):]
    return os.path.normpath(os.path.join(cwd, path))


def _csv(fields: Iterable[str]) -> str:
    """A CSV record as the docker CLI reads ``--secret``/``--output`` values."""
    out = []
    for f in fields:
        if any(c in f for c in ',"\n\r') or f != f.strip():
            f = '"' + f.replace('"', '""') + '"'
        out.append(f)
    return ",".join(out)


def secret_ssh_args(t: Target, cwd: str) -> List[str]:
    """``--secret`` and ``--ssh`` flags for the target's secrets and ssh
    forwards, in the form both ``docker build`` and ``buildctl build`` read."""
    argv: List[str] = []
    for s in t.secret or []:
        fields = [f"id={s.id}"] if s.id else []
        if s.src:
            fields.append(f"src={_abs(s.src, cwd)}")
        if s.env:
            fields.append(f"env={s.env}")
        argv += ["--secret", _csv(fields)]
    for s in t.ssh or []:
        sid = s.id or "default"
        paths = [_abs(p, cwd) for p in s.paths]
        argv += ["--ssh", f"{sid}={','.join(paths)}" if paths else sid]
    return argv


class ContextSource(NamedTuple):
    """What a named context is for the engine: ``kind`` "target" (``value``:
    the target's name), "image" (an image reference) or "local" (an
    absolute directory)."""

    kind: str
    value: str


def context_sources(t: Target, cwd: str) -> Dict[str, ContextSource]:
    """``t``'s named contexts classified (pure); a :class:`BakeryError` for
    the kinds the engine cannot be given: ``oci-layout://`` and remote
    (URL, git) contexts."""
    out: Dict[str, ContextSource] = {}
    for name in sorted(t.contexts or {}):
        v = (t.contexts or {})[name]
        shown = f"{name}={v}"
        if context_key(name) is None:
            raise _unsupported(t, "contexts", f"{shown}: {name!r} is not a name a Dockerfile can "
                               "refer to (FROM/COPY --from)")
        if v.startswith("target:"):
            if not v[len("target:"):]:
                raise BakeryError(f"target {t.name}: contexts {shown}: no target name")
            out[name] = ContextSource("target", v[len("target:"):])
        elif v.startswith("docker-image://"):
            if not v[len("docker-image://"):]:
                raise BakeryError(f"target {t.name}: contexts {shown}: no image reference")
            out[name] = ContextSource("image", v[len("docker-image://"):])
        elif v.startswith("oci-layout://"):
            raise _unsupported(t, "contexts", f"{shown}: Docker 20.10's engine cannot read an OCI "
                               "layout as a build input",
                               hint="load the image into the engine (skopeo copy oci:DIR:TAG "
                               "docker-daemon:NAME:TAG) and use docker-image://NAME:TAG")
        elif _is_remote(v):
            raise _unsupported(t, "contexts", f"{shown}: remote (URL or git) named contexts are "
                               "not available in Docker 20.10",
                               hint="check it out locally and name the directory, or use a "
                               "buildkit driver")
        else:
            out[name] = ContextSource("local", _abs(v, cwd))
    return out


def _falsy(v: Optional[str]) -> bool:
    if v is None:
        return True
    try:
        return not parse_bool(v)
    except ValueError:
        return False


def _nonempty(v: Any) -> bool:
    return v is not None and len(v) > 0


def check_target(t: Target, split: bool = False) -> None:
    """Raise a :class:`BakeryError` for the first attribute of ``t`` this
    driver (and Docker 20.10's engine) cannot honour.  ``split``: ``t`` is
    built one platform at a time and its outputs are written by the caller
    (a multi-node builder joining the platforms), so neither its platforms
    nor its outputs are this driver's business."""
    if _nonempty(t.contexts):
        sources = context_sources(t, "/")
        ctx = t.context or "."
        if _is_remote(ctx) and t.dockerfile_inline is None:
            raise _unsupported(t, "contexts", f"the build context {ctx} is remote: bakery cannot "
                               "read its Dockerfile to point its named contexts at images",
                               hint="use a local context or dockerfile-inline, or a buildkit driver")
        built = sorted(n for n, s in sources.items() if s.kind != "image")
        if t.pull and built:
            raise _unsupported(t, "pull", f"with named contexts ({', '.join(built)}) the engine "
                               "would try to pull the images bakery builds for them locally",
                               hint="drop pull = true (or --pull), or a buildkit driver")
    if _nonempty(t.cache_to):
        raise _unsupported(t, "cache-to", "the engine's builder cannot export a build cache",
                           hint="remove cache-to (an image built here carries no inline cache)")
    for c in t.cache_from or []:
        typ = getattr(c, "type", "")
        attrs = dict(getattr(c, "attrs", {}) or {})
        if typ != "registry" or set(attrs) != {"ref"}:
            raise _unsupported(t, "cache-from", f"{_csv(_entry_fields(c))}: the engine imports only "
                               "registry references (type=registry,ref=REF with no other attributes)")
    if t.call not in (None, "", "build"):
        raise _unsupported(t, "call", f"call={t.call} (build checks and outline/targets requests) is "
                           "not available in Docker 20.10")
    if any(not getattr(a, "disabled", False) for a in t.attest or []):
        raise _unsupported(t, "attest", "the engine's image store keeps no attestations",
                           hint="remove attest, or set disabled=true")
    if _nonempty(t.annotations):
        raise _unsupported(t, "annotations", "the engine's image store keeps no manifest/index "
                           "annotations")
    if _nonempty(t.policy):
        raise _unsupported(t, "policy", "source policies are not available in Docker 20.10")
    if _nonempty(t.no_cache_filter):
        raise _unsupported(t, "no-cache-filter", "Docker 20.10's `docker build` has no "
                           "--no-cache-filter", hint="use no-cache = true")
    for e in t.entitlements or []:
        if e != "network.host":
            raise _unsupported(t, "entitlements", f"{e}: `docker build` can grant only network.host")
    if t.network is not None and t.network not in NETWORKS:
        raise _unsupported(t, "network", f"network={t.network}: the engine's builder runs RUN steps "
                           f"only with {', '.join(NETWORKS)}")
    if split:
        return
    plats = t.build_platforms
    if plats is not None and len(plats) > 1:
        raise _unsupported(t, "platforms", f"{', '.join(plats)}: this driver builds one "
                           "platform per target and produces no multi-platform manifest index",
                           hint="build it with a builder (bakery builder add; bakery run --builder "
                           "NAME), which splits it per platform across its nodes and joins the "
                           "images into one index")
    outputs = list(t.output or [])
    if len(outputs) > 1:
        raise _unsupported(t, "output", "the engine's builder takes one output per build")
    for o in outputs:
        _check_output(t, o)


def _entry_fields(e: Any) -> List[str]:
    to_json = getattr(e, "to_json", None)
    m = to_json() if to_json is not None else {}
    return [f"{k}={v}" for k, v in m.items()]


def _check_output(t: Target, o: Any) -> None:
    typ = getattr(o, "type", "")
    attrs: Dict[str, str] = dict(getattr(o, "attrs", {}) or {})
    dest = getattr(o, "dest", "")
    shown = _csv(_entry_fields(o))
    if typ in ("docker", "image", "moby"):
        if dest:
            raise _unsupported(t, "output", f"{shown}: dest (an image tar) is not written by the "
                               "engine", hint="drop dest; the image lands in the engine (docker save "
                               "it from there)")
        _check_image_attrs(t, shown, attrs)
        if not _falsy(attrs.get("push")) and not _output_names(o) and not t.tags:
            raise BakeryError(f"target {t.name}: output {shown}: no image name to push",
                              hint="set tags, or name=REF on the output")
        return
    if typ == "registry":
        if dest:
            raise _unsupported(t, "output", f"{shown}: type=registry takes no dest")
        _check_image_attrs(t, shown, attrs)
        if not _output_names(o) and not t.tags:
            raise BakeryError(f"target {t.name}: output {shown}: no image name to push",
                              hint="set tags, or name=REF on the output")
        return
    if typ in ("local", "tar"):
        if not dest or dest == "-":
            raise _unsupported(t, "output", f"{shown}: needs a dest file/directory (the build's "
                               "stdout carries its progress)")
        if attrs:
            raise _unsupported(t, "output", f"{shown}: attribute {', '.join(sorted(attrs))} is not "
                               f"supported for type={typ}")
        # tags are not applied to local/tar exports (as in buildx): no -t is passed
        return
    raise _unsupported(t, "output", f"{shown}: the engine exports only to its image store "
                       "(type=docker/image, pushed with push=true or type=registry), "
                       "type=local and type=tar",
                       hint="use a builder (bakery run --builder NAME) for type=oci outputs, or a "
                       "buildkit driver")


def _check_image_attrs(t: Target, shown: str, attrs: Mapping[str, str]) -> None:
    extra = sorted(set(attrs) - {"name", "push", "load"})
    if extra:
        raise _unsupported(t, "output", f"{shown}: attribute {', '.join(extra)} is not honoured "
                           "by the engine's image store")


def pushes(t: Target) -> bool:
    """Whether ``t``'s outputs push its image (type=registry, or push=true)."""
    for o in t.output or []:
        attrs = dict(getattr(o, "attrs", {}) or {})
        if o.type == "registry" or (o.type in ("image", "docker", "moby")
                                    and not _falsy(attrs.get("push"))):
            return True
    return False


def image_names(t: Target) -> List[str]:
    """The names ``t``'s image gets: its tags, then its outputs' ``name``s."""
    names: List[str] = list(t.tags or [])
    for o in t.output or []:
        names += [n for n in _output_names(o) if n not in names]
    return names


def _output_names(o: Any) -> List[str]:
    name = dict(getattr(o, "attrs", {}) or {}).get("name", "")
    return [n for n in (x.strip() for x in name.split(",")) if n]


def dockerfile_path(t: Target, cwd: str) -> Optional[str]:
    """The Dockerfile ``docker build -f`` gets for ``t``: an absolute path
    (for a remote context, a path inside it); None for a dockerfile-inline
    or a remote context's default Dockerfile."""
    if t.dockerfile_inline is not None:
        return None
    ctx = t.context or "."
    remote = _is_remote(ctx)
    if t.dockerfile is None and remote:
        return None
    df = t.dockerfile or "Dockerfile"
    if df.startswith("cwd://"):
        return _abs(df, cwd)
    if remote:
        return posixpath.normpath(df)  # a path inside the remote context
    if os.path.isabs(df):
        return df
    return os.path.normpath(os.path.join(_abs(ctx, cwd), df))


def docker_build_args(target: Target, platform: Optional[str], host: str, cwd: str,
                      docker: str = DEFAULT_DOCKER, iidfile: Optional[str] = None,
                      split_tag: Optional[str] = None, extra_tags: Sequence[str] = (),
                      rewritten: Optional[str] = None) -> BuildCommand:
    """The ``docker -H HOST build`` command line for ``target`` on ``platform``
    (None: the target's only platform, or the engine's), paths resolved
    against ``cwd`` as buildx does; the stdin text for ``-f -``; the tags to
    push afterwards.  ``split_tag``: build one platform of a split target
    (or a target only needed as another's named context) under this
    (temporary) tag only, with no outputs (the caller saves it).
    ``extra_tags``: more (temporary) tags, never pushed.  ``rewritten``:
    for a target with named contexts, its Dockerfile with the contexts
    replaced by images (:func:`bakery.drivers.rewrite.rewrite_dockerfile`):
    a file path (the original context is kept) or, for a dockerfile-inline,
    the text itself."""
    t = target
    check_target(t, split=split_tag is not None)
    if _nonempty(t.contexts) and rewritten is None:
        raise BakeryError(f"target {t.name}: named contexts need the Dockerfile rewritten for "
                          "them (the docker driver does that when it runs the build)")
    argv: List[str] = [docker, "-H", host, "build", "--progress=plain"]
    stdin: Optional[str] = None

    ctx = t.context or "."
    remote = _is_remote(ctx)
    context_arg = ctx if remote else _abs(ctx, cwd)
    if t.dockerfile_inline is not None:
        argv += ["-f", "-"]
        stdin = t.dockerfile_inline if rewritten is None else rewritten
    elif rewritten is not None:
        argv += ["-f", rewritten]
    else:
        df = dockerfile_path(t, cwd)
        if df is not None:
            argv += ["-f", df]

    for k in sorted(t.args or {}):
        v = (t.args or {})[k]
        if v is not None:
            argv += ["--build-arg", f"{k}={v}"]
    for k in sorted(t.labels or {}):
        v = (t.labels or {})[k]
        if v is not None:
            argv += ["--label", f"{k}={v}"]
    exports = [o for o in t.output or [] if o.type in ("local", "tar")]
    if split_tag is not None:
        tags = [split_tag]
    elif exports:
        tags = []  # nothing lands in the engine to tag
    else:
        tags = image_names(t)
    if extra_tags and exports and split_tag is None:
        raise BakeryError(f"target {t.name}: its output ({', '.join(o.type for o in exports)}) "
                          "leaves no image in the engine for the targets that use it as a named "
                          "context", hint="drop the output, or make a second target without it "
                          "for the named context")
    for tag in [*tags, *extra_tags]:
        argv += ["-t", tag]
    if t.target:
        argv += ["--target", t.target]
    if platform is None and t.build_platforms:
        platform = t.build_platforms[0]
    if platform:
        argv += ["--platform", platform]
    argv += secret_ssh_args(t, cwd)
    argv.append(f"--network={t.network or DEFAULT_NETWORK}")
    if t.no_cache:
        argv.append("--no-cache")
    if t.pull:
        argv.append("--pull")
    for h in sorted(t.extra_hosts or {}):
        ip = (t.extra_hosts or {})[h]
        if ip is not None:
            argv += ["--add-host", f"{h}:{ip}"]
    # bad values fail here, naming the target, not in docker's output
    parse_shm_size(t.name, t.shm_size)
    parse_ulimits(t.name, t.ulimits)
    if t.shm_size:
        argv += ["--shm-size", t.shm_size]
    for u in t.ulimits or []:
        argv += ["--ulimit", u]
    for c in t.cache_from or []:
        argv += ["--cache-from", c.attrs["ref"]]
    for o in exports if split_tag is None else []:
        argv += ["--output", _csv([f"type={o.type}", f"dest={_abs(o.dest, cwd)}"])]
    # with a local/tar export the engine gives no image id, and the CLI fails the build
    # ("cannot write ... because server did not provide an image ID")
    if iidfile and not (exports and split_tag is None):
        argv += ["--iidfile", iidfile]
    argv.append(context_arg)
    push = tuple(tags) if split_tag is None and pushes(t) else ()
    return BuildCommand(argv, stdin, push)


def _build_order(targets: Mapping[str, Target], order: List[str]) -> List[str]:
    """``order`` and everything it depends on (``depends_on`` and ``target:``
    contexts), dependencies first (stable)."""
    out: List[str] = []
    state: Dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, chain: List[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cyc = [*chain[chain.index(name):], name]
            raise BakeryError(f"depends_on cycle: {' -> '.join(cyc)}")
        t = targets.get(name)
        if t is None:
            user = f" (in depends_on of {chain[-1]})" if chain else ""
            raise BakeryError(f"target {name}{user} is not among the resolved targets")
        state[name] = 1
        for dep in target_deps(t):
            visit(dep, [*chain, name])
        state[name] = 2
        out.append(name)

    for n in order:
        visit(n, [])
    return out


CONTEXT_REPO = "bakery-ctx"
LOCAL_CONTEXT_DOCKERFILE = "FROM scratch\nCOPY . /\n"


def _safe(name: str) -> str:
    """A valid image name component: lowercase alphanumerics joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"


class ContextJob(NamedTuple):
    """One ``docker build`` of a run: ``name`` (a target, or
    ``TARGET:context:NAME`` for a local-directory named context), after
    ``deps``; ``refs`` maps its named contexts to images; ``only_tag``: build
    it under this temporary tag alone, with no outputs; ``extra_tags``: more
    temporary tags."""

    name: str
    target: Target
    platform: Optional[str]
    deps: Tuple[str, ...]
    refs: Mapping[str, str]
    only_tag: Optional[str] = None
    extra_tags: Tuple[str, ...] = ()


def context_plan(targets: Mapping[str, Target], names: Sequence[str], requested: Set[str],
                 cwd: str, run_id: str) -> List[ContextJob]:
    """How named contexts become images on one engine (pure):

    * ``target:NAME``: NAME is built first, also tagged
      ``bakery-ctx/NAME:RUN_ID``; a NAME that was not asked for (only
      needed as a context) is built under that tag alone, without its outputs;
    * a local directory: a ``FROM scratch`` + ``COPY . /`` build of it,
      tagged ``bakery-ctx/TARGET-NAME:RUN_ID``, its files the image's root
      as they are the context's in BuildKit;
    * ``docker-image://REF``: REF itself.

    The dependents' Dockerfiles then name those images
    (:func:`bakery.drivers.rewrite.rewrite_dockerfile`); the temporary tags
    are removed after the run."""
    ctx_tag: Dict[str, str] = {}
    sources: Dict[str, Dict[str, ContextSource]] = {}
    for n in names:
        sources[n] = context_sources(targets[n], cwd)
        for src in sources[n].values():
            if src.kind == "target" and src.value not in ctx_tag:
                tag = f"{CONTEXT_REPO}/{_safe(src.value)}:{run_id}"
                while tag in ctx_tag.values():  # two names that make the same component
                    tag += "x"
                ctx_tag[src.value] = tag
    needed_otherwise = {d for n in names for d in targets[n].depends_on or []} | requested
    jobs: List[ContextJob] = []
    for n in names:
        t = targets[n]
        plats = t.build_platforms
        platform = plats[0] if plats and len(plats) == 1 else None
        deps = list(target_deps(t))
        refs: Dict[str, str] = {}
        for cname, src in sources[n].items():
            if src.kind == "target":
                refs[cname] = ctx_tag[src.value]
            elif src.kind == "image":
                refs[cname] = src.value
            else:
                tag = f"{CONTEXT_REPO}/{_safe(n)}-{_safe(cname)}:{run_id}"
                job = f"{n}:context:{cname}"
                local = Target(job, context=src.value, dockerfile_inline=LOCAL_CONTEXT_DOCKERFILE,
                               platforms=[platform] if platform else None, network="none")
                jobs.append(ContextJob(job, local, platform, (), {}, only_tag=tag))
                deps.append(job)
                refs[cname] = tag
        only: Optional[str] = None
        extra: Tuple[str, ...] = ()
        if n in ctx_tag:
            if n in needed_otherwise:
                extra = (ctx_tag[n],)
            else:
                if plats is not None and len(plats) > 1:
                    users = sorted(u for u in names if any(
                        s.kind == "target" and s.value == n for s in sources[u].values()))
                    raise BakeryError(f"target {n} (a named context of {', '.join(users)}): "
                                      f"{', '.join(plats)}: the docker driver builds one "
                                      "platform per target",
                                      hint=f"set platforms = [\"...\"] on {n}, or --set "
                                      f"'{n}.platform=...'")
                only = ctx_tag[n]
        jobs.append(ContextJob(n, t, None, tuple(deps), refs, only_tag=only, extra_tags=extra))
    return jobs


def prepare_dockerfile(t: Target, refs: Mapping[str, str], cwd: str, tmpdir: str) -> str:
    """``t``'s Dockerfile rewritten for ``refs`` (context name -> image):
    the text itself for a dockerfile-inline, else the path of a copy under
    ``tmpdir`` with the same base name (and the ``NAME.dockerignore`` next
    to it, if the original has one)."""
    try:
        return _prepare_dockerfile(t, refs, cwd, tmpdir)
    except BakeryError as e:
        if e.message.startswith(f"target {t.name}: "):
            raise
        raise BakeryError(f"target {t.name}: {e.message}", e.pos, e.hint) from None


def _prepare_dockerfile(t: Target, refs: Mapping[str, str], cwd: str, tmpdir: str) -> str:
    if t.dockerfile_inline is not None:
        return rewrite_dockerfile(t.dockerfile_inline, refs, t.args or {}, "Dockerfile")
    path = dockerfile_path(t, cwd)
    if path is None or not os.path.isabs(path):
        raise BakeryError(f"target {t.name}: named contexts need a Dockerfile bakery can read")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise BakeryError(f"target {t.name}: cannot read its Dockerfile {path}: "
                          f"{e.strerror or e}") from None
    except UnicodeDecodeError:
        raise BakeryError(f"target {t.name}: its Dockerfile {path} is not UTF-8 text") from None
    new = rewrite_dockerfile(text, refs, t.args or {}, path)
    os.makedirs(tmpdir, exist_ok=True)
    out = os.path.join(tmpdir, os.path.basename(path))
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(new)
    ignore = path + ".dockerignore"
    if os.path.isfile(ignore):
        shutil.copyfile(ignore, out + ".dockerignore")
    return out


#: Docker Engines before 23.0 drop ``--shm-size`` and ``--ulimit`` silently
#: when building with BuildKit (moby/moby#41997; measured with 20.10.24).
LIMITS_MIN_ENGINE = 23


def check_engine_limits(target: str, server_version: Optional[str]) -> None:
    """A BakeryError when ``target``'s shm-size/ulimits would be ignored by
    an engine of ``server_version`` (unknown versions pass: the build says
    what is wrong with the engine)."""
    m = re.match(r"(\d+)\.", server_version or "")
    if m is None or int(m.group(1)) >= LIMITS_MIN_ENGINE:
        return
    raise BakeryError(
        f"target {target}: shm-size and ulimits are ignored by Docker Engine {server_version} "
        f"when it builds with BuildKit (it needs {LIMITS_MIN_ENGINE}.0 or later)",
        hint="remove them, upgrade the engine, or build with the embedded engine (bakery run) "
             "or the buildkit driver")


class DockerDriver:
    """Builds targets with ``docker build`` against the engine at ``host``.

    ``cwd`` is where relative paths (context, secrets, outputs) start (the
    bake file's directory; default the process's); ``env`` is added to the
    CLI's environment (``DOCKER_BUILDKIT=1`` always is); ``timeout`` bounds
    each build in seconds (None: unbounded)."""

    def __init__(self, host: str, docker: str = DEFAULT_DOCKER, cwd: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None):
        self.host = host
        self.docker = docker
        self.cwd = cwd or os.getcwd()
        self.env = dict(env or {})
        self.timeout = timeout
        self._lock = threading.Lock()
        self._procs: Set[subprocess.Popen[str]] = set()
        self._cancelled = False
        self._started: Set[str] = set()  # builds of the current run that were started

    def run(self, targets: Mapping[str, Target], order: List[str], jobs: int,
            progress_cb: Optional[ProgressCallback] = None) -> Dict[str, str]:
        """Build ``order`` (and what it depends on); return target -> image id."""
        names = _build_order(targets, order)
        if not (os.path.isfile(self.docker) and os.access(self.docker, os.X_OK)) and \
                shutil.which(self.docker) is None:
            raise BakeryError(f"docker driver: {self.docker} is not an executable",
                              hint="install the docker CLI (Debian package docker.io)")
        tmp = tempfile.mkdtemp(prefix="bakery-docker-")
        temp_tags: Dict[str, List[str]] = {}  # build -> the temporary tags it makes
        self._started = set()
        try:
            # every target is checked (and its Dockerfile rewritten) before any build starts
            cmds, deps = self._commands(targets, names, set(order), tmp, temp_tags)
            limited = [n for n in names if targets[n].shm_size or targets[n].ulimits]
            if limited:
                check_engine_limits(limited[0], self._server_version())
            done = self._schedule(cmds, deps, max(1, jobs), progress_cb)
            return {n: done[n] for n in names}
        finally:
            for n in [n for n in temp_tags if n in self._started]:
                for tag in temp_tags[n]:
                    self.remove_image(tag)
            shutil.rmtree(tmp, ignore_errors=True)

    def _commands(self, targets: Mapping[str, Target], names: List[str], requested: Set[str],
                  tmp: str, temp_tags: Dict[str, List[str]]
                  ) -> Tuple[Dict[str, BuildCommand], Dict[str, List[str]]]:
        """The build commands (and what each waits for) for ``names``, plus
        one build per local-directory named context; ``temp_tags`` gets the
        temporary tags each creates (see :func:`context_plan`)."""
        plan = context_plan(targets, names, requested, self.cwd, uuid.uuid4().hex[:12])
        cmds: Dict[str, BuildCommand] = {}
        deps: Dict[str, List[str]] = {}
        for i, job in enumerate(plan):
            t = job.target
            rewritten = None
            if job.refs:
                rewritten = prepare_dockerfile(t, job.refs, self.cwd, os.path.join(tmp, f"df{i}"))
            cmds[job.name] = docker_build_args(
                t, job.platform, self.host, self.cwd, self.docker,
                os.path.join(tmp, f"{i}.iid"), split_tag=job.only_tag,
                extra_tags=job.extra_tags, rewritten=rewritten)
            deps[job.name] = list(job.deps)
            made = [*([job.only_tag] if job.only_tag else []), *job.extra_tags]
            if made:
                temp_tags[job.name] = made
        return cmds, deps

    def _schedule(self, cmds: Dict[str, BuildCommand], deps: Mapping[str, List[str]], jobs: int,
                  progress_cb: Optional[ProgressCallback]) -> Dict[str, str]:
        names = list(cmds)
        done: Dict[str, str] = {}
        pending = list(names)
        running: Dict[Future[str], str] = {}
        failure: Optional[BaseException] = None
        self._cancelled = False
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="bakery-docker") as pool:
            while pending or running:
                if failure is None:
                    for n in list(pending):
                        if len(running) >= jobs:
                            break
                        if all(d in done for d in deps[n]):
                            pending.remove(n)
                            self._started.add(n)
                            running[pool.submit(self._build, n, cmds[n], progress_cb)] = n
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in finished:
                    n = running.pop(f)
                    exc = f.exception()
                    if exc is None:
                        done[n] = f.result()
                    elif failure is None:
                        failure = exc
                        self._cancel()
        if failure is not None:
            raise failure
        return done

    def _cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            for p in self._procs:
                if p.poll() is None:
                    p.terminate()

    def _emit(self, progress_cb: Optional[ProgressCallback], name: str, line: str) -> None:
        if progress_cb is not None:
            with self._lock:
                progress_cb(name, line)

    def _build(self, name: str, cmd: BuildCommand, progress_cb: Optional[ProgressCallback]) -> str:
        return self.build(name, cmd, progress_cb)

    def build(self, name: str, cmd: BuildCommand, progress_cb: Optional[ProgressCallback]) -> str:
        """Run one build (then push its tags when ``cmd.push`` says so);
        return the image id ("" when the output leaves no image)."""
        iidfile = cmd.argv[cmd.argv.index("--iidfile") + 1] if "--iidfile" in cmd.argv else None
        self._command(name, cmd.argv, cmd.stdin, progress_cb, "docker build")
        image = ""
        if iidfile is not None and os.path.isfile(iidfile):
            with open(iidfile, encoding="utf-8") as fh:
                image = fh.read().strip()
        for tag in cmd.push:
            self._emit(progress_cb, name, f"pushing {tag}")
            self._command(name, [self.docker, "-H", self.host, "push", tag], None, progress_cb,
                          f"docker push {tag}")
        return image

    def save(self, name: str, image: str, dest: str,
             progress_cb: Optional[ProgressCallback] = None) -> None:
        """``docker save`` ``image`` (an id or a tag) to the tar ``dest``."""
        self._command(name, [self.docker, "-H", self.host, "save", "-o", dest, image], None,
                      progress_cb, "docker save")

    def remove_image(self, image: str) -> None:
        """``docker rmi`` ``image``, best effort (a leftover temporary tag is harmless)."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([self.docker, "-H", self.host, "rmi", image], capture_output=True,
                           timeout=120, env=self._env(), cwd=self.cwd)

    def _server_version(self) -> Optional[str]:
        """The engine's version (``docker version``), None when not known."""
        try:
            r = subprocess.run([self.docker, "-H", self.host, "version", "--format",
                                "{{.Server.Version}}"], capture_output=True, text=True,
                               timeout=60, env=self._env(), cwd=self.cwd)
        except (OSError, subprocess.SubprocessError):
            return None
        return (r.stdout.strip() or None) if r.returncode == 0 else None

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["DOCKER_BUILDKIT"] = "1"
        return env

    def _command(self, name: str, argv: List[str], stdin_text: Optional[str],
                 progress_cb: Optional[ProgressCallback], what: str) -> None:
        """Run ``argv``, streaming its output lines to ``progress_cb``; a
        BakeryError with the output's tail when it fails, times out or is
        cancelled."""
        tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)
        with tempfile.TemporaryFile("w+", encoding="utf-8") as stdin:
            if stdin_text is not None:
                stdin.write(stdin_text)
                stdin.flush()
                stdin.seek(0)
            with self._lock:
                if self._cancelled:
                    raise BakeryError(f"target {name}: not built (another build failed)")
                proc = subprocess.Popen(argv, stdin=stdin if stdin_text is not None else
                                        subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, errors="replace",
                                        env=self._env(), cwd=self.cwd)
                self._procs.add(proc)
            timer: Optional[threading.Timer] = None
            timed_out = threading.Event()
            if self.timeout is not None:
                def expire() -> None:
                    timed_out.set()
                    proc.kill()
                timer = threading.Timer(self.timeout, expire)
                timer.daemon = True
                timer.start()
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = raw.rstrip("\n")
                    tail.append(line)
                    self._emit(progress_cb, name, line)
                rc = proc.wait()
            finally:
                if timer is not None:
                    timer.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                with self._lock:
                    self._procs.discard(proc)
        if rc != 0:
            if timed_out.is_set():
                why = f"{what} timed out after {self.timeout:g}s"
            elif self._cancelled:
                why = "cancelled (another build failed)"
            else:
                why = f"{what} exited {rc}"
            raise BakeryError(f"target {name}: {why}:\n" + "\n".join(tail),
                              hint=None if self._cancelled else "the lines above are the end of "
                              "its output")
