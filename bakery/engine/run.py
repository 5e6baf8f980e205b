"""``bakery run``: resolved targets → merged graph → engine → images → outputs.

The thin shell that joins the layers:

1. base images are resolved through the registry (their configs feed the
   Dockerfile conversion: ENV, WORKDIR, USER, ONBUILD...) and pulled into
   the store once (:class:`RegistryPuller`);
2. the merged graph of every requested target x platform is built
   (:func:`bakery.graph.build.build_graph`) and executed by the
   :class:`~bakery.engine.executor.Engine`: each step once, cached steps not
   at all;
3. each target's platforms become images (compressed layers, config,
   manifest), several platforms one OCI index;
4. the target's outputs are written: ``type=oci`` (tar or ``tar=false``
   directory), ``type=docker`` (a ``docker load`` tar; ``dest`` required),
   ``type=local`` (the root filesystem; one directory per platform when
   there are several, as ``platform-split`` does), ``type=tar``,
   ``type=image``/``type=registry`` (pushed when ``push=true``),
   ``type=cacheonly``.  Outputs are written only when every target
   succeeded.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.bakefile.model import Target
from bakery.engine.executor import BuildFailed, Engine, State, in_stages
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.graph.ops import Exec, ImageConfig, ImageSource, LocalSource

__all__ = ["RegistryPuller", "RunReport", "run_targets"]


def _unreachable(e: BakeryError) -> bool:
    """The registry could not be reached (connection failures, 5xx after
    the client's retries), as opposed to an answer (unknown tag, denied)."""
    return bool(e.hint and "the registry or the network failed" in e.hint)


class RegistryPuller:
    """Image configs and layers from registries, through bakery's client.

    Manifests, configs and compressed layers land in an OCI blob store
    inside the content store (``store/oci``); :meth:`pull` then puts each
    layer's uncompressed tar into the content store, verified against the
    config's diff_ids.
    """

    def __init__(self, store: Store, insecure: Sequence[str] = (), pull: bool = False):
        from bakery.oci.registry import RegistryClient, RegistryOptions

        self.store = store
        self.force_pull = pull  # --pull: no fallback to the stored resolution of a tag
        self.note: Optional[Callable[[str], None]] = None
        from bakery.oci.store import BlobStore

        self.blobs = BlobStore(os.path.join(store.root, "oci"))
        opts = {h: RegistryOptions(insecure=True) for h in insecure}
        try:
            self.client = RegistryClient(options=opts) if opts else RegistryClient()
        except TypeError:
            self.client = RegistryClient()
        self._lock = threading.Lock()
        self._resolved: Dict[Tuple[str, str, str], Tuple[str, List[Any], Dict[str, Any]]] = {}

    def _manifest(self, src: ImageSource) -> Tuple[str, List[Any], Dict[str, Any]]:
        """(manifest digest, layer descriptors, config) of ``src`` on its
        platform; a tag is resolved once per run, a digest is used as is."""
        from bakery.oci.media import Descriptor

        k = (src.ref, str(src.platform), src.digest)
        with self._lock:
            if k in self._resolved:
                return self._resolved[k]
        ref = src.ref if not src.digest else f"{src.ref.split('@')[0]}@{src.digest}"
        name = f"{src.ref}|{src.platform}"
        if src.digest and self._local(src.digest):
            digest = src.digest  # pinned and here: no network
        elif src.digest:
            digest = self.client.pull(ref, self.blobs, platform=str(src.platform)).digest
        else:
            # a tag is asked every run (a moved tag rebuilds, as with BuildKit);
            # when the registry cannot be reached, the last resolution stands
            # in, unless --pull insists
            try:
                digest = self.client.pull(ref, self.blobs, platform=str(src.platform)).digest
            except BakeryError as e:
                known = None if self.force_pull else self.store.get_resolution(name)
                if not known or not _unreachable(e) or not self._local(known):
                    raise
                digest = known
                if self.note is not None:
                    self.note(f"{src.ref} ({src.platform}): the registry cannot be reached; "
                              f"using its last resolution {digest} (--pull makes this an error)")
            else:
                self.store.put_resolution(name, digest)
        man = self.blobs.read_json(digest)
        if "manifests" in man:  # a single-platform pull of an index returns the manifest
            raise BakeryError(f"{src.ref}: expected an image manifest for {src.platform}")
        config = self.blobs.read_json(Descriptor.from_json(man["config"]).digest)
        layers = [Descriptor.from_json(la) for la in man.get("layers") or []]
        with self._lock:
            self._resolved[k] = (digest, layers, config)
        return digest, layers, config

    def _local(self, digest: str) -> bool:
        """The manifest ``digest`` and its config are in the blob store."""
        from bakery.oci.media import Descriptor

        if not self.blobs.has(digest):
            return False
        try:
            man = self.blobs.read_json(digest)
            return "config" in man and self.blobs.has(Descriptor.from_json(man["config"]).digest)
        except (ValueError, KeyError, OSError):
            return False

    def image_config(self, src: ImageSource) -> Optional[Mapping[str, Any]]:
        from bakery.dockerfile.request import ResolvedConfig

        digest, _, config = self._manifest(src)
        return ResolvedConfig(config.get("config") or {}, digest)

    def pull(self, src: ImageSource, store: Store) -> Tuple[List[str], Dict[str, Any]]:
        from bakery.oci.media import compression_of

        _, layers, config = self._manifest(src)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise BakeryError(f"{src.ref}: the image config lists {len(diff_ids)} layers, "
                              f"the manifest {len(layers)}")
        for desc, diff_id in zip(layers, diff_ids):
            if store.has_blob(diff_id):
                continue
            if not self.blobs.has(desc.digest):  # resolved from the store, layer pruned since
                self.client.fetch_blob(src.ref.split("@")[0], desc, self.blobs)
            comp = compression_of(desc.media_type)
            with open(self.blobs.path(desc.digest), "rb") as raw:
                if comp == "gzip":
                    with gzip.GzipFile(fileobj=raw) as src_fh:
                        store.put_stream(src_fh, expected=diff_id)
                elif comp in ("", "uncompressed", "none"):
                    store.put_stream(raw, expected=diff_id)
                elif comp == "zstd":
                    from bakery.oci.image import _zstandard

                    zstd = _zstandard()
                    with zstd.ZstdDecompressor().stream_reader(raw) as src_fh:
                        store.put_stream(src_fh, expected=diff_id)
                else:
                    raise BakeryError(f"{src.ref}: unsupported layer compression {comp}")
        return diff_ids, config


@dataclass
class RunReport:
    images: Dict[str, str] = field(default_factory=dict)  # target -> root digest
    executed: int = 0
    cached: int = 0
    outputs: List[str] = field(default_factory=list)


def _container_config(cfg: ImageConfig) -> Any:
    from bakery.oci.image import ContainerConfig, Healthcheck

    hc = None
    if cfg.healthcheck:
        h = dict(cfg.healthcheck)  # Docker's keys, durations in nanoseconds
        hc = Healthcheck(
            test=list(h.get("Test") or []),  # type: ignore[call-overload]
            interval=h.get("Interval") or 0,  # type: ignore[arg-type]
            timeout=h.get("Timeout") or 0,  # type: ignore[arg-type]
            start_period=h.get("StartPeriod") or 0,  # type: ignore[arg-type]
            start_interval=h.get("StartInterval") or 0,  # type: ignore[arg-type]
            retries=int(h.get("Retries") or 0),  # type: ignore[call-overload]
        )
    return ContainerConfig(
        user=cfg.user, exposed_ports=list(cfg.exposed_ports), env=list(cfg.env),
        entrypoint=list(cfg.entrypoint) if cfg.entrypoint is not None else None,
        cmd=list(cfg.cmd) if cfg.cmd is not None else None, volumes=list(cfg.volumes),
        working_dir=cfg.workdir, labels=dict(cfg.labels), stop_signal=cfg.stop_signal,
        healthcheck=hc, on_build=list(cfg.onbuild), shell=list(cfg.shell or ()),
    )


def _history(cfg: ImageConfig, base_config: Optional[Mapping[str, Any]], n_layers: int) -> Any:
    from bakery.oci.image import History

    hist: List[Any] = []
    for h in (base_config or {}).get("history") or []:
        hist.append(History(created=h.get("created"), created_by=h.get("created_by", ""),
                            comment=h.get("comment", ""), empty_layer=bool(h.get("empty_layer"))))
    for created_by, empty in cfg.history:
        hist.append(History(created_by=created_by, comment="buildkit.dockerfile.v0", empty_layer=empty))
    if sum(1 for h in hist if not h.empty_layer) != n_layers:
        return None  # a step that changed nothing: one plain entry per layer instead
    return hist


def run_targets(
    targets: Mapping[str, Target],
    requested: Sequence[str],
    groups: Mapping[str, Any],
    cwd: str,
    store: Store,
    sandbox: Any,
    jobs: int,
    keep_going: bool = False,
    no_cache: bool = False,
    progress: Any = None,
    secrets: Optional[Mapping[str, bytes]] = None,
    allow_network_host: bool = False,
    insecure: Sequence[str] = (),
    push: Optional[bool] = None,
    outputs_on_failure: bool = False,
    pull: bool = False,
) -> RunReport:
    """Build, then write outputs.  Outputs are written only when every
    requested target succeeded, unless ``outputs_on_failure`` (with
    ``keep_going``): then targets whose every platform built get their
    outputs, and the run still fails."""
    from bakery.cache import export_caches, sources_for_targets
    from bakery.engine.emulation import ensure_emulator
    from bakery.graph.build import build_graph

    puller = RegistryPuller(store, insecure, pull=pull or any(
        targets[n].pull for n in targets))
    puller.note = getattr(progress, "note", None)
    graph = build_graph(targets, requested, cwd, image_config=puller.image_config, groups=groups)
    note = getattr(progress, "note", None)
    sources = sources_for_targets(targets, list(graph.targets), cwd, puller.client, puller.blobs, note)
    engine = Engine(store, sandbox, puller, jobs=jobs, keep_going=keep_going, no_cache=no_cache,
                    progress=progress, secrets=secrets, allow_network_host=allow_network_host,
                    cache_sources=sources)
    for arch in sorted({n.op.platform.architecture for n in graph.nodes.values()
                        if isinstance(n.op, Exec)}):
        note = ensure_emulator(arch)
        if note and progress is not None:
            progress.note(note)
    ops = {k: n.op for k, n in graph.nodes.items()}
    # data inputs, plus depends_on: a step waits for the exports it is after
    deps = {k: tuple(dict.fromkeys([*n.deps, *(graph.exports[e].root for e in n.after
                                               if e in graph.exports)]))
            for k, n in graph.nodes.items()}
    descs = {k: n.description for k, n in graph.nodes.items()}
    no_cache_keys = [k for k, n in graph.nodes.items()
                     if any(graph.targets[t].no_cache for t, _ in n.users if t in graph.targets)
                     or any(in_stages(n.description, graph.targets[t].no_cache_filter)
                            for t, _ in n.users if t in graph.targets)]
    users = {k: sorted({t for t, _ in n.users}) for k, n in graph.nodes.items()
             if not isinstance(n.op, LocalSource)}
    if hasattr(progress, "plan"):
        progress.plan(users)
    wanted = sorted({e.root for e in graph.exports.values()})
    failure: Optional[BuildFailed] = None
    try:
        states = engine.run(ops, deps, wanted, descs, no_cache_keys=no_cache_keys, targets=users)
    except BuildFailed as e:
        if not outputs_on_failure:
            raise
        failure = e
        states = {k: r.value for k, r in e.results.items() if r.status == "done"}
    report = RunReport(executed=sum(engine.executed.values()),
                       cached=sum(1 for k, v in states.items()
                                  if v.cached and not isinstance(ops[k], LocalSource)))
    # images, then outputs (only once everything built)
    per_target: Dict[str, List[Tuple[Any, Any]]] = {}
    broken = {ex.target for ex in graph.exports.values() if ex.root not in states}
    for ex in graph.exports.values():
        if ex.target in broken:
            continue
        per_target.setdefault(ex.target, []).append((ex, states[ex.root]))
    images: Dict[str, Any] = {}
    for name, items in per_target.items():
        t = targets[name]
        if t.output is not None and all(o.type == "cacheonly" for o in t.output):
            continue
        images[name] = _image(puller, store, engine, items)
        report.images[name] = images[name].digest
    for name, root in images.items():
        report.outputs.extend(_write_outputs(targets[name], root, puller, store, engine,
                                             per_target[name], cwd, push))
    if failure is not None:
        done = ", ".join(sorted(per_target)) or "none"
        raise BuildFailed(f"{failure.message}\n(outputs written for: {done}; not for: "
                          f"{', '.join(sorted(broken))})", failure.results, hint=failure.hint)
    report.outputs.extend(export_caches(graph, targets, store, cwd, puller.client, puller.blobs, note))
    return report


def _image(puller: RegistryPuller, store: Store, engine: Engine, items: List[Tuple[Any, State]]) -> Any:
    from bakery.engine.layers import compressed_layer
    from bakery.oci.image import build_image, build_index

    manifests = []
    for ex, state in items:
        cfg: ImageConfig = ex.export.config
        base_config = None
        if cfg.base is not None:
            try:
                base_config = puller._manifest(cfg.base)[2]
            except BakeryError:
                base_config = None
        # SOURCE_DATE_EPOCH clamps the build's own layers, never the base image's
        base_ids = set(((base_config or {}).get("rootfs") or {}).get("diff_ids") or [])
        layers = [compressed_layer(store, puller.blobs, d, epoch=None if d in base_ids else "env")
                  for d in state.layers]
        img = build_image(puller.blobs, layers, _container_config(cfg), str(ex.export.platform),
                          history=_history(cfg, base_config, len(layers)))
        manifests.append(img.descriptor)
    if len(manifests) == 1:
        return manifests[0]
    return build_index(puller.blobs, manifests)


def _write_outputs(t: Target, root: Any, puller: RegistryPuller, store: Store, engine: Engine,
                   items: List[Tuple[Any, State]], cwd: str, push: Optional[bool]) -> List[str]:
    from bakery.oci.layout import write_docker_archive, write_oci_layout

    done: List[str] = []
    outputs = list(t.output or [])
    if push:
        outputs.append(_Entry("image", {"push": "true"}))
    for o in outputs:
        dest = os.path.join(cwd, o.dest) if o.dest and o.dest != "-" else o.dest
        names = [n for n in (o.attrs.get("name", "").split(",")) if n] or list(t.tags or [])
        if o.type == "cacheonly":
            continue
        if o.type == "oci":
            if not dest:
                raise BakeryError(f"target {t.name}: type=oci needs dest=PATH")
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            write_oci_layout(puller.blobs, root, dest, names, tar=o.attrs.get("tar", "true") != "false")
            done.append(f"{t.name}: OCI layout {o.dest}")
        elif o.type == "docker":
            if not dest:
                done.append(_docker_load(t, root, puller, store, names))
                continue
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            write_docker_archive(puller.blobs, root, dest, names)
            done.append(f"{t.name}: docker archive {o.dest}")
        elif o.type in ("local", "tar"):
            if not dest:
                raise BakeryError(f"target {t.name}: type={o.type} needs dest=PATH")
            split = len(items) > 1 and o.attrs.get("platform-split", "true") != "false"
            for ex, state in items:
                sub = os.path.join(dest, str(ex.export.platform).replace("/", "_")) if split and o.type == "local" else dest
                if o.type == "local":
                    tmp = sub + ".bakery-tmp"
                    shutil.rmtree(tmp, ignore_errors=True)
                    engine.snaps.materialize(state.layers, tmp)
                    if os.path.isdir(sub):
                        shutil.rmtree(sub)
                    os.makedirs(os.path.dirname(sub) or ".", exist_ok=True)
                    os.rename(tmp, sub)
                else:
                    tmpdir = store.tmpdir("tar-")
                    try:
                        engine.snaps.materialize(state.layers, tmpdir)
                        out = dest if not split else f"{dest}.{str(ex.export.platform).replace('/', '_')}"
                        with tarfile.open(out + ".tmp", "w", format=tarfile.PAX_FORMAT) as tf:
                            for n in sorted(os.listdir(tmpdir)):
                                tf.add(os.path.join(tmpdir, n), n)
                        os.replace(out + ".tmp", out)
                    finally:
                        shutil.rmtree(tmpdir, ignore_errors=True)
            done.append(f"{t.name}: {o.type} {o.dest}")
        elif o.type in ("image", "registry"):
            do_push = o.type == "registry" or o.attrs.get("push", "false") == "true"
            if push is False:
                do_push = False
            if not names:
                raise BakeryError(f"target {t.name}: an image output needs a name (or tags)")
            if do_push:
                for n in names:
                    puller.client.push(puller.blobs, root, n)
                    done.append(f"{t.name}: pushed {n}")
            else:
                done.append(f"{t.name}: image {', '.join(names)} (in the store; push=true to push)")
        else:
            raise BakeryError(f"target {t.name}: output type {o.type} is not supported by the embedded driver")
    return done


def _docker_load(t: Target, root: Any, puller: RegistryPuller, store: Store, names: List[str]) -> str:
    """``type=docker`` without dest (``--load``): ``docker load`` into the
    engine at $DOCKER_HOST (the image must be single-platform, as Docker's
    classic image store takes one)."""
    import subprocess

    from bakery.oci.layout import write_docker_archive

    docker = os.environ.get("BAKERY_DOCKER") or shutil.which("docker")
    if not docker:
        raise BakeryError(f"target {t.name}: type=docker without dest loads into a Docker engine, "
                          "but there is no docker CLI", hint="give type=docker a dest=FILE.tar")
    tmp = store.tmpdir("load-")
    try:
        archive = os.path.join(tmp, "image.tar")
        write_docker_archive(puller.blobs, root, archive, names)
        r = subprocess.run([docker, "load", "-i", archive], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise BakeryError(f"target {t.name}: docker load failed: {r.stderr.strip()[-2000:]}",
                              hint="is a Docker engine reachable at $DOCKER_HOST?")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    where = os.environ.get("DOCKER_HOST", "the local Docker engine")
    return f"{t.name}: loaded into {where} as {', '.join(names) or root.digest}"


class _Entry:
    def __init__(self, type_: str, attrs: Dict[str, str], dest: str = ""):
        self.type = type_
        self.attrs = attrs
        self.dest = dest
