"""Build caches with the engine: top-down cache lookups, mode=min as
BuildKit, re-exporting what was only imported, cache mounts (fake sandbox,
no root needed)."""

from __future__ import annotations

import hashlib
import logging
import os
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

import pytest

from bakery.cache import (
    CacheIndex,
    CacheRecord,
    LayerEntry,
    LocalCacheSource,
    export_caches,
    export_local,
    read_local_index,
    result_chain,
)
from bakery.engine.executor import Engine
from bakery.engine.snapshots import Snapshotter
from bakery.engine.store import Store
from bakery.graph.ops import Exec, FileOp, Mkfile, Ref, ScratchSource
from tests.unit.test_engine import AMD64, FakeSandbox, graph, run_step


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def chain() -> tuple:
    """scratch → mkfile → RUN a → RUN b (the root)."""
    b0 = FileOp(Ref(ScratchSource()), (Mkfile("/etc/os", b"fake\n"),))
    a = run_step("a", b0)
    b = run_step("b", a)
    ops, deps, roots = graph(b)
    (root,) = roots
    k_a = deps[root][0]
    k_base = deps[k_a][0]
    return ops, deps, root, k_a, k_base


def built(tmp_path: Any) -> tuple:
    store = Store(str(tmp_path / "store1"))
    sandbox = FakeSandbox()
    ops, deps, root, k_a, k_base = chain()
    states = Engine(store, sandbox, snapshotter=Snapshotter(store, "copy")).run(ops, deps, [root])
    assert len(sandbox.runs) == 2
    return store, ops, deps, root, k_a, k_base, states


def fresh_engine(tmp_path: Any, name: str, *sources: Any) -> tuple:
    store = Store(str(tmp_path / name))
    sandbox = FakeSandbox()
    return store, sandbox, Engine(store, sandbox, snapshotter=Snapshotter(store, "copy"),
                                  cache_sources=list(sources))


# -- the engine looks top-down ---------------------------------------------------


def test_a_cached_root_needs_none_of_its_inputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, ops, deps, root, k_a, k_base, states = built(tmp_path)
    dest = str(tmp_path / "cache")
    export_local(store, [root, k_a, k_base], dest)
    fresh, sandbox, eng = fresh_engine(tmp_path, "store2", LocalCacheSource(dest))
    got = eng.run(ops, deps, [root])
    assert sandbox.runs == [] and eng.executed == {}
    assert got[root].layers == states[root].layers and got[root].cached
    # lazy: the inputs' records were never fetched (their result is not needed)
    assert fresh.get_record(k_a) is None and fresh.get_record(k_base) is None
    assert set(got) == {root}


def test_a_corrupt_root_record_falls_back_to_its_inputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, ops, deps, root, k_a, k_base, states = built(tmp_path)
    dest = str(tmp_path / "cache")
    export_local(store, [root, k_a, k_base], dest)
    idx = read_local_index(dest)
    top = idx.records[root].layers[-1]  # the layer only the root has
    path = os.path.join(dest, "blobs", "sha256", top.digest.split(":")[1])
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    fresh, sandbox, eng = fresh_engine(tmp_path, "store2", LocalCacheSource(dest))
    got = eng.run(ops, deps, [root])
    assert sandbox.runs == [("b", "hello")]  # only the step whose record broke
    assert got[root].layers == states[root].layers  # and the same result
    assert fresh.get_record(k_base) is None  # RUN a's record was enough


def test_a_no_cache_filter_step_still_runs_under_a_cached_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, ops, deps, root, k_a, _k_base, _states = built(tmp_path)
    sandbox = FakeSandbox()
    eng = Engine(store, sandbox, snapshotter=Snapshotter(store, "copy"))
    eng.run(ops, deps, [root], no_cache_keys=[k_a])
    # and so does every step built on it (its cached record holds the old layers)
    assert sandbox.runs == [("a", "hello"), ("b", "hello")]


