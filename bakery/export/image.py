"""The image exporter: a target's platforms → image manifests (one OCI
index for several), pushed for ``type=image,push=true`` and ``type=registry``.

:class:`ImageBuilder` makes each (target, :class:`~bakery.export.spec.ImageOptions`)
image once per run, whatever number of outputs ask for it:

* layers: the engine's uncompressed layer tars, compressed as asked
  (``compression``, ``compression-level``), several at once (all platforms
  of an image, and with :meth:`ImageBuilder.compress_all` all images of a
  run; each compressed once even when several threads ask for it); a base
  image's layers keep the blob the registry gave (so pushes mount or skip them and digests match
  the base's) unless ``force-compression=true``, as BuildKit does;
* config: ``created``, the platform, the container config, ``rootfs``
  and ``history`` (the base's entries, then one per step, each with its
  ``created`` time); with ``SOURCE_DATE_EPOCH`` ``created`` is that time and
  history entries later than it are clamped to it, as BuildKit does;
  ``config_extras`` (a hook, see :class:`ExportContext`) adds top-level keys;
* with ``rewrite-timestamp=true`` and ``SOURCE_DATE_EPOCH``, file times
  later than the epoch are clamped to it in every layer
  (:func:`clamp_layer_times`; a layer with nothing to clamp keeps its blob),
  so that rebuilding the same sources gives the same digests;
* manifests and the index with OCI or Docker media types, the manifest,
  manifest-descriptor and index annotations of the output.
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.engine.layers import clamp_layer_times, compressed_layer
from bakery.export.spec import ImageOptions, OutputSpec, annotations_for
from bakery.oci.media import Descriptor, Platform, compression_of

__all__ = ["BuiltImage", "ExportContext", "ImageBuilder", "clamp_layer_times", "image_history",
           "image_work", "push_image"]

# (target name, platform, the image's layers) -> extra top-level config keys
ConfigExtras = Callable[[str, Platform, Sequence[Any]], Mapping[str, Any]]


@dataclass
class ExportContext:
    """What exporters work with; built by the engine's shell (run.py).

    ``config_extras``: a hook that returns extra top-level keys for a
    target's image config on one platform, given its layers
    (:class:`bakery.oci.image.Layer`: blob digest, size, diff_id), e.g. the
    inline cache's ``moby.buildkit.cache.v0``."""

    blobs: Any  # bakery.oci.store.BlobStore: manifests, configs, compressed layers
    store: Any  # bakery.engine.store.Store: uncompressed layers by diff_id
    snaps: Any  # bakery.engine.snapshots: materialize(diff_ids, dest)
    client: Any  # bakery.oci.registry.RegistryClient
    cwd: str
    base_config: Callable[[Any], Optional[Mapping[str, Any]]] = lambda src: None
    base_layer: Callable[[str], Optional[Descriptor]] = lambda diff_id: None
    config_extras: Optional[ConfigExtras] = None
    docker: Optional[str] = None  # the docker CLI for type=docker without dest
    jobs: int = 0  # layers compressed at once (the run's --jobs; 0: one per CPU)


@dataclass(frozen=True)
class BuiltImage:
    """A target's image for one set of options."""

    root: Descriptor  # the manifest (single platform) or the index
    manifests: Tuple[Descriptor, ...]  # one per platform, with platform and descriptor annotations
    config_digest: str  # single platform only, else ""
    created: str  # the config's created time (the first platform's)


