"""Tests for bakery.dockerfile.convert: Dockerfile -> operations + config.

Table-driven checks of BuildKit's conversion rules, plus golden dumps under
``tests/data/dockerfile-convert/<case>/``: ``Dockerfile``, ``request.json``
(the request's arguments and the image configs the callback returns) and
``expected.json`` (the Export as an operation table).  Run with
``UPDATE_GOLDEN=1`` to rewrite the expected files after checking the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import pytest

from bakery.dockerfile.convert import convert, normalize_image_ref, parse_platform, walk
from bakery.dockerfile.request import BuildRequest
from bakery.errors import BakeryError
from bakery.graph.ops import (
    Copy,
    Exec,
    Export,
    FileOp,
    GitSource,
    HttpSource,
    ImageSource,
    LocalSource,
    Merge,
    Mkdir,
    Mkfile,
    Platform,
    Ref,
    ScratchSource,
)

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARMV7 = Platform("linux", "arm", "v7")
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DATA = Path(__file__).resolve().parent.parent / "data" / "dockerfile-convert"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def req(dockerfile: str, **kw: Any) -> BuildRequest:
    kw.setdefault("platform", AMD64)
    kw.setdefault("build_platform", AMD64)
    return BuildRequest(target="t", dockerfile=dockerfile, dockerfile_name="Dockerfile",
                        context="/ctx", **kw)


def conv(dockerfile: str, configs: Optional[Mapping[str, Mapping[str, object]]] = None,
         **kw: Any) -> Export:
    configs = configs or {}
    return convert(req(dockerfile, **kw), lambda img: configs.get(img.ref))


def ops(e: Export) -> List[object]:
    return list(walk(e.rootfs))


def execs(e: Export) -> List[Exec]:
    return [op for op in ops(e) if isinstance(op, Exec)]


def last_exec(e: Export) -> Exec:
    return execs(e)[-1]


def env_of(ex: Exec) -> Dict[str, str]:
    return dict(e.split("=", 1) for e in ex.env)


def images(e: Export) -> List[str]:
    return sorted({op.ref for op in ops(e) if isinstance(op, ImageSource)})


def fail(dockerfile: str, **kw: Any) -> BakeryError:
    with pytest.raises(BakeryError) as info:
        conv(dockerfile, **kw)
    return info.value


# ---------------------------------------------------------------------------
# references and platforms


@pytest.mark.parametrize("ref,expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
    ("ghcr.io/a/b", "ghcr.io/a/b:latest"),
    ("localhost/x", "localhost/x:latest"),
    ("localhost:5000/x:1", "localhost:5000/x:1"),
    ("alpine@sha256:" + "a" * 64, "docker.io/library/alpine@sha256:" + "a" * 64),
    ("alpine:3@sha256:" + "b" * 64, "docker.io/library/alpine:3@sha256:" + "b" * 64),
])
def test_normalize_image_ref(ref: str, expected: str) -> None:
    assert normalize_image_ref(ref) == expected


@pytest.mark.parametrize("ref,message", [
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("a b", "invalid reference format"),
    ("x:", "invalid reference format"),
])
def test_normalize_image_ref_errors(ref: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_image_ref(ref)
    assert str(info.value) == message


@pytest.mark.parametrize("spec,expected", [
    ("linux/amd64", AMD64),
    ("linux/arm64/v8", ARM64),
    ("linux/aarch64", ARM64),
    ("linux/arm", ARMV7),
    ("linux/arm/v6", Platform("linux", "arm", "v6")),
    ("arm64", ARM64),
    ("linux", AMD64),
    ("windows/amd64", Platform("windows", "amd64")),
])
def test_parse_platform(spec: str, expected: Platform) -> None:
    assert parse_platform(spec, AMD64) == expected


# ---------------------------------------------------------------------------
# ARG scoping


@pytest.mark.parametrize("dockerfile,build_args,expected", [
    # a global ARG is not visible in a stage...
    ("ARG V=1\nFROM busybox\nRUN echo\n", {}, {"V": None}),
    # ...unless redeclared, inheriting the global default
    ("ARG V=1\nFROM busybox\nARG V\nRUN echo\n", {}, {"V": "1"}),
    # a build arg overrides the global default
    ("ARG V=1\nFROM busybox\nARG V\nRUN echo\n", {"V": "2"}, {"V": "2"}),
    # and a stage default
    ("FROM busybox\nARG V=1\nRUN echo\n", {"V": "2"}, {"V": "2"}),
    # a stage default wins over the global one
    ("ARG V=1\nFROM busybox\nARG V=3\nRUN echo\n", {}, {"V": "3"}),
    # undeclared build args never reach the environment
    ("FROM busybox\nRUN echo\n", {"V": "2"}, {"V": None}),
    # declared without value and no build arg: not set
    ("FROM busybox\nARG V\nRUN echo\n", {}, {"V": None}),
    # defaults expand earlier ARGs and ENVs
    ("FROM busybox\nARG A=x\nARG B=${A}y\nENV C=$B\nARG D=$C-z\nRUN echo\n", {},
     {"A": "x", "B": "xy", "C": "xy", "D": "xy-z"}),
    # ENV overrides an earlier ARG of the same name
    ("FROM busybox\nARG V=arg\nENV V=env\nRUN echo\n", {"V": "cli"}, {"V": "env"}),
    # global ARGs see earlier global ARGs and the platform args
    ("ARG A=1\nARG B=$A-$TARGETARCH\nFROM busybox\nARG B\nRUN echo\n", {}, {"B": "1-amd64"}),
    # the automatic platform args need ARG in a stage
    ("FROM busybox\nRUN echo\n", {}, {"TARGETARCH": None, "BUILDPLATFORM": None}),
    ("FROM busybox\nARG TARGETARCH\nARG BUILDPLATFORM\nRUN echo\n", {},
     {"TARGETARCH": "amd64", "BUILDPLATFORM": "linux/amd64"}),
    # an ARG inside a stage is scoped to it (and stages built on it)
    ("FROM busybox AS a\nARG V=1\nFROM busybox\nRUN echo\n", {}, {"V": None}),
    ("FROM busybox AS a\nARG V=1\nFROM a\nRUN echo\n", {}, {"V": "1"}),
    # a declared proxy arg is an ordinary arg
    ("FROM busybox\nARG HTTPS_PROXY\nRUN echo\n", {"HTTPS_PROXY": "http://p"},
     {"HTTPS_PROXY": "http://p", "https_proxy": None}),
])
def test_arg_scoping(dockerfile: str, build_args: Dict[str, str],
                     expected: Dict[str, Optional[str]]) -> None:
    env = env_of(last_exec(conv(dockerfile, build_args=build_args)))
    for key, value in expected.items():
        assert env.get(key) == value, key


@pytest.mark.parametrize("build_args,expected", [
    ({"HTTPS_PROXY": "http://p"}, ("HTTPS_PROXY=http://p", "https_proxy=http://p")),
    ({"http_proxy": "http://a", "NO_PROXY": "localhost", "ftp_proxy": "f", "ALL_PROXY": "s"},
     ("HTTP_PROXY=http://a", "http_proxy=http://a", "FTP_PROXY=f", "ftp_proxy=f",
      "NO_PROXY=localhost", "no_proxy=localhost", "ALL_PROXY=s", "all_proxy=s")),
    ({"HTTP_PROXY": ""}, ()),
    ({"OTHER_PROXY": "x"}, ()),
])
def test_proxy_args_need_no_declaration_and_stay_out_of_keys(build_args: Dict[str, str],
                                                             expected: Tuple[str, ...]) -> None:
    from bakery.graph.keys import op_key

    plain = conv("FROM busybox\nRUN echo\n")
    e = conv("FROM busybox\nRUN echo\n", build_args=build_args)
    assert last_exec(e).proxy_env == expected
    assert last_exec(e).env == last_exec(plain).env  # not in the env the key covers
    assert op_key(last_exec(e), None) == op_key(last_exec(plain), None)
    assert e.config == plain.config  # nor in the image config or its history


def test_arg_values_not_in_image_config_but_in_history() -> None:
    e = conv("FROM busybox\nARG V=1\nENV E=2\nRUN echo $V\n",
             build_args={"HTTP_PROXY": "http://proxy"})
    assert e.config.env == (PATH, "E=2")
    assert last_exec(e).env == (PATH, "V=1", "E=2")
    assert last_exec(e).proxy_env == ("HTTP_PROXY=http://proxy", "http_proxy=http://proxy")
    assert e.config.history == (
        ("ARG V=1", True),
        ("ENV E=2", True),
        ("RUN |1 V=1 /bin/sh -c echo $V # buildkit", False),
    )


def test_env_order_follows_buildkit_envlist() -> None:
    # re-setting a key moves it to the end of the exec environment
    e = conv("FROM busybox\nENV A=1 B=2\nARG A=3\nRUN x\n",
             configs={"docker.io/library/busybox:latest": {"Env": ["PATH=/bin", "A=0"]}})
    assert last_exec(e).env == ("PATH=/bin", "B=2", "A=3")
    assert e.config.env == ("PATH=/bin", "A=1", "B=2")


PLATFORMS = [AMD64, ARM64, ARMV7, Platform("linux", "s390x")]


@pytest.mark.parametrize("target", PLATFORMS, ids=str)
def test_platform_args(target: Platform) -> None:
    df = (
        "FROM --platform=$BUILDPLATFORM golang AS build\n"
        "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH\n"
        "RUN build\n"
        "FROM alpine:$TARGETARCH\n"
        "COPY --from=build /out /out\n"
    )
    e = conv(df, platform=target, build_platform=AMD64)
    srcs = {op.ref: op.platform for op in ops(e) if isinstance(op, ImageSource)}
    assert srcs == {
        "docker.io/library/golang:latest": AMD64,
        f"docker.io/library/alpine:{target.architecture}": target,
    }
    run = execs(e)[0]
    assert run.platform == AMD64
    env = env_of(run)
    assert env["TARGETPLATFORM"] == str(target)
    assert env["TARGETOS"] == target.os
    assert env["TARGETARCH"] == target.architecture
    assert env["TARGETVARIANT"] == target.variant
    assert env["BUILDPLATFORM"] == "linux/amd64"
    assert env["BUILDARCH"] == "amd64"
    assert e.config.platform == target


def test_platform_arg_override_and_from_platform_forms() -> None:
    e = conv("FROM --platform=linux/arm64 busybox\nARG TARGETARCH\nRUN x\n",
             build_args={"TARGETARCH": "riscv64"})
    assert last_exec(e).platform == ARM64
    assert env_of(last_exec(e))["TARGETARCH"] == "riscv64"


# ---------------------------------------------------------------------------
# stages: selection, pruning, named contexts, --from


MULTI = """\
FROM golang AS build
RUN go build
FROM node AS web
RUN npm ci
FROM debian AS unused
RUN false
FROM alpine AS final
COPY --from=build /app /app
COPY --from=web /dist /dist
FROM final AS debug
RUN apk add gdb
"""


@pytest.mark.parametrize("stage,expected_images,calls", [
    (None, ["docker.io/library/alpine:latest", "docker.io/library/golang:latest",
            "docker.io/library/node:latest"], 3),
    ("final", ["docker.io/library/alpine:latest", "docker.io/library/golang:latest",
               "docker.io/library/node:latest"], 3),
    ("build", ["docker.io/library/golang:latest"], 1),
    ("WEB", ["docker.io/library/node:latest"], 1),
    ("unused", ["docker.io/library/debian:latest"], 1),
])
def test_stage_selection_and_pruning(stage: Optional[str], expected_images: List[str],
                                     calls: int) -> None:
    asked: List[str] = []

    def resolver(img: ImageSource) -> None:
        asked.append(img.ref)

    e = convert(req(MULTI, stage=stage), resolver)
    assert images(e) == expected_images
    assert sorted(asked) == expected_images
    assert len(asked) == calls
    for op in ops(e):  # the pruned stage's RUN is nowhere in the DAG
        assert not (isinstance(op, Exec) and op.args[-1] == "false") or stage == "unused"


def test_unknown_target_stage() -> None:
    err = fail(MULTI, stage="fnal")
    assert err.message == 'target stage "fnal" could not be found (did you mean final?)'
    assert err.hint == "available stages: build, web, unused, final, debug"


def test_from_stage_needs_earlier_definition() -> None:
    # BuildKit: a FROM naming a later stage is an image, so this is no cycle
    e = conv("FROM a AS b\nRUN one\nFROM b AS a\nRUN two\n")
    assert images(e) == ["docker.io/library/a:latest"]
    assert [x.args[-1] for x in execs(e)] == ["one", "two"]


@pytest.mark.parametrize("from_,expected", [
    ("0", "docker.io/library/golang:latest"),
    ("build", "docker.io/library/golang:latest"),
    ("BUILD", "docker.io/library/golang:latest"),
    ("alpine:3.19", "docker.io/library/alpine:3.19"),
    ("ghcr.io/org/tool@sha256:" + "c" * 64, "ghcr.io/org/tool@sha256:" + "c" * 64),
])
def test_copy_from(from_: str, expected: str) -> None:
    e = conv(f"FROM golang AS build\nFROM scratch\nCOPY --from={from_} /x /y\n")
    op = e.rootfs.op
    assert isinstance(op, FileOp) and op.base == Ref(ScratchSource())
    (cp,) = op.actions
    assert isinstance(cp, Copy)
    src = cp.source.op
    assert isinstance(src, ImageSource) and src.ref == expected
    assert (cp.src, cp.dest) == (("/x",), "/y")


def test_named_context_replaces_stage_and_image() -> None:
    df = ("FROM golang AS base\nRUN never\n"
          "FROM base\nCOPY --from=alpine /a /a\nCOPY --from=tools /t /t\nRUN x\n")
    img = ImageSource("docker.io/library/debian:12", AMD64)
    e = convert(
        req(df, named_contexts={"base": img, "alpine": "/src/alpine", "tools": Ref(ScratchSource())}),
        lambda i: {"Env": ["PATH=/debian"], "WorkingDir": "/w"} if i == img else None,
    )
    assert images(e) == ["docker.io/library/debian:12"]
    locals_ = [op for op in ops(e) if isinstance(op, LocalSource)]
    assert locals_ == [LocalSource(name="alpine", path="/src/alpine")]
    assert all(x.args[-1] != "never" for x in execs(e))
    run = last_exec(e)
    assert run.cwd == "/w" and run.env == ("PATH=/debian",)
    assert e.config.base == img
    copies = [a for op in ops(e) if isinstance(op, FileOp) for a in op.actions]
    assert [c.source for c in copies if isinstance(c, Copy)] == [
        Ref(LocalSource(name="alpine", path="/src/alpine")), Ref(ScratchSource())]


def test_named_context_platform_key_wins() -> None:
    e = convert(req("FROM alpine\n", named_contexts={
        "alpine": ImageSource("docker.io/library/alpine:1", AMD64),
        "alpine::linux/arm64": ImageSource("docker.io/library/alpine:2", ARM64),
    }, platform=ARM64))
    assert images(e) == ["docker.io/library/alpine:2"]


# ---------------------------------------------------------------------------
# instructions -> operations


def test_copy_from_context_uses_one_local_source() -> None:
    e = conv("FROM busybox\nCOPY a.txt b/ /dst/\nADD c.tar.gz /x\nRUN --mount=source=d,target=/d x\n",
             dockerignore=("*.md",))
    ctx = LocalSource(name="context", path="/ctx", include=("a.txt", "b", "c.tar.gz", "d"),
                      exclude=("*.md",))
    assert [op for op in ops(e) if isinstance(op, LocalSource)] == [ctx]
    fileops = [op for op in ops(e) if isinstance(op, FileOp)]
    cp, add = (op.actions for op in fileops)
    assert [(a.src, a.dest, a.unpack) for a in cp if isinstance(a, Copy)] == [
        (("/a.txt",), "/dst/", False), (("/b",), "/dst/", False)]
    assert [(a.src, a.dest, a.unpack) for a in add if isinstance(a, Copy)] == [
        (("/c.tar.gz",), "/x", True)]
    assert last_exec(e).mounts[0].source == Ref(ctx)


def test_copy_whole_context_has_no_include() -> None:
    e = conv("FROM busybox\nCOPY . /app\n")
    (ctx,) = [op for op in ops(e) if isinstance(op, LocalSource)]
    assert ctx.include == ()


@pytest.mark.parametrize("line,expected", [
    ("COPY --chown=1000 a /b", ("1000:1000", "")),
    ("COPY --chown=1000:50 a /b", ("1000:50", "")),
    ("COPY --chown=app:staff a /b", ("app:staff", "")),
    ("COPY --chown=app a /b", ("app", "")),
    ("COPY --chmod=0755 a /b", ("", "0755")),
    ("COPY --chmod=u+x a /b", ("", "u+x")),
])
def test_copy_chown_chmod(line: str, expected: Tuple[str, str]) -> None:
    op = conv(f"FROM busybox\n{line}\n").rootfs.op
    assert isinstance(op, FileOp)
    cp = op.actions[0]
    assert isinstance(cp, Copy) and (cp.chown, cp.chmod) == expected


def test_copy_parents_and_exclude() -> None:
    op = conv("FROM busybox\nCOPY --parents --exclude=*.tmp src/./a/b.go x/*.go /dst/\n").rootfs.op
    assert isinstance(op, FileOp)
    got = [(a.src, a.include, a.exclude, a.parents) for a in op.actions if isinstance(a, Copy)]
    assert got == [(("/src",), ("a/b.go",), ("*.tmp",), True),
                   (("/",), ("x/*.go",), ("*.tmp",), True)]


def test_copy_link_is_a_merge() -> None:
    e = conv("FROM busybox\nCOPY --link a /a\n")
    merge = e.rootfs.op
    assert isinstance(merge, Merge)
    base, layer = merge.inputs
    assert base == Ref(ImageSource("docker.io/library/busybox:latest", AMD64))
    assert isinstance(layer.op, FileOp) and layer.op.base is None
    assert merge.description == "[2/2] LINK COPY --link a /a"
    assert layer.op.description == "[2/2] COPY --link a /a"
    assert e.config.history == (("COPY a /a # buildkit", False),)
    # BuildKit does not link a copy with --chmod
    assert isinstance(conv("FROM busybox\nCOPY --link --chmod=644 a /a\n").rootfs.op, FileOp)


def test_copy_heredoc() -> None:
    df = 'FROM busybox\nARG NAME=world\nCOPY <<EOF <<"RAW" /etc/\nhello $NAME\nEOF\nkeep $NAME\nRAW\n'
    op = conv(df).rootfs.op
    assert isinstance(op, FileOp)
    docs = []
    for a in op.actions:
        assert isinstance(a, Copy) and a.dest == "/etc/"
        src = a.source.op
        assert isinstance(src, FileOp) and src.base is None
        (mk,) = src.actions
        assert isinstance(mk, Mkfile)
        docs.append((a.src, mk.path, mk.data, mk.mode))
    assert docs == [(("/EOF",), "/EOF", b"hello world\n", 0o644),
                    (("/RAW",), "/RAW", b"keep $NAME\n", 0o644)]


@pytest.mark.parametrize("df,args,history", [
    ("FROM busybox\nRUN <<EOF\necho a\necho b\nEOF\n",
     ("/bin/sh", "-c", "echo a\necho b\n"), "RUN /bin/sh -c echo a\necho b\n # buildkit"),
    ("FROM busybox\nRUN <<-EOF\n\techo a\n\tEOF\n",
     ("/bin/sh", "-c", "echo a\n"), "RUN /bin/sh -c echo a\n # buildkit"),
    ("FROM busybox\nRUN cat <<EOF > /f\nx\nEOF\n",
     ("/bin/sh", "-c", "cat <<EOF > /f\nx\nEOF"), "RUN /bin/sh -c cat <<EOF > /f\nx\nEOF # buildkit"),
    ('FROM busybox\nSHELL ["/bin/bash", "-ec"]\nRUN <<EOF\nx\nEOF\n',
     ("/bin/bash", "-ec", "x\n"), "RUN /bin/bash -ec x\n # buildkit"),
])
def test_run_heredoc(df: str, args: Tuple[str, ...], history: str) -> None:
    e = conv(df)
    assert last_exec(e).args == args
    assert e.config.history[-1] == (history, False)


def test_run_heredoc_shebang_is_a_file() -> None:
    e = conv("FROM busybox\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n")
    run = last_exec(e)
    assert run.args == ("/bin/sh", "-c", "/dev/pipes/EOF")
    (mount,) = run.mounts
    assert (mount.type, mount.target, mount.readonly) == ("bind", "/dev/pipes/", True)
    assert mount.source is not None and isinstance(mount.source.op, FileOp)
    assert mount.source.op.actions == (
        Mkfile("/EOF", b"#!/usr/bin/env python3\nprint(1)\n", 0o755),)
    assert run.description == "[2/2] RUN <<EOF (#!/usr/bin/env python3...)"


def test_run_mounts() -> None:
    df = (
        "FROM golang AS build\n"
        "FROM busybox\n"
        "WORKDIR /w\n"
        "ARG CACHE=gomod\n"
        "RUN --mount=type=cache,id=$CACHE,target=/go/pkg/mod,sharing=locked,uid=1000"
        " --mount=type=cache,target=rel/cache"
        " --mount=type=bind,from=build,source=/usr/local/go,target=/go,rw"
        " --mount=type=bind,from=alpine,target=/a"
        " --mount=type=tmpfs,target=/tmp,size=64m"
        " --mount=type=secret,id=npmrc"
        " --mount=type=secret,id=tok,env=TOKEN,required=true"
        " --mount=type=ssh,id=gh,required"
        " --network=none --security=insecure make\n"
    )
    run = last_exec(conv(df, secrets=("tok",)))
    got = [(m.type, m.target, m.source.op if m.source else None, m.selector, m.readonly,
            m.cache_id, m.sharing, m.secret_id, m.env, m.required, m.uid, m.size)
           for m in run.mounts]
    assert got == [
        ("cache", "/go/pkg/mod", None, "", False, "gomod", "locked", "", "", False, 1000, None),
        ("cache", "/w/rel/cache", None, "", False, "rel/cache", "shared", "", "", False, None,
         None),
        ("bind", "/go", ImageSource("docker.io/library/golang:latest", AMD64), "/usr/local/go",
         False, "", "shared", "", "", False, None, None),
        ("bind", "/a", ImageSource("docker.io/library/alpine:latest", AMD64), "", True, "",
         "shared", "", "", False, None, None),
        ("tmpfs", "/tmp", None, "", False, "", "shared", "", "", False, None, 64 << 20),
        ("secret", "/run/secrets/npmrc", None, "", False, "", "shared", "npmrc", "", False,
         None, None),
        ("secret", "", None, "", False, "", "shared", "tok", "TOKEN", True, None, None),
        ("ssh", "/run/buildkit/ssh_agent.0", None, "", False, "", "shared", "gh", "", True,
         None, None),
    ]
    assert (run.network, run.security, run.cwd) == ("none", "insecure", "/w")


@pytest.mark.parametrize("lines,expected,mkdirs", [
    (["WORKDIR /a", "WORKDIR b", "WORKDIR ../c"], "/a/c", ["/a", "/a/b", "/a/c"]),
    (["WORKDIR rel", "WORKDIR x/"], "/rel/x", ["/rel", "/rel/x"]),
    (["WORKDIR /abs/", "WORKDIR sub"], "/abs/sub", ["/abs/", "/abs/sub"]),
    (["ENV D=/opt", "WORKDIR $D/app"], "/opt/app", ["/opt/app"]),
    (["WORKDIR /"], "/", []),
])
def test_workdir_chains(lines: List[str], expected: str, mkdirs: List[str]) -> None:
    e = conv("FROM busybox\n" + "\n".join(lines) + "\nRUN pwd\n")
    assert e.config.workdir == expected
    assert last_exec(e).cwd == expected
    made = [a.path for op in ops(e) if isinstance(op, FileOp) for a in op.actions
            if isinstance(a, Mkdir)]
    assert made == mkdirs


def test_workdir_relative_to_base_image_and_user_owns_it() -> None:
    e = conv("FROM node\nUSER 1000\nWORKDIR app\n",
             configs={"docker.io/library/node:latest": {"WorkingDir": "/home/node"}})
    op = e.rootfs.op
    assert isinstance(op, FileOp)
    assert op.actions == (Mkdir("/home/node/app", 0o755, True, chown="1000:1000"),)
    assert e.config.history == (("USER 1000", True), ("WORKDIR /home/node/app", False))


def test_copy_dest_relative_to_workdir() -> None:
    op = conv("FROM busybox\nWORKDIR /app\nCOPY a .\nCOPY b sub/\nCOPY c d\n").rootfs.op
    dests = []
    while isinstance(op, FileOp) and op.base is not None:
        dests += [a.dest for a in op.actions if isinstance(a, Copy)]
        op = op.base.op
    assert dests == ["/app/d", "/app/sub/", "/app/"]


@pytest.mark.parametrize("lines,base_cmd,cmd,entrypoint", [
    (["ENTRYPOINT [\"/e\"]"], ["sh"], None, ("/e",)),
    (["CMD [\"c\"]", "ENTRYPOINT [\"/e\"]"], ["sh"], ("c",), ("/e",)),
    (["ENTRYPOINT [\"/e\"]", "CMD [\"c\"]"], None, ("c",), ("/e",)),
    (["ENTRYPOINT /e -x"], ["sh"], None, ("/bin/sh", "-c", "/e -x")),
    (["CMD c"], ["sh"], ("/bin/sh", "-c", "c"), None),
    ([], ["sh"], ("sh",), None),
])
def test_entrypoint_resets_cmd(lines: List[str], base_cmd: Optional[List[str]],
                               cmd: Optional[Tuple[str, ...]],
                               entrypoint: Optional[Tuple[str, ...]]) -> None:
    cfg: Dict[str, object] = {"Cmd": base_cmd} if base_cmd else {}
    e = conv("FROM busybox\n" + "\n".join(lines) + "\n",
             configs={"docker.io/library/busybox:latest": cfg})
    assert (e.config.cmd, e.config.entrypoint) == (cmd, entrypoint)


def test_cmd_in_base_stage_is_reset_by_child_entrypoint() -> None:
    e = conv('FROM busybox AS a\nCMD ["c"]\nFROM a\nENTRYPOINT ["/e"]\n')
    assert (e.config.cmd, e.config.entrypoint) == (None, ("/e",))


def test_config_and_history() -> None:
    df = """\
