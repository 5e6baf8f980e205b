"""``bakery run``: resolved targets → merged graph → engine → images → outputs.

The thin shell that joins the layers:

1. base images are resolved through the registry (their configs feed the
   Dockerfile conversion: ENV, WORKDIR, USER, ONBUILD...) and pulled into
   the store once (:class:`RegistryPuller`);
2. the merged graph of every requested target x platform is built
   (:func:`bakery.graph.build.build_graph`) and executed by the
   :class:`~bakery.engine.executor.Engine`: each step once, cached steps not
   at all;
3. each target's outputs are checked before anything runs, then written
   by :mod:`bakery.export` (images with the compression, media types and
   annotations each output asks for; several platforms one OCI index;
   ``type=oci``, ``docker``, ``local``, ``tar``, ``image``/``registry``,
   ``cacheonly``).  Outputs are written only when every target succeeded.
"""

from __future__ import annotations

import gzip
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.bakefile.model import Target
from bakery.engine.executor import BuildFailed, Engine, in_stages
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.graph.ops import Exec, ImageSource, LocalSource

__all__ = ["STEPS_KEY", "RegistryPuller", "RunReport", "progress_name", "run_targets", "step_counts"]


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

    def base_layer(self, diff_id: str) -> Any:
        """The compressed blob (a Descriptor) a pulled base image has for
        the layer ``diff_id``, or None."""
        with self._lock:
            resolved = list(self._resolved.values())
        for _, layers, config in resolved:
            diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
            if diff_id in diff_ids and len(diff_ids) == len(layers):
                return layers[diff_ids.index(diff_id)]
        return None

    def base_config(self, src: ImageSource) -> Optional[Dict[str, Any]]:
        """The image config of a base image (None when it cannot be had)."""
        try:
            return self._manifest(src)[2]
        except BakeryError:
            return None

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


#: the metadata file's per-target key for what the run did (beyond buildx's keys)
STEPS_KEY = "bakery.build.steps"


def step_counts(graph: Any, states: Mapping[str, Any], executed: Mapping[str, int]) -> Dict[str, Dict[str, int]]:
    """Per target: the steps it needs that ran in this run and those that
    came from the cache (a step shared by several targets counts for
    each; steps a cached later step made unnecessary count for neither;
    reading a local context is no step).

    >>> from types import SimpleNamespace as N
    >>> g = N(nodes={"a": N(op=None, users=[("x", "p")]), "b": N(op=None, users=[("x", "p"), ("y", "p")])})
    >>> step_counts(g, {"a": N(cached=False), "b": N(cached=True)}, {"a": 1})
    {'x': {'run': 1, 'cached': 1}, 'y': {'run': 0, 'cached': 1}}
    """
    out: Dict[str, Dict[str, int]] = {}
    for k, n in graph.nodes.items():
        if isinstance(n.op, LocalSource) or k not in states:
            continue
        kind = "run" if k in executed else "cached" if states[k].cached else ""
        if not kind:
            continue
        for t in sorted({t for t, _ in n.users}):
            out.setdefault(t, {"run": 0, "cached": 0})[kind] += 1
    return out


def progress_name(description: str, platform: Any, multi_platform: bool) -> str:
    """A step's name in the progress output: as BuildKit names it, with the
    platform first inside the brackets when its target is built for several
    platforms (``[linux/arm64 build 2/3] RUN make``), so the lines of
    different platforms can be told apart.

    >>> progress_name("[build 2/3] RUN make", "linux/arm64", True)
    '[linux/arm64 build 2/3] RUN make'
    >>> progress_name("[2/3] RUN make", "linux/arm64", False)
    '[2/3] RUN make'
    """
    if not multi_platform or platform is None or not description.startswith("[") \
            or description.startswith("[internal]"):
        return description
    return f"[{platform} {description[1:]}"