def _parse_time(text: Optional[str]) -> Optional[_dt.datetime]:
    """An RFC 3339 time (Go's, up to 9 fractional digits) as an aware datetime."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$",
                 (text or "").strip())
    if m is None:
        return None
    frac = (m.group(2) or "")[:6].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        return _dt.datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}")
    except ValueError:
        return None


def image_history(steps: Sequence[Tuple[str, bool]], base_config: Optional[Mapping[str, Any]],
                  n_layers: int, created: str, epoch: Optional[int]) -> Optional[List[Any]]:
    """The history of an image: the base's entries, then one per step
    (``created_by``, empty?) created at ``created``; None when the entries
    do not match the layers (a step that changed nothing), so that
    :func:`bakery.oci.image.build_image` writes one plain entry per layer.
    With ``epoch``, base entries later than it are clamped to it."""
    from bakery.oci.image import History, format_created

    clamp = _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc) if epoch is not None else None
    hist: List[Any] = []
    for h in (base_config or {}).get("history") or []:
        when = h.get("created")
        if clamp is not None:
            t = _parse_time(when)
            if t is None or t > clamp:
                when = format_created(clamp)
        hist.append(History(created=when, created_by=h.get("created_by", ""),
                            comment=h.get("comment", ""), empty_layer=bool(h.get("empty_layer"))))
    for created_by, empty in steps:
        hist.append(History(created=created, created_by=created_by, comment="buildkit.dockerfile.v0",
                            empty_layer=empty))
    if sum(1 for h in hist if not h.empty_layer) != n_layers:
        return None
    return hist


def container_config(cfg: Any) -> Any:
    """bakery.oci.image.ContainerConfig from the graph's ImageConfig."""
    from bakery.oci.image import ContainerConfig, Healthcheck

    hc = None
    if cfg.healthcheck:
        h = dict(cfg.healthcheck)  # Docker's keys, durations in nanoseconds
        hc = Healthcheck(
            test=list(h.get("Test") or []), interval=h.get("Interval") or 0,
            timeout=h.get("Timeout") or 0, start_period=h.get("StartPeriod") or 0,
            start_interval=h.get("StartInterval") or 0, retries=int(h.get("Retries") or 0),
        )
    return ContainerConfig(
        user=cfg.user, exposed_ports=list(cfg.exposed_ports), env=list(cfg.env),
        entrypoint=list(cfg.entrypoint) if cfg.entrypoint is not None else None,
        cmd=list(cfg.cmd) if cfg.cmd is not None else None, volumes=list(cfg.volumes),
        working_dir=cfg.workdir, labels=dict(cfg.labels), stop_signal=cfg.stop_signal,
        healthcheck=hc, on_build=list(cfg.onbuild), shell=list(cfg.shell or ()),
    )


LayerKey = Tuple[str, str, Optional[int], bool, Optional[int]]