FROM busybox
MAINTAINER someone
LABEL a=1 "b c"=2
ENV X=1 Y="two words"
EXPOSE 80 53/udp 8000-8001
VOLUME ["/data", "/logs"]
VOLUME /more
USER app:app
STOPSIGNAL SIGINT
SHELL ["/bin/bash", "-c"]
HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD curl -f http://localhost/
ONBUILD RUN echo child
CMD ["run", "it"]
ARG V
"""
    e = conv(df, configs={"docker.io/library/busybox:latest": {
        "Env": ["PATH=/bin"], "Labels": {"a": "0", "base": "yes"}, "Cmd": ["sh"]}},
        labels={"org.opencontainers.image.title": "t"})
    c = e.config
    assert c.env == ("PATH=/bin", "X=1", "Y=two words")
    assert c.labels == (("a", "1"), ("b c", "2"), ("base", "yes"),
                        ("org.opencontainers.image.title", "t"))
    assert c.exposed_ports == ("53/udp", "80/tcp", "8000/tcp", "8001/tcp")
    assert c.volumes == ("/data", "/logs", "/more")
    assert (c.user, c.stop_signal, c.shell) == ("app:app", "SIGINT", ("/bin/bash", "-c"))
    assert c.healthcheck == {"Test": ["CMD-SHELL", "curl -f http://localhost/"],
                             "Interval": 30_000_000_000, "Timeout": 90_000_000_000,
                             "Retries": 3}
    assert c.onbuild == ("RUN echo child",)
    assert c.cmd == ("run", "it")
    assert c.base == ImageSource("docker.io/library/busybox:latest", AMD64)
    assert c.history == (
        ("MAINTAINER someone", True),
        ("LABEL a=1 b c=2", True),
        ("ENV X=1 Y=two words", True),
        ("EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]", True),
        ("VOLUME [/data /logs]", True),
        ("VOLUME [/more]", True),
        ("USER app:app", True),
        ("STOPSIGNAL SIGINT", True),
        ("SHELL [/bin/bash -c]", True),
        ("HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/] Interval:30s "
         "Timeout:1m30s StartPeriod:0s StartInterval:0s Retries:3}", True),
        ('CMD ["run" "it"]', True),
        ("ARG V", True),
    )


def test_scratch_config() -> None:
    e = conv("FROM scratch\nCOPY app /\n")
    assert (e.config.env, e.config.workdir, e.config.base) == ((PATH,), "/", None)
    assert images(e) == []


def test_unknown_image_config_gets_default_path() -> None:
    e = conv("FROM busybox\nRUN x\n")
    assert e.config.env == (PATH,)
    assert last_exec(e).env == (PATH,)


def test_descriptions_and_locations() -> None:
    df = "FROM busybox AS a\nRUN echo \\\n  $HOME\nFROM a\nARG N=1\nCOPY x /$N\nWORKDIR /w\n"
    e = conv(df, configs={"docker.io/library/busybox:latest": {"Env": ["HOME=/root"]}})
    descs = [(op.description, op.location.start_line if op.location else None)
             for op in ops(e) if isinstance(op, (Exec, FileOp))]
    assert descs == [("[a 2/2] RUN echo   /root", 2), ("[stage-1 1/2] COPY x /1", 6),
                     ("[stage-1 2/2] WORKDIR /w", 7)]


def test_onbuild_triggers_of_base_image_run() -> None:
    e = conv("FROM base\nRUN after\n", configs={"docker.io/library/base:latest": {
        "OnBuild": ["RUN echo from-base", "COPY --from=alpine /x /x"]}})
    runs = [x.args[-1] for x in execs(e)]
    assert runs == ["echo from-base", "after"]
    assert "docker.io/library/alpine:latest" in images(e)
    assert e.config.onbuild == ()
    assert execs(e)[0].description == "[2/4] ONBUILD RUN echo from-base"


def test_onbuild_of_base_stage_runs_in_child() -> None:
    e = conv("FROM busybox AS a\nONBUILD RUN trig\nFROM a\nRUN x\n")
    assert [x.args[-1] for x in execs(e)] == ["trig", "x"]
    assert e.config.onbuild == ()


# ---------------------------------------------------------------------------
# ADD from URLs and git


def file_ops(e: Export) -> List[FileOp]:
    return [op for op in ops(e) if isinstance(op, FileOp)]


def test_add_url_is_an_http_source_copied_to_dest() -> None:
    sum_ = "sha256:" + "ab" * 32
    e = conv("FROM busybox\nWORKDIR /w\n"
             f"ADD --checksum={sum_} --chmod=0755 --chown=1:2 https://h.example/d/x.tgz?v=1 sub/\n")
    (cp,) = file_ops(e)[-1].actions
    assert isinstance(cp, Copy)
    assert cp.source.op == HttpSource("https://h.example/d/x.tgz?v=1", filename="x.tgz", checksum=sum_)
    assert (cp.src, cp.dest, cp.chown, cp.chmod) == (("x.tgz",), "/w/sub/", "1:2", "0755")
    # remote files are never unpacked, taken as they are, and not read from the context
    assert not cp.unpack and not cp.follow_symlinks and not cp.allow_wildcard
    assert e.config.history[-1] == (
        "ADD --chown=1:2 --chmod=0755 https://h.example/d/x.tgz?v=1 sub/ # buildkit", False)
    assert not [op for op in ops(e) if isinstance(op, LocalSource)]


def test_add_url_without_a_path_is_unnamed_and_unpack_is_honoured() -> None:
    e = conv("FROM busybox\nADD --unpack=true http://h.example/ /d/\n")
    (cp,) = file_ops(e)[-1].actions
    assert isinstance(cp, Copy) and isinstance(cp.source.op, HttpSource)
    assert cp.source.op.filename == "__unnamed__" and cp.src == ("__unnamed__",)
    assert cp.unpack


def test_add_url_and_local_file_in_one_instruction() -> None:
    e = conv("FROM busybox\nADD http://h.example/a.txt b.txt /d/\n")
    a, b = file_ops(e)[-1].actions
    assert isinstance(a, Copy) and isinstance(a.source.op, HttpSource)
    assert isinstance(b, Copy) and isinstance(b.source.op, LocalSource)
    assert b.source.op.include == ("b.txt",)


@pytest.mark.parametrize("src,remote,ref,subdir", [
    ("https://g.example/r.git", "https://g.example/r.git", "", ""),
    ("https://g.example/r.git#v1.2", "https://g.example/r.git", "v1.2", ""),
    ("git://127.0.0.1/r#main:docs/x", "git://127.0.0.1/r", "main", "docs/x"),
    ("git@g.example:o/r.git#dev", "git@g.example:o/r.git", "dev", ""),
    ("https://g.example/r.git##ref=v2,subdir=/a", "https://g.example/r.git", "v2", "a"),
])
def test_add_git_ref(src: str, remote: str, ref: str, subdir: str) -> None:
    e = conv(f"FROM busybox\nADD --keep-git-dir=true {src} /src\n")
    (cp,) = file_ops(e)[-1].actions
    assert isinstance(cp, Copy)
    assert cp.source.op == GitSource(remote, ref, subdir, keep_git_dir=True)
    assert (cp.src, cp.dest) == (("/",), "/src")


def test_add_git_checksum_is_kept() -> None:
    e = conv("FROM busybox\nADD --checksum=abcdef1 git://h.example/r#main /src\n")
    (cp,) = file_ops(e)[-1].actions
    assert isinstance(cp, Copy) and isinstance(cp.source.op, GitSource)
    assert cp.source.op.checksum == "abcdef1" and not cp.source.op.keep_git_dir


# ---------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("df,kw,message,line", [
    ("FROM busybox\nCOPY --from=3 /a /b\n", {}, "invalid stage index 3", 2),
    ("FROM busybox\nCOPY --from=$X /a /b\n", {},
     "variable expansion is not supported for --from, define a new stage with FROM using "
     "ARG from global scope as a workaround", 2),
    ("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /x /x\n", {},
     "circular dependency detected on stage: a", 2),
    ("FROM busybox AS a\nCOPY --from=a /x /x\n", {}, "circular dependency detected on stage: a",
     2),
    ("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n", {"stage": "a"},
     'cannot copy from stage "b", it needs to be defined before current stage "a"', 2),
    ("ARG IMG\nFROM $IMG\n", {}, "base name ($IMG) should not be blank", 2),
    ("FROM BusyBox\n", {},
     'failed to parse stage name "BusyBox": invalid reference format: repository name '
     "(library/BusyBox) must be lowercase", 1),
    ("ARG P=\nFROM --platform=$P busybox\n", {}, "empty platform value from expression $P", 2),
    ("FROM --platform=linux/nope/x/y busybox\n", {},
     'failed to parse platform linux/nope/x/y: "linux/nope/x/y": unknown operating system or '
     "architecture: invalid argument", 1),
    ("FROM busybox\nRUN --mount=type=secret,id=tok,required cat /run/secrets/tok\n", {},
     "secret tok: not found", 2),
    ("FROM busybox\nENV A=${}\n", {}, 'failed to process "${}": syntax error: bad substitution', 2),
    ("FROM busybox\nWORKDIR ${X:?must be set}\n", {},
     'failed to process "${X:?must be set}": X: must be set', 2),
    ("ARG V=${:x}\nFROM busybox\n", {},
     'failed to process "${:x}": syntax error: bad substitution', 1),
    ("FROM busybox\nONBUILD ONBUILD RUN x\n", {},
     "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", 2),
    ("FROM busybox\nONBUILD FROM alpine\n", {}, "FROM isn't allowed as an ONBUILD trigger", 2),
    ("FROM base\n", {}, "*instructions.Stage is not a command type", 1),
    ("FROM busybox\nCOPY http://example.com/x /x\n", {}, "source can't be a URL for COPY", 2),
    ("FROM busybox\nADD --checksum=sha256:abc https://example.com/x.tgz /x\n", {},
     "invalid checksum digest length or characters: 'sha256:abc'", 2),
    ("FROM busybox\nADD --checksum=md5:abc https://example.com/x.tgz /x\n", {},
     "unsupported digest algorithm: 'md5:abc'", 2),
    ("FROM busybox\nADD https://example.com/r.git##ref=v1,color=red /x\n", {},
     "unexpected key 'color' in 'color=red' (supported keys: ref, commit, subdir)", 2),
    ("FROM busybox\nCOPY git://example.com/r /x\n", {}, "source can't be a git ref for COPY", 2),
    ("FROM busybox\nADD --checksum=sha256:abc a /x\n", {},
     "checksum requires HTTP(S) or Git sources", 2),
    ("FROM busybox\nSTOPSIGNAL SIGNOPE\n", {}, "Invalid signal: SIGNOPE", 2),
    ("FROM busybox\nEXPOSE 80/xtp\n", {}, "invalid proto: xtp", 2),
    ("FROM busybox\nRUN --mount=type=cache,target=/ x\n", {}, 'invalid mount target "/"', 2),
    ("# check=error=true\nFROM busybox AS a\nFROM busybox AS a\n", {},
     'Duplicate stage name "a", stage names should be unique', 3),
])
def test_errors(df: str, kw: Dict[str, Any], message: str, line: int) -> None:
    configs = {"docker.io/library/base:latest": {"OnBuild": ["FROM alpine"]}}
    err = fail(df, configs=configs, **kw)
    assert err.message == message
    assert err.pos is not None and (err.pos.file, err.pos.line) == ("Dockerfile", line)


def test_duplicate_stage_names_last_wins_without_check() -> None:
    e = conv("FROM alpine AS a\nFROM debian AS a\nFROM busybox\nCOPY --from=a /x /x\n")
    assert "docker.io/library/debian:latest" in images(e)
    assert "docker.io/library/alpine:latest" not in images(e)


def test_unused_build_arg_is_fine() -> None:
    conv("FROM busybox\n", build_args={"NOPE": "1"})


def test_resolver_called_once_per_image() -> None:
    calls: List[ImageSource] = []

    def resolver(img: ImageSource) -> Optional[Mapping[str, object]]:
        calls.append(img)
        return None

    convert(req("FROM busybox\nCOPY a /a\nCOPY --from=busybox /b /b\n"), resolver)
    assert calls == [ImageSource("docker.io/library/busybox:latest", AMD64)]


# ---------------------------------------------------------------------------
# golden dumps


def dump(e: Export) -> Dict[str, Any]:
    """The Export as a table of operations (inputs first), refs as ids."""
    ids: Dict[int, int] = {}
    table: List[Dict[str, Any]] = []

    def value(v: Any) -> Any:
        if isinstance(v, Ref):
            return f"@{ids[id(v.op)]}"
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, Platform):
            return str(v)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out: Dict[str, Any] = {"kind": type(v).__name__}
            for f in dataclasses.fields(v):
                x = getattr(v, f.name)
                if f.default is not dataclasses.MISSING and x == f.default:
                    continue
                out[f.name] = value(x)
            return out
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        return v

    for op in walk(e.rootfs):
        ids[id(op)] = len(table)
        table.append(value(op))
    return {"target": e.target, "platform": str(e.platform), "ops": table,
            "rootfs": f"@{ids[id(e.rootfs.op)]}", "config": value(e.config)}


def _named(v: Any) -> Any:
    if "image" in v:
        return ImageSource(v["image"], parse_platform(v.get("platform", "linux/amd64"), AMD64))
    return v["local"]


GOLDEN = sorted(p for p in DATA.iterdir() if (p / "Dockerfile").is_file()) if DATA.is_dir() else []


@pytest.mark.parametrize("case", GOLDEN, ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    args = json.loads((case / "request.json").read_text(encoding="utf-8"))
    configs = args.pop("image_configs", {})
    host = parse_platform(args.pop("build_platform", "linux/amd64"), AMD64)
    request = BuildRequest(
        target=args.pop("target", case.name),
        dockerfile=(case / "Dockerfile").read_text(encoding="utf-8"),
        dockerfile_name="Dockerfile",
        context="/ctx",
        platform=parse_platform(args.pop("platform", "linux/amd64"), host),
        build_platform=host,
        named_contexts={k: _named(v) for k, v in args.pop("named_contexts", {}).items()},
        dockerignore=tuple(args.pop("dockerignore", ())),
        secrets=tuple(args.pop("secrets", ())),
        **args,
    )
    got = dump(convert(request, lambda img: configs.get(img.ref)))
    expected_file = case / "expected.json"
    text = json.dumps(got, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE:
        expected_file.write_text(text, encoding="utf-8")
    assert got == json.loads(expected_file.read_text(encoding="utf-8"))


def test_entrypoint_reset_and_secret_file_options() -> None:
    e = conv("FROM busybox\nENTRYPOINT []\n"
             "RUN --mount=type=secret,id=k,uid=10 --mount=type=ssh,mode=0644 x\n",
             configs={"docker.io/library/busybox:latest": {"Entrypoint": ["/e"]}})
    assert e.config.entrypoint is None
    assert e.config.history[0] == ("ENTRYPOINT []", True)
    secret, ssh = last_exec(e).mounts
    assert (secret.target, secret.uid, secret.gid, secret.mode) == ("/run/secrets/k", 10, 0, 0o400)
    assert (ssh.secret_id, ssh.mode, ssh.uid) == ("default", 0o644, 0)
