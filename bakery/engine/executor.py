"""The engine: executes a merged BuildGraph with the shared cache.

Each node of the graph (one cache key) runs at most once per run — and not
at all when the store already holds a trustworthy record for its key:

=========  ================================================================
op         execution
=========  ================================================================
image      pulled through the ImagePuller (layers land in the store)
local      nothing to run: the directory is read by the steps that copy
scratch    an empty filesystem
exec       a writable rootfs over the input's layers, the command in the
           sandbox, the changes committed as a new layer
file       a writable rootfs, the file actions (bakery.engine.fileops),
           the changes committed as a new layer
merge      the inputs' layer lists, stacked (COPY --link)
http       the URL fetched into a one-file layer (bakery.engine.remote)
git        the ref resolved (ls-remote), the commit checked out into a layer
=========  ================================================================

Run-time pins.  A URL without ``--checksum`` and a git ref name what to
fetch, not what comes back, so their graph keys cannot be trusted as cache
keys.  Such a source is always resolved (the URL fetched, the ref turned
into a commit) and its :attr:`State.pin` is a key made of what it got
(:func:`bakery.engine.remote.http_pin`, :func:`~bakery.engine.remote.git_pin`);
every step with a pinned input is cached under
``sha256(graph key + its inputs' pins)`` instead of its graph key, and
passes that key on as its own pin.  So a changed file or a moved branch
re-runs exactly the steps after it, as BuildKit's content-based keys do.

A node's result is a :class:`State`: the layers (diff_ids, bottom first) of
a filesystem, plus the image config for image sources.  Results are recorded
in the store under the node's key, so later runs (and other targets) reuse
them.  ``no_cache`` ignores records (everything runs); ``no_cache_keys``
(a target's ``no-cache``, ``no-cache-filter``) re-runs those nodes and every
node built on them (a record of a later step holds the layers of the run
that made it, so reusing it would drop the re-run's result).  Records are
looked up top-down from the wanted nodes: a node whose record is found (in
the store or an imported cache) needs none of its inputs, which are then
neither loaded nor run (nodes with a pinned source below them are looked
up when they run, as their keys are only known then).

The engine holds the store's GC lock shared while it runs, so a concurrent
``bakery cache prune`` cannot delete blobs a build is about to record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Set, Tuple

from bakery.dockerfile.dockerignore import IgnoreMatcher
from bakery.engine import fileops, remote
from bakery.engine.scheduler import NodeResult, Scheduler
from bakery.engine.snapshots import Snapshotter
from bakery.engine.store import Store
from bakery.errors import BakeryError
from bakery.graph.keys import op_inputs
from bakery.graph.ops import (
    Copy,
    Exec,
    FileOp,
    GitSource,
    HttpSource,
    ImageSource,
    LocalSource,
    Merge,
    Ref,
    ScratchSource,
)

__all__ = ["BuildFailed", "Engine", "ImagePuller", "Progress", "State", "in_stages"]


@dataclass(frozen=True)
class State:
    layers: Tuple[str, ...] = ()
    config: Optional[Dict[str, Any]] = None  # the image config JSON (image sources)
    local: Optional[str] = None  # a local directory (local sources)
    cached: bool = field(default=False, compare=False)
    pin: str = ""  # the run-time cache key when an input was pinned (see above)


def _unpinned(op: Any) -> bool:
    """A source whose content only a fetch can tell."""
    return isinstance(op, GitSource) or (isinstance(op, HttpSource) and not op.checksum)


def pinned_key(key: str, pins: Sequence[str]) -> str:
    """The run-time cache key of a step whose inputs carry ``pins``."""
    text = "bakery-pinned-v1\n" + key + "\n" + "\n".join(pins)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def downstream(deps: Mapping[str, Sequence[str]], keys: Sequence[str]) -> set:
    """``keys`` and every node that depends on one of them, directly or not.

    >>> sorted(downstream({"a": (), "b": ("a",), "c": ("b",), "d": ()}, ["b"]))
    ['b', 'c']
    """
    users: Dict[str, List[str]] = {}
    for k, ds in deps.items():
        for d in ds:
            users.setdefault(d, []).append(k)
    out = set()
    stack = list(keys)
    while stack:
        k = stack.pop()
        if k in out:
            continue
        out.add(k)
        stack.extend(users.get(k, ()))
    return out


def in_stages(description: str, stages: Sequence[str]) -> bool:
    """Whether a step (by its progress name, ``[NAME 2/5] RUN ...``) belongs
    to one of the named Dockerfile ``stages`` (``no-cache-filter``; names
    compare case-insensitively, as BuildKit's do).  Steps of unnamed stages
    (``[stage-1 2/5]``) and base image pulls belong to no named stage.

    >>> in_stages("[build 2/5] RUN make", ["Build"])
    True
    >>> in_stages("[2/2] RUN make", ["build"])
    False
    """
    if not stages or not description.startswith("["):
        return False
    head = description[1:].split("]", 1)[0].split()
    if len(head) != 2 or "/" not in head[1]:
        return False
    name = head[0].lower()
    if re.fullmatch(r"stage-[0-9]+", name):
        return False
    return name in {s.lower() for s in stages}


class ImagePuller(Protocol):
    def pull(self, src: ImageSource, store: Store) -> Tuple[List[str], Dict[str, Any]]:
        """Put the image's layers into ``store`` as uncompressed tar blobs;
        return (diff_ids bottom first, the image config JSON)."""


class Progress(Protocol):
    def start(self, key: str, description: str) -> None: ...
    def output(self, key: str, data: bytes) -> None: ...
    def done(self, key: str, description: str, status: str, seconds: float, cached: bool,
             error: str = "") -> None: ...


class _NullProgress:
    def start(self, key: str, description: str) -> None:
        pass

    def output(self, key: str, data: bytes) -> None:
        pass

    def done(self, key: str, description: str, status: str, seconds: float, cached: bool,
             error: str = "") -> None:
        pass


class CacheSource(Protocol):
    """An imported build cache (``cache-from``), consulted on a store miss."""

    def fetch(self, key: str, store: Store) -> bool:
        """Install the record for ``key`` (and the layer blobs it needs) into
        ``store`` if this cache has it; True when it did."""


class BuildFailed(BakeryError):
    """A step failed; ``results`` has every node's outcome."""

    def __init__(self, message: str, results: Mapping[str, NodeResult], hint: Optional[str] = None):
        super().__init__(message, hint=hint)
        self.results = results


class Engine:
    def __init__(
        self,
        store: Store,
        sandbox: Any,
        puller: Optional[ImagePuller] = None,
        snapshotter: Optional[Snapshotter] = None,
        jobs: int = os.cpu_count() or 2,
        keep_going: bool = False,
        no_cache: bool = False,
        progress: Optional[Progress] = None,
        secrets: Optional[Mapping[str, bytes]] = None,
        allow_network_host: bool = False,
        cache_sources: Sequence[CacheSource] = (),
        ssh: Optional[Mapping[str, str]] = None,
    ):
        self.store = store
        self.sandbox = sandbox
        self.puller = puller
        self.snaps = snapshotter or Snapshotter(store)
        self.jobs = jobs
        self.keep_going = keep_going
        self.no_cache = no_cache
        self.progress: Progress = progress or _NullProgress()
        self.secrets = dict(secrets or {})
        self.allow_network_host = allow_network_host
        self.cache_sources = list(cache_sources)
        # ssh id -> agent socket (bakery.engine.sandbox.ssh); None: $SSH_AUTH_SOCK for any id
        self.ssh = dict(ssh) if ssh is not None else None
        self.executed: Dict[str, int] = {}  # key -> times run in this engine (tests, stats)
        self._lock = threading.Lock()
        self._mount_lock = threading.Lock()
        self._mounts_tried: Set[str] = set()

    # -- running a graph ---------------------------------------------------

    def run(
        self,
        ops: Mapping[str, Any],
        deps: Mapping[str, Sequence[str]],
        wanted: Optional[Sequence[str]] = None,
        descriptions: Optional[Mapping[str, str]] = None,
        no_cache_keys: Sequence[str] = (),
        targets: Optional[Mapping[str, Sequence[str]]] = None,
    ) -> Dict[str, State]:
        """Execute the nodes ``wanted`` needs; returns key → State.

        ``ops`` maps key → op, ``deps`` key → input keys (in the op's input
        order, see :func:`bakery.graph.keys.op_inputs`).  ``targets``: key →
        names of the targets that need it, kept in the records it writes
        (``bakery cache du`` shows sizes per target).
        """
        users = dict(targets or {})
        desc = dict(descriptions or {})
        skip_cache = downstream(deps, no_cache_keys)
        key_of_ref = _KeyIndex(ops)
        hits: Dict[str, State] = {}
        misses: Set[str] = set()
        if not self.no_cache:
            hits, misses = self._short_cut(ops, deps, list(wanted) if wanted is not None else list(deps),
                                           skip_cache)
            deps = {k: (() if k in hits else tuple(v)) for k, v in deps.items()}

        def execute(key: str, inputs: Mapping[str, State], cancel: threading.Event) -> State:
            op = ops[key]
            d = desc.get(key) or type(op).__name__
            t0 = time.monotonic()
            if key in hits:
                self.progress.done(key, d, "done", 0.0, True)
                return hits[key]
            pins = [p for p in (inputs[key_of_ref.of(r)].pin for r, _ in op_inputs(op)) if p]
            cache_key = pinned_key(key, pins) if pins else key
            use_cache = not self.no_cache and key not in skip_cache
            if use_cache and not isinstance(op, LocalSource) and not _unpinned(op) \
                    and not (cache_key == key and key in misses):
                hit = self.load(cache_key)
                if hit is not None:
                    self.progress.done(key, d, "done", 0.0, True)
                    return dataclasses.replace(hit, pin=cache_key if pins else "")
            self.progress.start(key, d)
            try:
                if _unpinned(op):
                    state = self._remote(key, op, use_cache)
                    cache_key = state.pin
                else:
                    state = self._execute(key, op, inputs, key_of_ref, cancel)
                    state = dataclasses.replace(state, pin=cache_key if pins else "")
            except BaseException as e:
                status = "cancelled" if cancel.is_set() else "failed"
                msg = e.message if isinstance(e, BakeryError) else str(e) or type(e).__name__
                self.progress.done(key, d, status, time.monotonic() - t0, False, error=msg)
                raise
            if state.cached:
                self.progress.done(key, d, "done", time.monotonic() - t0, True)
                return state
            if not isinstance(op, LocalSource):  # reading a directory is not a step
                with self._lock:
                    self.executed[key] = self.executed.get(key, 0) + 1
            if not isinstance(op, LocalSource):
                self.save(cache_key, state, users.get(key, ()))
            self.progress.done(key, d, "done", time.monotonic() - t0, False)
            return state

        sched = Scheduler(self.jobs, self.keep_going)
        self.store.recover()  # mounts and temp files of runs that were killed
        with self.store.lock("gc", shared=True):
            results = sched.run(deps, execute, wanted)
        failed = [r for r in results.values() if r.status == "failed"]
        if failed:
            first = failed[0]
            err = first.error
            msg = str(err.message if isinstance(err, BakeryError) else err)
            what = desc.get(first.key) or first.key
            raise BuildFailed(
                f"{what}: {msg}" if not msg.startswith(what) else msg,
                results,
                hint=err.hint if isinstance(err, BakeryError) else None,
            ) from err
        return {k: r.value for k, r in results.items() if r.status == "done"}

    # -- the cache ---------------------------------------------------------

    def _short_cut(self, ops: Mapping[str, Any], deps: Mapping[str, Sequence[str]],
                   wanted: Sequence[str], skip: Set[str]) -> Tuple[Dict[str, State], Set[str]]:
        """(hits, misses), looked up top-down from ``wanted``.

        A step whose record is in the store or an imported cache does not
        need its inputs, so the lookup stops there: an unchanged build
        restores its final steps only, and an imported cache downloads only
        the layers those need (BuildKit's solver does the same).  A record
        that turns out missing or corrupt is a miss and the walk continues
        into that step's inputs, so a broken cache costs time, never a
        wrong result.  Not looked up here: steps with a ``no-cache-filter``
        step below them (it must run) and steps with an unpinned source
        below them (their cache key is only known once it is fetched)."""
        users: Dict[str, List[str]] = {}
        for k, ds in deps.items():
            for dep in ds:
                users.setdefault(dep, []).append(k)
        tainted: Set[str] = set()
        stack = [k for k in deps if k in skip or _unpinned(ops[k])]
        while stack:
            k = stack.pop()
            if k not in tainted:
                tainted.add(k)
                stack.extend(users.get(k, ()))
        hits: Dict[str, State] = {}
        misses: Set[str] = set()
        seen: Set[str] = set()
        level = list(dict.fromkeys(wanted))
        with ThreadPoolExecutor(max_workers=max(1, self.jobs), thread_name_prefix="bakery-lookup") as pool:
            while level:
                seen.update(level)
                ask = [k for k in level if k not in tainted and not isinstance(ops[k], LocalSource)]
                found = dict(zip(ask, pool.map(self.load, ask)))
                nxt: List[str] = []
                for k in level:
                    st = found.get(k)
                    if st is not None:
                        hits[k] = st
                        continue
                    if k in found:
                        misses.add(k)
                    nxt.extend(d for d in deps[k] if d not in seen)
                level = list(dict.fromkeys(nxt))
        return hits, misses

    def load(self, key: str) -> Optional[State]:
        rec = self.store.get_record(key)
        if rec is None:
            for src in self.cache_sources:
                try:
                    if src.fetch(key, self.store):
                        rec = self.store.get_record(key)
                        break
                except BakeryError:
                    if getattr(src, "strict", False):
                        raise  # cache-from ...,ignore-error=false
                    continue  # a broken import is a miss, never a wrong result
        if rec is None:
            return None
        return State(tuple(rec.get("layers", ())), rec.get("config"), None, cached=True)

    def _restore_mount(self, cache_id: str, path: str) -> None:
        """An empty cache mount (``path``, leased from the store) is first
        filled from an imported cache that holds its contents (``cache-to
        ...,cache-mounts=true``), once per run; a mount with contents is
        never touched."""
        with self._mount_lock:
            if cache_id in self._mounts_tried or not self.cache_sources:
                return
            self._mounts_tried.add(cache_id)
            if os.listdir(path):
                return
            for src in self.cache_sources:
                restore = getattr(src, "restore_mount", None)
                if restore is not None and restore(cache_id, self.store, path):
                    return

    def save(self, key: str, state: State, targets: Sequence[str] = ()) -> None:
        meta = {"targets": sorted(set(targets))} if targets else None
        self.store.put_record(
            key, {"layers": list(state.layers), "config": state.config}, blobs=list(state.layers),
            meta=meta,
        )

    # -- one node ----------------------------------------------------------

    def _execute(self, key: str, op: Any, inputs: Mapping[str, State], keys: _KeyIndex,
                 cancel: threading.Event) -> State:
        if isinstance(op, ScratchSource):
            return State()
        if isinstance(op, LocalSource):
            if not os.path.isdir(op.path):
                raise BakeryError(f"local context {op.name} is not a directory: {op.path}")
            return State(local=op.path)
        if isinstance(op, ImageSource):
            if self.puller is None:
                raise BakeryError(f"cannot pull {op.ref}: no registry access configured")
            diff_ids, config = self.puller.pull(op, self.store)
            return State(tuple(diff_ids), config)
        if isinstance(op, (HttpSource, GitSource)):
            return self._remote(key, op, False)
        if isinstance(op, Merge):
            layers: List[str] = []
            for ref in op.inputs:
                layers.extend(inputs[keys.of(ref)].layers)
            return State(tuple(layers))
        if isinstance(op, FileOp):
            return self._file(op, inputs, keys)
        if isinstance(op, Exec):
            return self._exec(key, op, inputs, keys, cancel)
        raise TypeError(f"unknown op {op!r}")

    def _remote(self, key: str, op: Any, use_cache: bool) -> State:
        """Fetch an HTTP or git source into a layer.  An unpinned one gets
        its pin; a git commit already in the cache is not fetched again."""
        where = f" ({op.location.file}:{op.location.start_line})" if op.location else ""
        try:
            with self.snaps.writable(()) as fs:
                if isinstance(op, HttpSource):
                    # an unpinned URL fetched before with an ETag: ask if it changed
                    meta = remote.http_meta_key(key)
                    last = self.store.get_record(meta) if use_cache and not op.checksum else None
                    seen = (last or {}).get("config") or {}
                    etag = str(seen.get("etag") or "") if seen.get("pin") else ""
                    res = remote.fetch_http(op, fs.path, etag=etag)
                    if res.not_modified and last is not None:
                        return State(tuple(last.get("layers", ())), pin=str(seen["pin"]), cached=True)
                    pin = remote.http_pin(op, res) if not op.checksum else ""
                else:
                    ref, commit = remote.git_resolve(op)
                    pin = remote.git_pin(key, commit)
                    if use_cache:
                        hit = self.load(pin)
                        if hit is not None:
                            return dataclasses.replace(hit, pin=pin)
                    tmp = self.store.tmpdir("git-")
                    try:
                        remote.git_fetch(op, ref, commit, fs.path, work_parent=tmp)
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                layer = fs.commit()
                layers = tuple(self.snaps.chain((), layer))
                if isinstance(op, HttpSource) and pin and res.etag:
                    self.store.put_record(meta, {"layers": list(layers),
                                                 "config": {"etag": res.etag, "pin": pin}},
                                          blobs=list(layers))
        except BakeryError as e:
            raise BakeryError(e.message + where, hint=e.hint) from None
        return State(layers, pin=pin)

    @contextlib.contextmanager
    def _source_dir(self, state: State) -> Any:
        """A directory holding a state's files, read-only use (removed after)."""
        if state.local is not None:
            yield state.local
            return
        d = self.store.tmpdir("src-")
        try:
            self.snaps.materialize(state.layers, d)
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def _cache_seed(self, state: State, selector: str) -> Any:
        def seed(dest: str) -> None:
            with self._source_dir(state) as src:
                path = fileops.resolve_in_root(src, selector)
                if not os.path.isdir(path):
                    raise BakeryError(f"cache mount source {selector} is not a directory")
                r = subprocess.run(["cp", "-a", "--", path + "/.", dest + "/"], capture_output=True, text=True)
                if r.returncode != 0:
                    raise BakeryError(f"cannot fill the cache mount from {selector}: {r.stderr.strip()}")
                shutil.copystat(path, dest)
                if os.geteuid() == 0:
                    st = os.stat(path)
                    os.chown(dest, st.st_uid, st.st_gid)
        return seed

    def _file(self, op: FileOp, inputs: Mapping[str, State], keys: _KeyIndex) -> State:
        base = inputs[keys.of(op.base)] if op.base is not None else State()
        with contextlib.ExitStack() as stack:
            sources: Dict[int, Tuple[str, bool, Optional[IgnoreMatcher]]] = {}
            for a in op.actions:
                if isinstance(a, Copy):
                    st = inputs[keys.of(a.source)]
                    src_dir = stack.enter_context(self._source_dir(st))
                    ignore = None
                    if isinstance(a.source.op, LocalSource) and a.source.op.exclude:
                        ignore = IgnoreMatcher(list(a.source.op.exclude))
                    sources[id(a)] = (src_dir, st.local is None, ignore)
            fs = stack.enter_context(self.snaps.writable(base.layers))
            fileops.apply_actions(op.actions, fs.path, sources)
            layer = fs.commit()
        return State(tuple(self.snaps.chain(base.layers, layer)))

    def _exec(self, key: str, op: Exec, inputs: Mapping[str, State], keys: _KeyIndex,
              cancel: threading.Event) -> State:
        from bakery.engine.sandbox import DEFAULT_SHM_SIZE, RunSpec, SandboxMount
        from bakery.engine.sandbox.ssh import SocketRelay, ssh_env

        base = inputs[keys.of(op.rootfs)]
        if op.network == "host" and not self.allow_network_host:
            raise BakeryError(
                "RUN --network=host needs the network.host entitlement",
                hint="run with --allow network.host (or set entitlements = [\"network.host\"])",
            )
        with contextlib.ExitStack() as stack:
            mounts = []
            first_ssh: Optional[str] = None
            secret_env: Dict[str, str] = {}
            for m in op.mounts:
                if m.type == "bind":
                    st = inputs[keys.of(m.source)] if m.source is not None else State()
                    src = stack.enter_context(self._source_dir(st))
                    path = fileops.resolve_in_root(src, m.selector or "/")
                    mounts.append(SandboxMount("bind", path, m.target, readonly=m.readonly))
                elif m.type == "cache":
                    cid = m.cache_id or m.target
                    seed = None
                    if m.source is not None:
                        # from=: a cache per id and source, made from the source's files
                        # (BuildKit keys it "cache-dir:<id>:<source ref>")
                        src_state = inputs[keys.of(m.source)]
                        cid += ":" + _state_id(src_state) + ":" + (m.selector or "/")
                        seed = self._cache_seed(src_state, m.selector or "/")
                    path = stack.enter_context(self.store.cache_mount_lease(
                        cid, m.sharing, m.uid, m.gid, m.mode, cancel, seed=seed))
                    self._restore_mount(cid, path)
                    mounts.append(SandboxMount("bind", path, m.target, readonly=m.readonly))
                elif m.type == "tmpfs":
                    mounts.append(SandboxMount("tmpfs", "", m.target, size=m.size))
                elif m.type == "secret":
                    value = self.secrets.get(m.secret_id)
                    if value is None:
                        if m.required:
                            raise BakeryError(f"secret {m.secret_id} not found",
                                              hint="add it to the target's secret attribute")
                        continue
                    if m.env:
                        secret_env[m.env] = value.decode()
                    if m.target or not m.env:
                        mounts.append(SandboxMount(
                            "secret", "", m.target or f"/run/secrets/{m.secret_id}",
                            readonly=True, data=value, mode=m.mode if m.mode is not None else 0o400,
                            uid=m.uid or 0, gid=m.gid or 0))
                elif m.type == "ssh":
                    sid = m.secret_id or "default"
                    target = m.target or "/run/buildkit/ssh_agent.0"
                    first_ssh = first_ssh or target  # BuildKit: the first ssh mount, forwarded or not
                    sock = (self.ssh.get(sid) if self.ssh is not None
                            else os.environ.get("SSH_AUTH_SOCK"))
                    if not sock:
                        if m.required:
                            raise BakeryError(f"no SSH key {sid!r} forwarded from the client",
                                              hint=f'add ssh = ["{sid}"] (the agent at $SSH_AUTH_SOCK) or '
                                                   f'["{sid}=/path/to/key"] to the target')
                        continue
                    relay = stack.enter_context(SocketRelay(
                        sock, None, m.uid or 0, m.gid or 0, 0o600 if m.mode is None else m.mode))
                    mounts.append(SandboxMount("bind", relay.path, target, readonly=False))
            fs = stack.enter_context(self.snaps.writable(base.layers))
            have = {e.split("=", 1)[0] for e in op.env}
            env = (*op.env, *(e for e in op.proxy_env if e.split("=", 1)[0] not in have))
            spec = RunSpec(
                rootfs=fs.path, args=op.args, env=tuple(ssh_env(env, first_ssh)), cwd=op.cwd or "/",
                user=op.user,
                network="host" if op.network == "host" else "none", mounts=tuple(mounts),
                extra_hosts=op.extra_hosts, secret_env=secret_env,
                shm_size=op.shm_size or DEFAULT_SHM_SIZE, ulimits=op.ulimits,
            )
            result = self.sandbox.run(spec, lambda data: self.progress.output(key, data), cancel=cancel)
            if result.exit_code != 0:
                where = f" ({op.location.file}:{op.location.start_line})" if op.location else ""
                tail = result.output[-4000:].decode("utf-8", "replace").rstrip()
                raise BakeryError(
                    f"process \"{' '.join(op.args)}\" did not complete successfully: "
                    f"exit code: {result.exit_code}{where}" + (f"\n{tail}" if tail else ""),
                )
            layer = fs.commit()
        return State(tuple(self.snaps.chain(base.layers, layer)))


def _state_id(state: State) -> str:
    """What a cache mount's ``from=`` source is, for its cache id."""
    if state.local is not None:
        return "local:" + os.path.abspath(state.local)
    return hashlib.sha256("\n".join(state.layers).encode()).hexdigest()[:32]


class _KeyIndex:
    """Find the key of an op a Ref points at (refs hold ops, not keys)."""

    def __init__(self, ops: Mapping[str, Any]):
        self.by_id: Dict[int, str] = {id(op): k for k, op in ops.items()}
        self.by_value: Dict[Any, str] = {}
        for k, op in ops.items():
            with contextlib.suppress(TypeError):
                self.by_value.setdefault(op, k)

    def of(self, ref: Optional[Ref]) -> str:
        if ref is None:
            raise KeyError("no input")
        k = self.by_id.get(id(ref.op))
        if k is None:
            k = self.by_value.get(ref.op)
        if k is None:
            raise KeyError(f"input op not in the graph: {ref.op!r}")
        return k