@dataclass
class ImageBuilder:
    """Builds (and remembers) the images of a run's targets.

    Layers are compressed concurrently: :meth:`build` compresses all the
    layers of all its platforms at once, and :meth:`compress_all` those of
    every image a run will make (up to ``ctx.jobs`` layers at a time, each
    gzip layer itself split over the CPUs, see :mod:`bakery.oci.pgzip`).
    A layer asked for by several threads is compressed once: the first
    caller compresses it, the others wait for its result."""

    ctx: ExportContext
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _layers: Dict[LayerKey, Future[Any]] = field(default_factory=dict)
    _images: Dict[Tuple[str, ImageOptions], BuiltImage] = field(default_factory=dict)

    def layer(self, diff_id: str, opts: ImageOptions, epoch: Optional[int] = None) -> Any:
        """The compressed layer for ``diff_id`` (a base's own blob unless
        forced); with ``opts.rewrite_timestamp`` and ``epoch``, its file
        times clamped first."""
        clamp = epoch if opts.rewrite_timestamp else None
        key = (diff_id, opts.compression, opts.level, opts.force, clamp)
        with self._lock:
            fut = self._layers.get(key)
            mine = fut is None
            if fut is None:
                fut = self._layers[key] = Future()
        if not mine:
            return fut.result()
        try:
            layer = self._make_layer(diff_id, opts, clamp)
        except BaseException as e:
            with self._lock:  # not remembered: a later call tries again
                del self._layers[key]
            fut.set_exception(e)
            raise
        fut.set_result(layer)
        return layer

    def _make_layer(self, diff_id: str, opts: ImageOptions, clamp: Optional[int]) -> Any:
        from bakery.oci.image import Layer

        if not opts.force:
            known = self.ctx.base_layer(diff_id)
            if known is not None and self.ctx.blobs.has(known.digest):
                return Layer(known.digest, known.size, diff_id, compression_of(known.media_type))
        return compressed_layer(self.ctx.store, self.ctx.blobs, diff_id, opts.compression,
                                opts.level, clamp)

    def workers(self) -> int:
        """How many layers are compressed at once."""
        from bakery.oci.pgzip import compress_threads

        return max(1, self.ctx.jobs or compress_threads())

    def compress_all(self, work: Sequence[Tuple[Sequence[Tuple[Any, Any]], ImageOptions]]) -> None:
        """Compress, concurrently, the layers of the images ``work`` asks for
        ((graph export, engine state) per platform, options); :meth:`build`
        then finds them done.  The first error is raised once all are done."""
        from bakery.oci.image import source_date_epoch

        epoch = source_date_epoch()
        wanted: Dict[LayerKey, Tuple[str, ImageOptions]] = {}
        for items, opts in work:
            clamp = epoch if opts.rewrite_timestamp else None
            for _, state in items:
                for d in state.layers:
                    wanted.setdefault((d, opts.compression, opts.level, opts.force, clamp), (d, opts))
        jobs = list(wanted.values())
        if len(jobs) < 2:
            for d, opts in jobs:
                self.layer(d, opts, epoch)
            return
        with ThreadPoolExecutor(max_workers=min(self.workers(), len(jobs)),
                                thread_name_prefix="bakery-layer") as pool:
            futures = [pool.submit(self.layer, d, opts, epoch) for d, opts in jobs]
        for f in futures:
            f.result()

    def build(self, target: str, items: Sequence[Tuple[Any, Any]], opts: ImageOptions) -> BuiltImage:
        """The image of ``target`` from its (graph export, engine state) per platform."""
        from bakery.oci.image import build_image, build_index, format_created, source_date_epoch

        key = (target, opts)
        with self._lock:
            if key in self._images:
                return self._images[key]
        epoch = source_date_epoch()
        created = format_created(epoch)
        media = "oci" if opts.oci else "docker"
        self.compress_all([(items, opts)])
        images = []
        for ex, state in items:
            cfg = ex.export.config
            platform = ex.export.platform
            layers = [self.layer(d, opts, epoch) for d in state.layers]
            base_config = self.ctx.base_config(cfg.base) if cfg.base is not None else None
            extra = self.ctx.config_extras(target, platform, layers) if self.ctx.config_extras else None
            img = build_image(self.ctx.blobs, layers, container_config(cfg), str(platform), media=media,
                              created=created,
                              history=image_history(cfg.history, base_config, len(layers), created, epoch),
                              annotations=annotations_for(opts, "manifest", platform) or None,
                              extra_config=extra)
            desc = img.descriptor.with_annotations(
                annotations_for(opts, "manifest-descriptor", platform) or None)
            images.append((desc, img.config.digest))
        if len(images) == 1:
            desc, cfg_digest = images[0]
            built = BuiltImage(desc, (desc,), cfg_digest, created)
        else:
            manifests = [d for d, _ in images]
            root = build_index(self.ctx.blobs, manifests, media=media,
                               annotations=annotations_for(opts, "index") or None)
            built = BuiltImage(root, tuple(manifests), "", created)
        with self._lock:
            self._images[key] = built
        return built


def image_work(specs: Sequence[OutputSpec]) -> List[ImageOptions]:
    """The image options a target's outputs make images with (as
    :func:`bakery.export.export_target` does: none for local, tar and
    cacheonly outputs; the defaults when there is no output)."""
    if not specs:
        return [ImageOptions()]
    return list(dict.fromkeys(s.image for s in specs if s.makes_image))


def push_image(ctx: ExportContext, spec: OutputSpec, built: BuiltImage) -> List[str]:
    """Push ``built`` under every name of ``spec`` (by digest only with
    ``push-by-digest=true``); the lines to report."""
    from bakery.oci.reference import parse_reference

    done = []
    for name in spec.names:
        ref = parse_reference(name)
        if spec.push_by_digest:
            ref = ref.with_digest(built.root.digest)
        ctx.client.push(ctx.blobs, built.root, ref)
        done.append(f"{spec.target}: pushed {ref}")
    return done