@dataclass
class RunReport:
    images: Dict[str, str] = field(default_factory=dict)  # target -> root digest
    executed: int = 0
    cached: int = 0
    outputs: List[str] = field(default_factory=list)
    # target -> its --metadata-file entry (bakery.export.metadata)
    metadata: Dict[str, Dict[str, Any]] = field(default_factory=dict)


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
    load: bool = False,
    config_extras: Any = None,
    ssh: Optional[Mapping[str, str]] = None,
    pull: bool = False,
) -> RunReport:
    """Build, then write outputs.  Outputs are written only when every
    requested target succeeded, unless ``outputs_on_failure`` (with
    ``keep_going``): then targets whose every platform built get their
    outputs, and the run still fails.  ``push``/``load`` are bake's
    ``--push``/``--load``; ``config_extras`` is the image exporter's hook
    for extra image config keys (see :class:`bakery.export.ExportContext`)."""
    from bakery.cache import export_caches, sources_for_targets
    from bakery.cache.inline import with_inline_cache
    from bakery.engine.emulation import ensure_emulator
    from bakery.export import ExportContext, ImageBuilder, export_target, parse_outputs
    from bakery.export.image import image_work
    from bakery.graph.build import build_graph

    puller = RegistryPuller(store, insecure, pull=pull or any(
        targets[n].pull for n in targets))
    puller.note = getattr(progress, "note", None)
    graph = build_graph(targets, requested, cwd, image_config=puller.image_config, groups=groups)
    n_platforms: Dict[str, int] = {}
    for ex in graph.exports.values():
        n_platforms[ex.target] = n_platforms.get(ex.target, 0) + 1
    # every output checked before anything runs
    specs = {name: parse_outputs(targets[name], n, push, load) for name, n in n_platforms.items()}
    note = getattr(progress, "note", None)
    sources = sources_for_targets(targets, list(graph.targets), cwd, puller.client, puller.blobs, note)
    engine = Engine(store, sandbox, puller, jobs=jobs, keep_going=keep_going, no_cache=no_cache,
                    progress=progress, secrets=secrets, allow_network_host=allow_network_host,
                    cache_sources=sources, ssh=ssh)
    for arch in sorted({n.op.platform.architecture for n in graph.nodes.values()
                        if isinstance(n.op, Exec)}):
        emulated = ensure_emulator(arch)
        if emulated and progress is not None:
            progress.note(emulated)
    ops = {k: n.op for k, n in graph.nodes.items()}
    # data inputs, plus depends_on: a step waits for the exports it is after
    deps = {k: tuple(dict.fromkeys([*n.deps, *(graph.exports[e].root for e in n.after
                                               if e in graph.exports)]))
            for k, n in graph.nodes.items()}
    multi = {name for name, info in graph.targets.items() if len(info.platforms) > 1}
    descs = {k: progress_name(n.description, getattr(n.op, "platform", None),
                              any(t in multi for t, _ in n.users))
             for k, n in graph.nodes.items()}
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
    steps = step_counts(graph, states, engine.executed)
    ctx = ExportContext(puller.blobs, store, engine.snaps, puller.client, cwd,
                        base_config=puller.base_config, base_layer=puller.base_layer,
                        config_extras=with_inline_cache(config_extras, graph, targets, store, sources),
                        jobs=jobs)
    builder = ImageBuilder(ctx)
    # every image's layers compressed at once (all targets and platforms)
    builder.compress_all([(items, opts) for name, items in per_target.items()
                          for opts in image_work(specs.get(name, []))])
    for name, items in per_target.items():
        lines, meta = export_target(builder, name, specs.get(name, []), items)
        report.outputs.extend(lines)
        if not targets[name].linked:  # built only as another target's context
            report.metadata[name] = {**meta, STEPS_KEY: steps.get(name, {"run": 0, "cached": 0})}
        if meta.get("containerimage.digest"):
            report.images[name] = meta["containerimage.digest"]
    if failure is not None:
        done = ", ".join(sorted(per_target)) or "none"
        raise BuildFailed(f"{failure.message}\n(outputs written for: {done}; not for: "
                          f"{', '.join(sorted(broken))})", failure.results, hint=failure.hint)
    report.outputs.extend(export_caches(graph, targets, store, cwd, puller.client, puller.blobs, note,
                                        sources=sources))
    return report
