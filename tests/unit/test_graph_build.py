"""The merged build graph: sharing, links, cycles, depends_on, requests.

The frontend's ``convert`` is replaced by :func:`mini_convert`, a tiny
Dockerfile converter (FROM, RUN, COPY [--from], ARG substitution) that builds
ops by hand, so these tests do not depend on the real frontend.
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Tuple

import pytest

from bakery.bakefile.model import Group, Target
from bakery.dockerfile.request import BuildRequest
from bakery.errors import BakeryError
from bakery.graph.build import BuildGraph, build_graph
from bakery.graph.ops import (
    Copy,
    Exec,
    Export,
    FileOp,
    ImageConfig,
    ImageSource,
    LocalSource,
    Platform,
    Ref,
    ScratchSource,
)
from bakery.graph.platforms import normalize_image_ref, parse_platform

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


def mini_convert(request: BuildRequest, image_config: object = None) -> Export:
    """FROM/RUN/COPY Dockerfiles to ops (enough for graph tests)."""
    args = dict(request.build_args)

    def sub(s: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), s)

    context = Ref(LocalSource("context", request.context, exclude=tuple(request.dockerignore)))
    stages: Dict[str, Ref] = {}
    state: Optional[Ref] = None
    name = ""
    for raw in request.dockerfile.splitlines():
        line = sub(raw.strip())
        if not line or line.startswith("#") or line.upper().startswith("ARG "):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            parts = rest.split()
            ref = parts[0]
            name = parts[2] if len(parts) == 3 else str(len(stages))
            if ref in stages:
                state = stages[ref]
            elif ref in request.named_contexts:
                nc = request.named_contexts[ref]
                if isinstance(nc, Ref):
                    state = nc
                elif isinstance(nc, ImageSource):
                    state = Ref(nc)
                else:
                    state = Ref(LocalSource(ref, nc))
            elif ref == "scratch":
                state = Ref(ScratchSource())
            else:
                state = Ref(ImageSource(normalize_image_ref(ref), request.platform))
        elif word == "RUN":
            assert state is not None
            state = Ref(Exec(
                rootfs=state, args=("/bin/sh", "-c", rest), env=("PATH=/usr/bin:/bin",),
                cwd="/", platform=request.platform,
                description=f"[{request.target} {name}] RUN {rest}",
            ))
        elif word == "COPY":
            assert state is not None
            parts = rest.split()
            source = context
            if parts[0].startswith("--from="):
                frm = parts.pop(0)[len("--from="):]
                if frm in stages:
                    source = stages[frm]
                else:
                    nc = request.named_contexts[frm]
                    source = nc if isinstance(nc, Ref) else Ref(LocalSource(frm, str(nc)))
            state = Ref(FileOp(
                base=state, actions=(Copy(source, tuple(parts[:-1]), parts[-1]),),
                platform=request.platform, description=f"[{request.target} {name}] COPY {rest}",
            ))
        else:
            raise AssertionError(f"mini_convert: unsupported {word}")
        assert state is not None
        stages[name] = state
    assert state is not None
    final = stages[request.stage] if request.stage else state
    return Export(request.target, request.platform, final, ImageConfig(request.platform))


class Recorder:
    """A convert that records its requests."""

    def __init__(self) -> None:
        self.requests: List[BuildRequest] = []

    def __call__(self, request: BuildRequest, image_config: object) -> Export:
        self.requests.append(request)
        return mini_convert(request, image_config)


def fake_digest(source: LocalSource, patterns: Tuple[str, ...]) -> str:
    return "sha256:" + "0" * 56 + format(len(patterns), "08x")


def graph(targets: List[Target], requested: Optional[List[str]] = None, cwd: str = ".",
          **kw: object) -> BuildGraph:
    by_name = {t.name: t for t in targets}
    kw.setdefault("file_digest", fake_digest)
    kw.setdefault("build_platform", AMD64)
    return build_graph(by_name, requested or [t.name for t in targets], cwd,
                       convert=kw.pop("convert", mini_convert), **kw)  # type: ignore[arg-type]


# -- sharing ------------------------------------------------------------------------


def test_ten_targets_from_one_base_share_their_first_steps(tmp_path: object) -> None:
    targets = [
        Target(f"svc{i}", context=".", dockerfile_inline=(
            "FROM alpine:3.19\n"
            "RUN apk add --no-cache curl\n"
            "COPY shared.txt /shared.txt\n"
            f"RUN echo svc{i} > /name\n"
        ))
        for i in range(10)
    ]
    g = graph(targets, cwd=str(tmp_path))
    # image, context, apk, copy shared once; ten different last steps
    assert g.total_steps == 4 + 10
    assert g.shared_steps == 4
    kinds = sorted(g.nodes[k].kind for k in g.nodes if g.is_shared(k))
    assert kinds == ["exec", "file", "image", "local"]
    for k in g.nodes:
        if g.is_shared(k):
            assert g.user_labels(k) == sorted(f"svc{i}" for i in range(10))
    assert len(g.exports) == 10
    # execution order: shared steps first, then the per-target ones
    order = g.order()
    assert {g.nodes[k].kind for k in order[:2]} == {"image", "local"}
    assert all(g.is_shared(k) for k in order[:4])
    assert len(g.target_nodes("svc3")) == 5


def test_a_matrix_of_variants_builds_the_builder_stage_once(tmp_path: object) -> None:
    d = str(tmp_path)
    with open(os.path.join(d, "Dockerfile"), "w") as fh:
        fh.write(
            "ARG VARIANT\n"
            "FROM golang:1.22 AS builder\n"
            "COPY src /src\n"
            "RUN go build -o /out/app /src\n"
            "FROM alpine:3.19 AS runtime\n"
            "COPY --from=builder /out/app /app\n"
            "RUN echo ${VARIANT} > /variant\n"
        )
    variants = ["slim", "debug", "fips"]
    targets = [Target(f"app-{v}", context=".", dockerfile="Dockerfile", args={"VARIANT": v})
               for v in variants]
    g = graph(targets, cwd=d)
    builds = [k for k, n in g.nodes.items() if n.kind == "exec" and "go build" in n.description]
    assert len(builds) == 1
    assert g.user_labels(builds[0]) == sorted(f"app-{v}" for v in variants)
    runs = [k for k, n in g.nodes.items() if n.kind == "exec" and "/variant" in n.description]
    assert len(runs) == 3
    # golang, alpine, context, copy src, go build, copy --from shared
    assert g.shared_steps == 6
    assert g.total_steps == 6 + 3


def test_equal_work_on_two_platforms_is_two_nodes_but_sources_are_shared(tmp_path: object) -> None:
    t = Target("app", context=".", platforms=["linux/amd64", "linux/arm64"],
               dockerfile_inline="FROM alpine\nCOPY a /a\n")
    g = graph([t], cwd=str(tmp_path))
    assert g.targets["app"].platforms == ("linux/amd64", "linux/arm64")
    assert len(g.exports) == 2
    local = [k for k, n in g.nodes.items() if n.kind == "local"]
    assert len(local) == 1 and g.user_labels(local[0]) == ["app@linux/amd64", "app@linux/arm64"]
    images = [n for n in g.nodes.values() if n.kind == "image"]
    assert sorted(str(n.op.platform) for n in images) == ["linux/amd64", "linux/arm64"]  # type: ignore[union-attr]


def test_comma_separated_platforms_build_each_platform(tmp_path: object) -> None:
    # buildx: `--set '*.platform=linux/amd64,linux/arm64'` prints one string
    # but builds two platforms (platformutil.Parse splits every entry)
    t = Target("app", context=".", platforms=["linux/amd64,linux/arm64", "linux/arm64", " "],
               dockerfile_inline="FROM alpine\n")
    assert t.build_platforms == ["linux/amd64", "linux/arm64"]
    assert Target("x").build_platforms is None
    g = graph([t], cwd=str(tmp_path))
    assert g.targets["app"].platforms == ("linux/amd64", "linux/arm64")
    assert sorted(str(e.platform) for e in g.exports.values()) == ["linux/amd64", "linux/arm64"]


@pytest.mark.parametrize("platforms", [None, [], ["local"]])
def test_no_platform_or_local_means_the_build_platform(tmp_path: object, platforms: object) -> None:
    t = Target("app", context=".", platforms=platforms,  # type: ignore[arg-type]
               dockerfile_inline="FROM alpine\n")
    rec = Recorder()
    g = graph([t], cwd=str(tmp_path), convert=rec, build_platform=ARM64)
    assert [r.platform for r in rec.requests] == [ARM64]
    assert rec.requests[0].build_platform == ARM64
    assert g.targets["app"].platforms == ("linux/arm64",)


def test_graph_is_deterministic_and_serialisable(tmp_path: object) -> None:
    targets = [Target(n, context=".", dockerfile_inline=f"FROM alpine\nRUN echo {n}\n")
               for n in ("b", "a", "c")]
    g1 = graph(targets, cwd=str(tmp_path))
    g2 = graph(targets, cwd=str(tmp_path))
    assert g1.order() == g2.order()
    assert json.dumps(g1.to_json()) == json.dumps(g2.to_json())
    data = json.loads(json.dumps(g1.to_json()))
    assert data["counts"] == {"targets": 3, "exports": 3, "steps": 4, "shared": 1}
    assert [s["step"] for s in data["steps"]] == [1, 2, 3, 4]
    # stable tie-break: targets in request order
    assert [g1.nodes[k].description.split()[-1] for k in g1.order()[1:]] == ["b", "a", "c"]


# -- requests -------------------------------------------------------------------------


def test_request_fields_come_from_the_target(tmp_path: object) -> None:
    d = str(tmp_path)
    os.makedirs(os.path.join(d, "app"))
    with open(os.path.join(d, "app", "Dockerfile"), "w") as fh:
        fh.write("FROM alpine\n")
    with open(os.path.join(d, "app", ".dockerignore"), "w") as fh:
        fh.write("# comment\nnode_modules\n!node_modules/keep\n")
    t = Target("app", context="app", dockerfile="Dockerfile", target="final",
               args={"A": "1", "UNSET": None}, labels={"l": "v"}, network="none",
               extra_hosts={"db": "10.0.0.2"}, no_cache_filter=["final"])
    rec = Recorder()
    with pytest.raises(KeyError):  # mini_convert: stage "final" does not exist
        graph([t], cwd=d, convert=rec)
    r = rec.requests[0]
    assert r.context == os.path.join(d, "app")
    assert r.dockerfile == "FROM alpine\n"
    assert r.dockerfile_name == os.path.join("app", "Dockerfile")
    assert r.dockerignore == ("node_modules", "!node_modules/keep")
    assert dict(r.build_args) == {"A": "1"}
    assert r.stage == "final"
    assert dict(r.labels) == {"l": "v"}
    assert r.network == "none"
    assert r.extra_hosts == ("db=10.0.0.2",)
    assert r.no_cache_filter == ("final",)


def test_the_dockerfile_specific_dockerignore_wins(tmp_path: object) -> None:
    d = str(tmp_path)
    os.makedirs(os.path.join(d, "docker"))
    with open(os.path.join(d, "docker", "app.Dockerfile"), "w") as fh:
        fh.write("FROM alpine\n")
    with open(os.path.join(d, "docker", "app.Dockerfile.dockerignore"), "w") as fh:
        fh.write("specific\n")
    with open(os.path.join(d, ".dockerignore"), "w") as fh:
        fh.write("generic\n")
    rec = Recorder()
    graph([Target("app", context=".", dockerfile="docker/app.Dockerfile"),
           Target("inline", context=".", dockerfile_inline="FROM alpine\n")],
          cwd=d, convert=rec)
    assert rec.requests[0].dockerignore == ("specific",)
    assert rec.requests[1].dockerignore == ("generic",)


def test_cwd_dockerfile_and_missing_dockerfile(tmp_path: object) -> None:
    d = str(tmp_path)
    os.makedirs(os.path.join(d, "ctx"))
    with open(os.path.join(d, "top.Dockerfile"), "w") as fh:
        fh.write("FROM alpine\n")
    rec = Recorder()
    graph([Target("app", context="ctx", dockerfile="cwd://top.Dockerfile")], cwd=d, convert=rec)
    assert rec.requests[0].dockerfile_name == "top.Dockerfile"
    with pytest.raises(BakeryError, match="failed to read dockerfile"):
        graph([Target("app", context="ctx", dockerfile="Dockerfile")], cwd=d)


def test_named_contexts(tmp_path: object) -> None:
    d = str(tmp_path)
    os.makedirs(os.path.join(d, "vendor"))
    t = Target("app", context=".", dockerfile_inline="FROM base\nCOPY --from=src a /a\n",
               contexts={"base": "docker-image://alpine:3.19", "src": "vendor"},
               platforms=["linux/arm64"])
    rec = Recorder()
    g = graph([t], cwd=d, convert=rec)
    nc = rec.requests[0].named_contexts
    assert nc["base"] == ImageSource("docker.io/library/alpine:3.19", ARM64)
    assert nc["src"] == os.path.join(d, "vendor")
    assert sorted(n.kind for n in g.nodes.values()) == ["file", "image", "local"]


def test_unknown_target_has_a_hint(tmp_path: object) -> None:
    with pytest.raises(BakeryError) as e:
        graph([Target("app", context=".", dockerfile_inline="FROM alpine\n")], ["ap"],
              cwd=str(tmp_path))
    assert "failed to find target ap" in str(e.value)
    assert e.value.hint == 'did you mean "app"?'


def test_groups_are_expanded(tmp_path: object) -> None:
    ts = [Target(n, context=".", dockerfile_inline="FROM alpine\n") for n in ("a", "b", "c")]
    g = graph(ts, ["all", "c"], cwd=str(tmp_path),
              groups={"all": Group("all", ("a", "inner")), "inner": ("b",)})
    assert list(g.targets) == ["a", "b", "c"]
    assert g.groups == {"all": ("a", "b")}
    assert g.matrix_targets() == ["a", "b", "c"]


# -- target: links ------------------------------------------------------------------


def test_target_links_use_the_linked_rootfs_per_platform(tmp_path: object) -> None:
    base = Target("base", context=".", dockerfile_inline="FROM alpine\nRUN make base\n",
                  linked=True)
    app = Target("app", context=".", dockerfile_inline="FROM base\nRUN make app\n",
                 contexts={"base": "target:base"}, platforms=["linux/amd64", "linux/arm64"])
    g = graph([app, base], ["app"], cwd=str(tmp_path))
    # base has no platforms: built for each platform app needs, before app
    assert [e for e in g.exports] == [
        "export:base@linux/amd64", "export:app@linux/amd64",
        "export:base@linux/arm64", "export:app@linux/arm64",
    ]
    assert g.targets["base"].linked and not g.targets["base"].requested
    for plat in ("linux/amd64", "linux/arm64"):
        base_root = g.exports[f"export:base@{plat}"].root
        app_root = g.nodes[g.exports[f"export:app@{plat}"].root]
        assert app_root.deps == (base_root,)
        assert g.nodes[base_root].users == {("base", plat), ("app", plat)}
    assert g.matrix_targets() == ["app"]


def test_a_single_platform_link_serves_every_platform(tmp_path: object) -> None:
    base = Target("base", context=".", dockerfile_inline="FROM alpine\n",
                  platforms=["linux/amd64"])
    app = Target("app", context=".", dockerfile_inline="FROM base\nRUN x\n",
                 contexts={"base": "target:base"}, platforms=["linux/amd64", "linux/arm64"])
    g = graph([app, base], ["app"], cwd=str(tmp_path))
    assert g.targets["base"].platforms == ("linux/amd64",)
    roots = {g.nodes[g.exports[f"export:app@{p}"].root].deps
             for p in ("linux/amd64", "linux/arm64")}
    assert roots == {(g.exports["export:base@linux/amd64"].root,)}


def test_a_link_without_the_platform_is_an_error(tmp_path: object) -> None:
    base = Target("base", context=".", dockerfile_inline="FROM alpine\n",
                  platforms=["linux/amd64", "linux/riscv64"])
    app = Target("app", context=".", dockerfile_inline="FROM base\n",
                 contexts={"base": "target:base"}, platforms=["linux/arm64"])
    with pytest.raises(BakeryError, match="base can't be used by app on linux/arm64"):
        graph([app, base], ["app"], cwd=str(tmp_path))


@pytest.mark.parametrize("kind", ["contexts", "depends_on", "mixed"])
def test_cycles_are_errors_naming_the_cycle(tmp_path: object, kind: str) -> None:
    def link(other: str, how: str) -> Dict[str, object]:
        if how == "contexts":
            return {"contexts": {"x": f"target:{other}"}}
        return {"depends_on": [other]}

    hows = {"contexts": ("contexts",) * 3, "depends_on": ("depends_on",) * 3,
            "mixed": ("contexts", "depends_on", "contexts")}[kind]
    ts = [
        Target("a", context=".", dockerfile_inline="FROM alpine\n", **link("b", hows[0])),  # type: ignore[arg-type]
        Target("b", context=".", dockerfile_inline="FROM alpine\n", **link("c", hows[1])),  # type: ignore[arg-type]
        Target("c", context=".", dockerfile_inline="FROM alpine\n", **link("a", hows[2])),  # type: ignore[arg-type]
    ]
    with pytest.raises(BakeryError, match=r"cycle between targets: a -> b -> c -> a"):
        graph(ts, ["a"], cwd=str(tmp_path))


def test_a_target_linking_itself_is_a_cycle(tmp_path: object) -> None:
    t = Target("a", context=".", dockerfile_inline="FROM alpine\n", contexts={"x": "target:a"})
    with pytest.raises(BakeryError, match="a -> a"):
        graph([t], cwd=str(tmp_path))


# -- depends_on -------------------------------------------------------------------------


def test_depends_on_orders_exports_and_dependent_only_steps(tmp_path: object) -> None:
    ts = [
        Target("tests", context=".", depends_on=["app"],
               dockerfile_inline="FROM alpine\nRUN apk add curl\nRUN run-tests\n"),
        Target("app", context=".", dockerfile_inline="FROM alpine\nRUN apk add curl\nRUN build\n"),
    ]
    g = graph(ts, ["tests"], cwd=str(tmp_path))
    # app is built because tests depends on it, first
    assert list(g.targets) == ["app", "tests"]
    assert g.targets["app"].requested is False
    assert g.exports["export:tests@linux/amd64"].after == ("export:app@linux/amd64",)
    (run_tests,) = [k for k, n in g.nodes.items() if "run-tests" in n.description]
    (curl,) = [k for k, n in g.nodes.items() if "apk add" in n.description]
    assert g.nodes[run_tests].after == ("export:app@linux/amd64",)
    assert g.nodes[curl].after == ()  # shared with app: not delayed
    order = g.order(include_exports=True)
    assert order.index("export:app@linux/amd64") < order.index(run_tests)
    assert order.index(run_tests) < order.index("export:tests@linux/amd64")
    assert g.matrix_targets() == ["tests"]


def test_depends_on_an_unknown_target(tmp_path: object) -> None:
    t = Target("a", context=".", dockerfile_inline="FROM alpine\n", depends_on=["nope"])
    with pytest.raises(BakeryError, match=r"failed to find target nope \(needed by a\)"):
        graph([t], cwd=str(tmp_path))


# -- real files -------------------------------------------------------------------------


def test_real_context_hashing_and_missing_copy_source(tmp_path: object) -> None:
    from bakery.graph.context import ContextHasher

    d = str(tmp_path)
    with open(os.path.join(d, "a.txt"), "w") as fh:
        fh.write("one")
    t = Target("app", context=".", dockerfile_inline="FROM alpine\nCOPY a.txt /a\n")
    h = ContextHasher(None)
    k1 = graph([t], cwd=d, file_digest=h).exports["export:app@linux/amd64"].root
    with open(os.path.join(d, "a.txt"), "w") as fh:
        fh.write("two")
    k2 = graph([t], cwd=d, file_digest=ContextHasher(None)).exports["export:app@linux/amd64"].root
    assert k1 != k2
    bad = Target("app", context=".", dockerfile_inline="FROM alpine\nCOPY missing.txt /a\n")
    with pytest.raises(BakeryError, match=re.escape('failed to compute cache key: "/missing.txt": not found')):
        graph([bad], cwd=d, file_digest=ContextHasher(None))


def test_default_hasher_persists_its_metadata(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    d = str(tmp_path)
    cache = os.path.join(d, "cache")
    monkeypatch.setenv("BAKERY_CACHE_DIR", cache)
    os.makedirs(os.path.join(d, "ctx"))
    with open(os.path.join(d, "ctx", "a.txt"), "w") as fh:
        fh.write("x")
    t = Target("app", context="ctx", dockerfile_inline="FROM alpine\nCOPY a.txt /a\n")
    build_graph({"app": t}, ["app"], d, convert=mini_convert, build_platform=AMD64)
    assert os.path.isfile(os.path.join(cache, "context", "metadata.json"))


def test_parse_platform_normal_forms() -> None:
    assert parse_platform("linux/x86_64") == AMD64
    assert parse_platform("linux/arm64/v8") == ARM64
    assert parse_platform("linux/aarch64") == ARM64
    assert str(parse_platform("linux/arm")) == "linux/arm/v7"
    assert str(parse_platform("linux/arm/7")) == "linux/arm/v7"
    assert parse_platform("arm64") == ARM64
    with pytest.raises(BakeryError):
        parse_platform("linux//")
    assert normalize_image_ref("alpine") == "docker.io/library/alpine:latest"
    assert normalize_image_ref("ghcr.io/o/r@sha256:ab") == "ghcr.io/o/r@sha256:ab"
    assert normalize_image_ref("localhost:5000/x") == "localhost:5000/x:latest"
    assert normalize_image_ref("user/x:1") == "docker.io/user/x:1"


def test_with_the_real_frontend(tmp_path: object) -> None:
    convert = pytest.importorskip("bakery.dockerfile.convert").convert
    from bakery.graph.context import ContextHasher

    d = str(tmp_path)
    for name in ("a.txt", "b.txt"):
        with open(os.path.join(d, name), "w") as fh:
            fh.write(name)
    targets = {
        f"svc{i}": Target(f"svc{i}", context=".", dockerfile_inline=(
            "FROM alpine:3.19\nRUN apk add curl\nCOPY a.txt /a.txt\n"
            f"COPY b.txt /b{i}.txt\nRUN echo svc{i} > /name\n"
        ))
        for i in range(10)
    }
    g = build_graph(targets, list(targets), d, convert=convert,
                    file_digest=ContextHasher(None), build_platform=AMD64)
    assert len(g.exports) == 10
    shared = sorted(g.nodes[k].kind for k in g.nodes if g.is_shared(k))
    assert shared == ["exec", "file", "image", "local"]  # image, context, RUN apk, COPY a.txt
    assert g.total_steps == 4 + 10 * 2