def test_the_store_alone_is_looked_up_top_down_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, ops, deps, root, k_a, _k_base, states = built(tmp_path)
    store.drop_record(k_a)  # pruned: the root's record still restores the image
    sandbox = FakeSandbox()
    eng = Engine(store, sandbox, snapshotter=Snapshotter(store, "copy"))
    assert eng.run(ops, deps, [root])[root].layers == states[root].layers
    assert sandbox.runs == []


# -- re-exporting what was imported ----------------------------------------------


def test_reexport_keeps_the_records_the_run_did_not_need(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, ops, deps, root, k_a, k_base, _states = built(tmp_path)
    first = str(tmp_path / "cache1")
    export_local(store, [root, k_a, k_base], first)
    src = LocalCacheSource(first)
    fresh, _sandbox, eng = fresh_engine(tmp_path, "store2", src)
    eng.run(ops, deps, [root])
    assert fresh.get_record(k_a) is None
    # mode=max from this run: RUN a comes from the imported cache, blob copied as is
    g = SimpleNamespace(targets={"t": None}, exports={"e": SimpleNamespace(target="t", root=root)},
                        nodes={k: SimpleNamespace(deps=deps[k], op=ops[k]) for k in ops},
                        target_nodes=lambda name: set(ops))
    targets = {"t": SimpleNamespace(cache_to=["type=local,dest=cache2,mode=max"])}
    (_line,) = export_caches(g, targets, fresh, str(tmp_path), sources=[src])
    second = read_local_index(str(tmp_path / "cache2"))
    assert set(second.records) == {root, k_a, k_base}
    assert second.records[k_a] == read_local_index(first).records[k_a]
    # and a third runner with a changed last step hits RUN a from it
    ops2, deps2, roots2 = graph(run_step("c", ops[k_a]))
    _third, sandbox3, eng3 = fresh_engine(tmp_path, "store3", LocalCacheSource(str(tmp_path / "cache2")))
    eng3.run(ops2, deps2, roots2)
    assert sandbox3.runs == [("c", "hello")]


def test_reexport_leaves_out_a_record_whose_blob_is_gone(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    store, _ops, _deps, _root, k_a, _k_base, _states = built(tmp_path)
    first = str(tmp_path / "cache1")
    export_local(store, [k_a], first)
    idx = read_local_index(first)
    for la in idx.records[k_a].layers:
        os.unlink(os.path.join(first, "blobs", "sha256", la.digest.split(":")[1]))
    empty = Store(str(tmp_path / "empty"))
    src = LocalCacheSource(first)
    with caplog.at_level(logging.WARNING, logger="bakery.cache"):
        res = export_local(empty, [k_a], str(tmp_path / "cache2"),
                           fallback=lambda k: src.index().get(k),
                           copy_from=lambda la, blobs: src.copy_blob(la, blobs))
    assert res.records == 0 and "not exported" in caplog.text


# -- mode=min ---------------------------------------------------------------------


def test_result_chain_is_the_final_stage_not_the_build_stage() -> None:
    base, build, out_copy, final = sha(b"base"), sha(b"build"), sha(b"copy"), sha(b"final")
    l1, l2, l3, l4 = sha(b"l1"), sha(b"l2"), sha(b"l3"), sha(b"l4")
    layers: Dict[str, Optional[Sequence[str]]] = {
        base: [l1], build: [l1, l2], out_copy: [l1, l3], final: [l1, l3, l4]}
    nodes = {base: SimpleNamespace(deps=()), build: SimpleNamespace(deps=(base,)),
             out_copy: SimpleNamespace(deps=(base, build)), final: SimpleNamespace(deps=(out_copy,))}
    g = SimpleNamespace(nodes=nodes)
    assert result_chain(g, final, layers.get) == {base, out_copy, final}
    assert result_chain(g, build, layers.get) == {base, build}
    layers[out_copy] = None  # no record (never built, not imported): left out, walk goes on
    assert result_chain(g, final, layers.get) == {base, final}
    assert result_chain(g, sha(b"unknown"), layers.get) == set()


def test_mode_min_exports_the_image_chain_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    base = store.put_bytes(b"base" * 100)
    tool = store.put_bytes(b"tool" * 100)
    app = store.put_bytes(b"app" * 100)
    k = {n: sha(n.encode()) for n in ("base", "build", "final")}
    store.put_record(k["base"], {"layers": [base], "config": {"os": "linux"}}, blobs=[base])
    store.put_record(k["build"], {"layers": [base, tool], "config": None}, blobs=[base, tool])
    store.put_record(k["final"], {"layers": [base, app], "config": None}, blobs=[base, app])
    g = SimpleNamespace(
        targets={"app": None}, exports={"e": SimpleNamespace(target="app", root=k["final"])},
        nodes={k["base"]: SimpleNamespace(deps=()), k["build"]: SimpleNamespace(deps=(k["base"],)),
               k["final"]: SimpleNamespace(deps=(k["base"], k["build"]))},
        target_nodes=lambda name: set(k.values()))
    export_caches(g, {"app": SimpleNamespace(cache_to=["type=local,dest=min"])}, store, str(tmp_path))
    export_caches(g, {"app": SimpleNamespace(cache_to=["type=local,dest=max,mode=max"])}, store,
                  str(tmp_path))
    mn = read_local_index(str(tmp_path / "min"))
    assert set(mn.records) == {k["base"], k["final"]}
    assert {la.diff_id for la in mn.layers()} == {base, app}  # the build stage's layer stays out
    assert set(read_local_index(str(tmp_path / "max")).records) == set(k.values())


# -- cache mounts -------------------------------------------------------------------


def cached_run(store: Store, cid: str) -> Exec:
    from bakery.graph.ops import Mount

    return Exec(Ref(ScratchSource()), ("x",), (), "/", AMD64,
                mounts=(Mount(type="cache", target="/var/cache/apt", cache_id=cid),))


def test_index_with_mounts_round_trips() -> None:
    la = LayerEntry(sha(b"u"), sha(b"c"), 3)
    idx = CacheIndex({sha(b"k"): CacheRecord(())}, {"apt": la})
    back = CacheIndex.from_bytes(idx.to_bytes())
    assert back.mounts == {"apt": la} and la in back.layers()
    assert b"mounts" not in CacheIndex({sha(b"k"): CacheRecord(())}).to_bytes()


def test_cache_mount_contents_travel_when_asked(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "store"))
    mount = store.cache_mount("apt")
    os.makedirs(os.path.join(mount, "archives"))
    with open(os.path.join(mount, "archives", "pkg.deb"), "w") as fh:
        fh.write("first run\n")
    run = cached_run(store, "apt")
    g = SimpleNamespace(targets={"t": None}, exports={}, nodes={sha(b"r"): SimpleNamespace(deps=(), op=run)},
                        target_nodes=lambda name: {sha(b"r")})
    lines = export_caches(g, {"t": SimpleNamespace(cache_to=["type=local,dest=c,mode=max"])},
                          store, str(tmp_path))
    assert read_local_index(str(tmp_path / "c")).mounts == {}  # opt-in only
    lines = export_caches(g, {"t": SimpleNamespace(cache_to=["type=local,dest=c,cache-mounts=true"])},
                          store, str(tmp_path))
    assert "1 cache mounts" in lines[0]
    assert set(read_local_index(str(tmp_path / "c")).mounts) == {"apt"}

    fresh, _, eng = fresh_engine(tmp_path, "fresh", LocalCacheSource(str(tmp_path / "c")))
    eng._restore_mount("apt", fresh.cache_mount("apt"))
    with open(os.path.join(fresh.cache_mount("apt"), "archives", "pkg.deb")) as fh:
        assert fh.read() == "first run\n"
    # a mount that has contents is never overwritten
    other, _, eng2 = fresh_engine(tmp_path, "other", LocalCacheSource(str(tmp_path / "c")))
    with open(os.path.join(other.cache_mount("apt"), "mine"), "w") as fh:
        fh.write("local\n")
    eng2._restore_mount("apt", other.cache_mount("apt"))
    assert os.listdir(other.cache_mount("apt")) == ["mine"]
    # a broken blob: a warning, the mount starts empty
    la = read_local_index(str(tmp_path / "c")).mounts["apt"]
    path = os.path.join(str(tmp_path / "c"), "blobs", "sha256", la.digest.split(":")[1])
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(la.size // 2)
        fh.write(b"\0garbage\0")
    broken, _, eng3 = fresh_engine(tmp_path, "broken", LocalCacheSource(str(tmp_path / "c")))
    with caplog.at_level(logging.WARNING, logger="bakery.cache"):
        eng3._restore_mount("apt", broken.cache_mount("apt"))
    assert os.listdir(broken.cache_mount("apt")) == []
    assert "cannot restore cache mount apt" in caplog.text


def test_restore_runs_before_the_step_that_uses_the_mount(tmp_path) -> None:  # type: ignore[no-untyped-def]
    seen: List[List[str]] = []

    class Source:
        def fetch(self, key: str, store: Store) -> bool:
            return False

        def restore_mount(self, cache_id: str, store: Store, path: str) -> bool:
            with open(os.path.join(path, "restored"), "w") as fh:
                fh.write(cache_id)
            return True

    class Sandbox(FakeSandbox):
        def run(self, spec: Any, stdout_cb: Any = None, cancel: Any = None) -> Any:
            seen.append(sorted(os.listdir(spec.mounts[0].source)))
            return super().run(spec, stdout_cb, cancel)

    store = Store(str(tmp_path / "store"))
    ops, deps, roots = graph(cached_run(store, "apt"))
    Engine(store, Sandbox(), snapshotter=Snapshotter(store, "copy"), cache_sources=[Source()]).run(
        ops, deps, roots)
    assert seen == [["restored"]]


@pytest.mark.parametrize("compression", ["zstd", "uncompressed", "gzip"])
def test_compression_of_new_blobs(tmp_path, compression: str) -> None:  # type: ignore[no-untyped-def]
    from bakery.oci.media import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD

    store, ops, deps, root, _, _, states = built(tmp_path)
    g = SimpleNamespace(targets={"t": None}, exports={"e": SimpleNamespace(target="t", root=root)},
                        nodes={k: SimpleNamespace(deps=deps[k], op=ops[k]) for k in ops},
                        target_nodes=lambda name: set(ops))
    attrs = f"type=local,dest=c,mode=max,compression={compression},compression-level=3"
    export_caches(g, {"t": SimpleNamespace(cache_to=[attrs])}, store, str(tmp_path))
    idx = read_local_index(str(tmp_path / "c"))
    want = {"zstd": OCI_LAYER_ZSTD, "uncompressed": OCI_LAYER, "gzip": OCI_LAYER_GZIP}[compression]
    assert {la.media_type for la in idx.layers()} == {want}
    _, sandbox, eng = fresh_engine(tmp_path, "fresh", LocalCacheSource(str(tmp_path / "c")))
    assert eng.run(ops, deps, [root])[root].layers == states[root].layers and sandbox.runs == []


def test_bad_compression_attributes_are_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.cache import plan_exports
    from bakery.errors import BakeryError

    g = SimpleNamespace(targets={"t": None}, exports={}, target_nodes=lambda name: set())
    with pytest.raises(BakeryError, match="compression=estargz is not supported"):
        plan_exports(g, {"t": SimpleNamespace(cache_to=["type=local,dest=c,compression=estargz"])},
                     str(tmp_path))
    with pytest.raises(BakeryError, match="compression-level=high is not a number"):
        plan_exports(g, {"t": SimpleNamespace(cache_to=["type=local,dest=c,compression-level=high"])},
                     str(tmp_path))
    notes: List[str] = []
    g.targets = {"t": None, "u": None}
    (plan,) = plan_exports(g, {"t": SimpleNamespace(cache_to=["type=local,dest=c,compression=zstd"]),
                               "u": SimpleNamespace(cache_to=["type=local,dest=c"])},
                           str(tmp_path), notes.append)
    assert plan.compression == "zstd" and any("shared with t" in n for n in notes)


def test_ignore_error_false_makes_a_broken_import_fail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.cache import cache_sources
    from bakery.errors import BakeryError

    store, ops, deps, root, k_a, k_base, _ = built(tmp_path)
    dest = str(tmp_path / "cache")
    export_local(store, [root, k_a, k_base], dest)
    (lax,) = cache_sources([f"type=local,src={dest}"], str(tmp_path))
    (strict,) = cache_sources([f"type=local,src={dest},ignore-error=false"], str(tmp_path))
    assert (lax.strict, strict.strict) == (False, True)
    for la in read_local_index(dest).records[root].layers:
        os.unlink(os.path.join(dest, "blobs", "sha256", la.digest.split(":")[1]))
    # the default: a warning, the steps are built
    _, sandbox, eng = fresh_engine(tmp_path, "lax", lax)
    eng.run(ops, deps, [root])
    assert len(sandbox.runs) == 2
    # ignore-error=false: the build fails and says why
    _, sandbox, eng = fresh_engine(tmp_path, "strict", strict)
    with pytest.raises(BakeryError, match=r"cache import of step .* is missing") as e:
        eng.run(ops, deps, [root])
    assert "ignore-error=false" in (e.value.hint or "")
    assert sandbox.runs == []
    # a cache that cannot be read at all
    (gone,) = cache_sources([f"type=local,src={tmp_path / 'nope'},ignore-error=false"], str(tmp_path))
    with pytest.raises(BakeryError, match="cannot read the cache"):
        gone.fetch(root, Store(str(tmp_path / "x")))


# -- type=inline -----------------------------------------------------------------


def test_inline_records_point_at_the_image_layers() -> None:
    from bakery.cache.inline import INLINE_KEY, index_from_config, inline_records
    from bakery.oci.image import Layer

    l1 = Layer(sha(b"c1"), 10, sha(b"u1"), "gzip")
    l2 = Layer(sha(b"c2"), 20, sha(b"u2"), "gzip")
    chain = {sha(b"from"): [l1.diff_id], sha(b"run"): [l1.diff_id, l2.diff_id],
             sha(b"elsewhere"): [sha(b"not in the image")]}
    idx = inline_records(chain, {sha(b"from"): {"os": "linux"}}, [l1, l2])
    assert set(idx.records) == {sha(b"from"), sha(b"run")}
    assert idx.records[sha(b"run")].layers[1] == LayerEntry(l2.diff_id, l2.digest, 20)
    assert idx.records[sha(b"from")].config == {"os": "linux"}
    import json as _json

    config = {"architecture": "amd64", INLINE_KEY: _json.loads(idx.to_bytes())}
    assert index_from_config(config).records == idx.records
    assert len(index_from_config({"architecture": "amd64"})) == 0
    from bakery.errors import BakeryError

    with pytest.raises(BakeryError, match="not a bakery cache index"):
        index_from_config({INLINE_KEY: "garbage"})


def test_inline_is_not_an_export_destination(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.cache import plan_exports

    notes: List[str] = []
    g = SimpleNamespace(targets={"t": None}, exports={}, target_nodes=lambda name: set())
    assert plan_exports(g, {"t": SimpleNamespace(cache_to=["type=inline"])}, str(tmp_path), notes.append) == []
    assert notes == []


def test_steps_above_an_unpinned_source_are_not_short_cut(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.graph.ops import HttpSource

    store = Store(str(tmp_path / "store"))
    blob = store.put_bytes(b"layer")
    ops: Dict[str, Any] = {sha(b"url"): HttpSource("http://127.0.0.1:1/x"),
                           sha(b"url-checked"): HttpSource("http://127.0.0.1:1/x", checksum=sha(b"x")),
                           sha(b"run"): object(), sha(b"run2"): object()}
    deps = {sha(b"url"): (), sha(b"url-checked"): (), sha(b"run"): (sha(b"url"),),
            sha(b"run2"): (sha(b"url-checked"),)}
    for k in (sha(b"run"), sha(b"run2")):  # e.g. left by an older bakery under the graph key
        store.put_record(k, {"layers": [blob], "config": None}, blobs=[blob])
    eng = Engine(store, FakeSandbox())
    hits, misses = eng._short_cut(ops, deps, [sha(b"run"), sha(b"run2")], set())
    # the URL's content is only known once fetched: its user's key is pinned at run time
    assert set(hits) == {sha(b"run2")} and misses == set()
