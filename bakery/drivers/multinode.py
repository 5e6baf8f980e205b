"""Build targets on a named builder's nodes (Docker engines and buildkitd).

:class:`BuilderDriver` plans jobs with :mod:`bakery.drivers.schedule`,
starts each ready job on the least busy node that serves its platform and
streams every line to ``progress_cb(target, line)``; the first line of a
job says which node builds it (``building on node N (linux/arm64)``).

A multi-platform target is split: each platform is built on its own node
into a single-platform image (a Docker engine builds it under a temporary
tag and ``docker save``s it; a buildkitd exports an OCI tar), and the
images are joined into ONE image index (:func:`import_archive`,
:func:`bakery.oci.image.build_index`) written as the target's output asks:
``type=registry`` / ``push=true`` (pushed with bakery's registry client) or
``type=oci,dest=...``.  Other outputs of a split target are an error
(checked before anything runs).

Named contexts on Docker engine nodes work as in the docker driver, with
one temporary tag per context target and platform; when a dependent runs
on another node than its context was built on, the image is copied there
(``docker save`` / ``docker load``) first.

Example::

    images = BuilderDriver(builder, cwd="/src").run(targets, ["app"], 2, print)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from bakery.bakefile.model import Target
from bakery.drivers.builders import Builder, Node
from bakery.drivers.buildkit import BuildkitNode, buildctl_args, find_buildctl
from bakery.drivers.docker import (
    CONTEXT_REPO,
    DEFAULT_DOCKER,
    LOCAL_CONTEXT_DOCKERFILE,
    ContextSource,
    DockerDriver,
    ProgressCallback,
    _build_order,
    _csv,
    _entry_fields,
    _falsy,
    _output_names,
    _safe,
    context_sources,
    docker_build_args,
    prepare_dockerfile,
)
from bakery.drivers.schedule import Job, Scheduler, plan_jobs, target_deps
from bakery.errors import BakeryError
from bakery.oci.image import add_layer, build_index
from bakery.oci.layout import open_layout, single_manifest, write_oci_layout
from bakery.oci.media import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    canonical_json,
    host_platform,
    normalize_platform,
)
from bakery.oci.registry import RegistryClient, RegistryOptions
from bakery.oci.store import BlobStore, walk

__all__ = ["BuilderDriver", "check_split_outputs", "import_archive"]


def check_split_outputs(t: Target) -> None:
    """A split (multi-platform) target's outputs must be ones the joined
    index can be written to: type=registry, type=image/docker with
    push=true, or type=oci with a dest."""
    outs = list(t.output or [])
    if not outs:
        raise BakeryError(f"target {t.name}: a multi-platform image built across a builder's "
                          "nodes needs an output for its joined index",
                          hint="add output = [\"type=registry\"] (with tags) or "
                          "[\"type=oci,dest=FILE.tar\"], or run with --push")
    for o in outs:
        attrs = dict(getattr(o, "attrs", {}) or {})
        shown = _csv(_entry_fields(o))
        if o.type == "registry" or (o.type in ("image", "docker", "moby") and not o.dest
                                    and not _falsy(attrs.get("push"))):
            if not (_output_names(o) or t.tags):
                raise BakeryError(f"target {t.name}: output {shown}: no image name to push",
                                  hint="set tags, or name=REF on the output")
            continue
        if o.type == "oci" and o.dest and o.dest != "-":
            continue
        raise BakeryError(f"target {t.name}: output {shown} cannot take a multi-platform image "
                          "joined from several nodes",
                          hint="use type=registry (with tags) or type=oci,dest=FILE.tar; a Docker "
                          "engine cannot load a multi-platform index")


# -- joining -------------------------------------------------------------------------------


def _copy_blob(src: BlobStore, dst: BlobStore, d: Descriptor) -> None:
    if dst.has(d.digest):
        return
    with open(src.path(d.digest), "rb") as fh, dst.writer(d.digest, d.size) as w:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            w.write(chunk)
        w.commit()


def import_archive(store: BlobStore, path: str, platform: Union[str, Platform, None] = None,
                   tmpdir: Optional[str] = None) -> Descriptor:
    """The single-platform image in the archive ``path``, copied into
    ``store``: an OCI layout tar (what buildkitd exports) or a ``docker
    save`` tar (a Docker engine's).  The returned manifest descriptor carries
    the image config's platform."""
    with tarfile.open(path, "r:*") as tf:
        names = {m.name.lstrip("./") for m in tf.getmembers()}
    if "oci-layout" in names:
        with open_layout(path, tmpdir) as lay:
            root = lay.resolve() if len(lay.manifests) == 1 else lay.manifests[0]
            man = single_manifest(lay.store, root, platform)
            for d in walk(lay.store, man):
                _copy_blob(lay.store, store, d)
        doc = store.read_json(man.digest)
        cfg = store.read_json(doc["config"]["digest"])
        return man.with_platform(normalize_platform(Platform.from_json(cfg)))
    if "manifest.json" not in names:
        raise BakeryError(f"{path} is neither an OCI layout nor a `docker save` archive")
    work = tempfile.mkdtemp(prefix="bakery-import-", dir=tmpdir)
    try:
        with tarfile.open(path, "r:*") as tf:
            def read(name: str) -> bytes:
                for m in tf.getmembers():
                    if m.name.lstrip("./") == name and m.isfile():
                        fh = tf.extractfile(m)
                        if fh is not None:
                            return fh.read()
                raise BakeryError(f"{path}: the archive has no {name}")

            entries = json.loads(read("manifest.json"))
            if not isinstance(entries, list) or len(entries) != 1:
                raise BakeryError(f"{path}: expected one image in the archive, found "
                                  f"{len(entries) if isinstance(entries, list) else 'none'}")
            entry = entries[0]
            config_bytes = read(entry["Config"])
            cfg = json.loads(config_bytes)
            layers = []
            for i, lname in enumerate(entry.get("Layers") or []):
                member = next((m for m in tf.getmembers() if m.name.lstrip("./") == lname), None)
                fh = tf.extractfile(member) if member is not None else None
                if fh is None:
                    raise BakeryError(f"{path}: the archive has no {lname}")
                tmp = os.path.join(work, f"{i}.tar")
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(fh, out, 1 << 20)
                layers.append(add_layer(store, tmp, "gzip"))
                os.unlink(tmp)
        diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
        if diff_ids != [la.diff_id for la in layers]:
            raise BakeryError(f"{path}: the layers do not match the image config's diff_ids")
        cfg_desc = store.put_bytes(config_bytes, DOCKER_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                    "config": cfg_desc.to_json(docker=True),
                    "layers": [la.descriptor(oci=False).to_json(docker=True) for la in layers]}
        desc = store.put_bytes(canonical_json(manifest), DOCKER_MANIFEST)
        return desc.with_platform(normalize_platform(Platform.from_json(cfg)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def join_outputs(store: BlobStore, manifests: Sequence[Descriptor], t: Target, cwd: str,
                 client: RegistryClient,
                 progress: Optional[ProgressCallback] = None) -> Descriptor:
    """One index of ``manifests``, written to ``t``'s outputs."""
    oci = any(m.media_type == OCI_MANIFEST for m in manifests)
    index = build_index(store, manifests, media="oci" if oci else "docker")
    for o in t.output or []:
        names = _output_names(o) or list(t.tags or [])
        if o.type == "oci":
            dest = o.dest if os.path.isabs(o.dest) else os.path.join(cwd, o.dest)
            if os.path.dirname(dest):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
            tar = o.attrs.get("tar", "true").lower() not in ("false", "0", "f")
            write_oci_layout(store, index, dest, names=names, tar=tar)
            if progress:
                progress(t.name, f"wrote the index {index.digest} to {dest}")
            continue
        for name in names:
            client.push(store, index, name)
            if progress:
                progress(t.name, f"pushed the index {index.digest} to {name}")
    return index


# -- running --------------------------------------------------------------------------------


class BuilderDriver:
    """Builds targets on ``builder``'s nodes (see the module doc).

    ``slots``: builds one node runs at once (default: ``jobs`` given to
    :meth:`run`); ``insecure_registries``: hosts the joined index may be
    pushed to over plain HTTP (loopback always may)."""

    def __init__(self, builder: Builder, cwd: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
                 docker: str = DEFAULT_DOCKER, buildctl: Optional[str] = None,
                 insecure_registries: Iterable[str] = (), host: Optional[str] = None):
        self.builder = builder
        self.cwd = cwd or os.getcwd()
        self.env = dict(env or {})
        self.timeout = timeout
        self.docker = docker
        self.buildctl = buildctl
        self.insecure = list(insecure_registries)
        self.host = host or str(host_platform())
        self._lock = threading.Lock()
        self._docker: Dict[str, DockerDriver] = {}
        self._buildkit: Dict[str, BuildkitNode] = {}
        self.assignments: List[Tuple[str, Optional[str], str]] = []  # (target, platform, node)
        self._tmp = ""
        self._run_id = ""
        self._sources: Dict[str, Dict[str, ContextSource]] = {}
        self._ctx_users: Dict[str, List[str]] = {}
        self._ctx_only: Set[str] = set()
        self._ctx_tag: Dict[Tuple[str, Optional[str]], str] = {}
        self._ctx_where: Dict[Tuple[str, Optional[str]], str] = {}  # context job -> its node
        self._temp: List[Tuple[str, str]] = []  # (node, temporary tag) to remove after the run

    def _node(self, name: str) -> Node:
        return next(n for n in self.builder.nodes if n.name == name)

    def _setup(self) -> None:
        kinds = {n.driver for n in self.builder.nodes}
        if "buildkit" in kinds and self.buildctl is None:
            self.buildctl = find_buildctl(dict(os.environ, **self.env))
        if "docker" in kinds and shutil.which(self.docker) is None:
            raise BakeryError(f"builder {self.builder.name}: {self.docker} is not an executable",
                              hint="install the docker CLI (Debian package docker.io)")
        for n in self.builder.nodes:
            if n.driver == "docker":
                self._docker[n.name] = DockerDriver(n.endpoint, docker=self.docker, cwd=self.cwd,
                                                    env=self.env, timeout=self.timeout)
            else:
                assert self.buildctl is not None
                self._buildkit[n.name] = BuildkitNode(n, self.buildctl, self.cwd, self.timeout,
                                                      self.env)

    def _check(self, targets: Mapping[str, Target], jobs: Sequence[Job]) -> None:
        """Every job is checked for every node it may land on, before anything runs."""
        for job in jobs:
            t = targets[job.target]
            if job.split and job.target not in self._ctx_only:
                check_split_outputs(t)
            for name in job.candidates:
                node = self._node(name)
                if node.driver == "docker":
                    refs = self._refs(t, job)
                    rewritten = None
                    if refs is not None:
                        rewritten = prepare_dockerfile(t, refs, self.cwd, os.path.join(
                            self._tmp, "check", _safe(t.name)))
                    extra = ["x/y:z"] if job.target in self._ctx_users and \
                        job.target not in self._ctx_only and not job.split else []
                    docker_build_args(t, job.platform, node.endpoint, self.cwd, self.docker,
                                      split_tag="x/y:z" if job.split or job.target in
                                      self._ctx_only else None,
                                      extra_tags=extra, rewritten=rewritten)
                else:
                    if job.target in self._ctx_users:
                        users = ", ".join(sorted(self._ctx_users[job.target]))
                        raise BakeryError(f"target {job.target} (a named context of {users}): "
                                          f"node {name} of builder {self.builder.name} is a "
                                          "buildkitd, which cannot hand its result to another "
                                          "build", hint="serve its platforms with Docker engine "
                                          "nodes, or push it and use docker-image://REF")
                    buildctl_args(t, job.platform, node, self.cwd, self.buildctl or "buildctl",
                                  outputs=["type=oci,dest=x"] if job.split else None,
                                  inline_dir="/")

    # -- named contexts on Docker engine nodes (no --build-context in Docker 20.10) ----------

    def _plan_contexts(self, targets: Mapping[str, Target], names: List[str],
                       order: List[str], plan: Sequence[Job]) -> None:
        """Which targets are named contexts of which, which are only that
        (built under a temporary tag, without outputs), and the temporary
        tag of each of their jobs (one per platform)."""
        self._sources = {}
        self._ctx_users = {}
        for n in names:
            if not targets[n].contexts:
                continue
            if all(self._node(c).driver != "docker" for j in plan if j.target == n
                   for c in j.candidates):
                continue  # buildkitd nodes take named contexts themselves
            self._sources[n] = context_sources(targets[n], self.cwd)
            for src in self._sources[n].values():
                if src.kind == "target":
                    self._ctx_users.setdefault(src.value, []).append(n)
        needed = {d for n in names for d in targets[n].depends_on or []} | set(order)
        self._ctx_only = {x for x in self._ctx_users if x not in needed}
        self._ctx_tag = {}
        for j in plan:
            if j.target in self._ctx_users:
                self._ctx_tag[(j.target, j.platform)] = (
                    f"{CONTEXT_REPO}/{_safe(j.target)}-{_safe(j.platform or 'default')}:"
                    f"{self._run_id}")

    def _dep_job(self, dep: str, platform: Optional[str], user: str) -> Tuple[str, Optional[str]]:
        """The job of ``dep`` whose image ``user``'s job for ``platform`` uses."""
        mine = [p for (t, p) in self._ctx_tag if t == dep]
        if len(mine) == 1:
            return dep, mine[0]
        want = str(normalize_platform(platform or self.host))
        for p in mine:
            if p is not None and str(normalize_platform(p)) == want:
                return dep, p
        raise BakeryError(f"target {user}: its named context target:{dep} is not built for "
                          f"{want} (it is for {', '.join(str(p) for p in mine)})",
                          hint=f"give {dep} the platforms of {user}")

    def _refs(self, t: Target, job: Job) -> Optional[Dict[str, str]]:
        """Context name -> image for ``t``'s job on a Docker engine (None:
        no named contexts to rewrite for)."""
        sources = self._sources.get(t.name)
        if not sources:
            return None
        refs: Dict[str, str] = {}
        for cname, src in sources.items():
            if src.kind == "target":
                refs[cname] = self._ctx_tag[self._dep_job(src.value, job.platform, t.name)]
            elif src.kind == "image":
                refs[cname] = src.value
            else:
                refs[cname] = self._local_tag(t.name, cname, job.platform)
        return refs

    def _local_tag(self, target: str, cname: str, platform: Optional[str]) -> str:
        return (f"{CONTEXT_REPO}/{_safe(target)}-{_safe(cname)}-{_safe(platform or 'default')}:"
                f"{self._run_id}")

    def _made(self, node: str, tag: str) -> None:
        with self._lock:
            self._temp.append((node, tag))

    def _contexts_ready(self, t: Target, job: Job, node: Node, tmp: str,
                        cb: Optional[ProgressCallback]) -> Optional[str]:
        """Before ``t``'s job runs on the Docker engine ``node``: its
        local-directory contexts built there, the images of its ``target:``
        contexts copied there (docker save | docker load) when another node
        built them; the rewritten Dockerfile (see :func:`prepare_dockerfile`)."""
        refs = self._refs(t, job)
        if refs is None:
            return None
        d = self._docker[node.name]
        for cname, src in sorted(self._sources[t.name].items()):
            if src.kind == "local":
                tag = refs[cname]
                local = Target(f"{t.name}:context:{cname}", context=src.value,
                               dockerfile_inline=LOCAL_CONTEXT_DOCKERFILE,
                               platforms=[job.platform] if job.platform else None, network="none")
                self._made(node.name, tag)
                d.build(t.name, docker_build_args(local, job.platform, node.endpoint, self.cwd,
                                                  self.docker, split_tag=tag), cb)
            elif src.kind == "target":
                key = self._dep_job(src.value, job.platform, t.name)
                tag = self._ctx_tag[key]
                with self._lock:
                    where = self._ctx_where.get(key)
                    here = (node.name, tag) in self._temp
                if where is None or where == node.name or here:
                    continue
                archive = os.path.join(tmp, f"ctx-{uuid.uuid4().hex[:12]}.tar")
                self._emit(cb, t.name, f"copying {tag} (target {src.value}) from node {where} "
                           f"to node {node.name}")
                self._docker[where].save(t.name, tag, archive, cb)
                self._made(node.name, tag)
                d._command(t.name, [self.docker, "-H", node.endpoint, "load", "-i", archive],
                           None, cb, "docker load")
                os.unlink(archive)
        return prepare_dockerfile(t, refs, self.cwd, os.path.join(tmp, f"df-{uuid.uuid4().hex}"))

    def run(self, targets: Mapping[str, Target], order: List[str], jobs: int,
            progress_cb: Optional[ProgressCallback] = None) -> Dict[str, str]:
        """Build ``order`` and what it depends on; target -> image id, or
        the joined index's digest for a split target ("" for a build whose
        output leaves no image)."""
        names = _build_order(targets, order)
        plan = plan_jobs(targets, names, self.builder, self.host)
        self.assignments = []
        self._setup()
        tmp = tempfile.mkdtemp(prefix="bakery-builder-")
        self._tmp = tmp
        self._run_id = uuid.uuid4().hex[:12]
        self._temp = []
        self._ctx_where = {}
        try:
            self._plan_contexts(targets, names, order, plan)
            self._check(targets, plan)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        deps = {n: target_deps(targets[n]) for n in names}
        sched = Scheduler(plan, deps, [n.name for n in self.builder.nodes], slots=max(1, jobs))
        results: Dict[str, str] = {}
        parts: Dict[str, List[Tuple[str, str]]] = {}  # split target -> [(platform, archive)]
        failure: Optional[BaseException] = None
        workers = max(1, jobs) * len(self.builder.nodes) + 1
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bakery-node") as pool:
                running: Dict[Future[str], Tuple[str, Optional[Job]]] = {}
                while True:
                    while failure is None:
                        nxt = sched.next()
                        if nxt is None:
                            break
                        job, node = nxt
                        self.assignments.append((job.target, job.platform, node))
                        fut = pool.submit(self._job, targets[job.target], job, node, tmp,
                                          progress_cb)
                        running[fut] = (job.target, job)
                    if not running:
                        break
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for f in finished:
                        target, maybe_job = running.pop(f)
                        exc = f.exception()
                        if exc is not None:
                            if failure is None:
                                failure = exc
                                self._cancel()
                            if maybe_job is not None:
                                sched.job_done(maybe_job)
                            continue
                        if maybe_job is None:  # a join finished
                            results[target] = f.result()
                            sched.complete(target)
                            continue
                        last = sched.job_done(maybe_job)
                        if not maybe_job.split:
                            results[target] = f.result()
                            sched.complete(target)
                            continue
                        if target in self._ctx_only:  # built under its temporary tag only
                            if last:
                                results[target] = ""
                                sched.complete(target)
                            continue
                        parts.setdefault(target, []).append((maybe_job.platform or "", f.result()))
                        if last and failure is None:
                            fut = pool.submit(self._join, targets[target], parts[target], tmp,
                                              progress_cb)
                            running[fut] = (target, None)
            if failure is not None:
                raise failure
            return {n: results.get(n, "") for n in names}
        finally:
            for node_name, tag in self._temp:
                self._docker[node_name].remove_image(tag)
            shutil.rmtree(tmp, ignore_errors=True)

    def _cancel(self) -> None:
        for d in self._docker.values():
            d._cancel()
        for b in self._buildkit.values():
            b.cancel()

    def _emit(self, cb: Optional[ProgressCallback], target: str, line: str) -> None:
        if cb is not None:
            with self._lock:
                cb(target, line)

    def _job(self, t: Target, job: Job, node_name: str, tmp: str,
             cb: Optional[ProgressCallback]) -> str:
        try:
            return self._run_job(t, job, node_name, tmp, cb)
        except BakeryError as e:  # say where it failed
            where = f"node {node_name}" + (f", {job.platform}" if job.platform else "")
            raise BakeryError(e.message.replace(f"target {t.name}: ", f"target {t.name} ({where}): ",
                                                1), e.pos, e.hint) from None

    def _run_job(self, t: Target, job: Job, node_name: str, tmp: str,
                 cb: Optional[ProgressCallback]) -> str:
        node = self._node(node_name)
        where = job.platform or "its default platform"
        self._emit(cb, t.name, f"building on node {node.name} ({where})")
        # a valid image name component: lowercase alphanumerics joined by single dashes
        safe = re.sub(r"[^a-z0-9]+", "-", f"{t.name}-{job.platform or 'default'}".lower()).strip("-")
        key = f"{safe}-{uuid.uuid4().hex[:12]}"
        if node.driver == "docker":
            d = self._docker[node.name]
            iid = os.path.join(tmp, f"{key}.iid")
            rewritten = self._contexts_ready(t, job, node, tmp, cb)
            ctx_tag = self._ctx_tag.get((t.name, job.platform))
            if ctx_tag is not None:
                self._made(node.name, ctx_tag)
                with self._lock:
                    self._ctx_where[(t.name, job.platform)] = node.name
            if t.name in self._ctx_only:
                assert ctx_tag is not None
                cmd = docker_build_args(t, job.platform, node.endpoint, self.cwd, self.docker,
                                        iid, split_tag=ctx_tag, rewritten=rewritten)
                return d.build(t.name, cmd, cb)
            if not job.split:
                cmd = docker_build_args(t, job.platform, node.endpoint, self.cwd, self.docker, iid,
                                        extra_tags=[ctx_tag] if ctx_tag else [],
                                        rewritten=rewritten)
                return d.build(t.name, cmd, cb)
            tag = f"bakery-split/{safe}:{uuid.uuid4().hex[:12]}"
            cmd = docker_build_args(t, job.platform, node.endpoint, self.cwd, self.docker, iid,
                                    split_tag=tag, extra_tags=[ctx_tag] if ctx_tag else [],
                                    rewritten=rewritten)
            try:
                d.build(t.name, cmd, cb)
                archive = os.path.join(tmp, f"{key}.tar")
                d.save(t.name, tag, archive, cb)
            finally:
                d.remove_image(tag)
            return archive
        b = self._buildkit[node.name]
        if not job.split:
            return b.build(t.name, t, job.platform, None, cb)
        archive = os.path.join(tmp, f"{key}.tar")
        b.build(t.name, t, job.platform, [f"type=oci,dest={archive}"], cb)
        return archive

    def _join(self, t: Target, parts: List[Tuple[str, str]], tmp: str,
              cb: Optional[ProgressCallback]) -> str:
        store = BlobStore(os.path.join(tmp, "store"))
        order = [str(p) for p in t.build_platforms or []]
        parts = sorted(parts, key=lambda pa: order.index(pa[0]) if pa[0] in order else len(order))
        manifests = [import_archive(store, path, plat, tmp) for plat, path in parts]
        opts = {h: RegistryOptions(insecure=True) for h in self.insecure}
        client = RegistryClient(options=opts) if opts else RegistryClient()
        index = join_outputs(store, manifests, t, self.cwd, client,
                             lambda n, line: self._emit(cb, n, line))
        self._emit(cb, t.name, "joined " + ", ".join(
            f"{m.platform} ({node})" for m, node in zip(manifests, self._nodes_of(t.name, parts)))
            + f" into {index.digest}")
        return index.digest

    def _nodes_of(self, target: str, parts: List[Tuple[str, str]]) -> List[str]:
        by_plat = {p: n for tg, p, n in self.assignments if tg == target}
        return [by_plat.get(plat, "?") for plat, _ in parts]
