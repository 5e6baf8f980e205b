"""bakery.drivers.rewrite: a Dockerfile's references to named contexts
replaced by image references in place (pure), as the docker driver feeds
them to Docker 20.10, which has no --build-context."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import pytest

from bakery.bakefile.model import Target
from bakery.drivers.docker import context_plan
from bakery.drivers.rewrite import context_key, rewrite_dockerfile
from bakery.errors import BakeryError

REF = "bakery-ctx/base:r1"


def rw(text: str, refs: Optional[Dict[str, str]] = None, **args: str) -> str:
    out = rewrite_dockerfile(text, refs if refs is not None else {"base": REF}, args)
    assert out.count("\n") == text.count("\n")  # line numbers are kept
    return out


@pytest.mark.parametrize(("name", "key"), [
    ("base", "base"), ("base:latest", "base"), ("docker.io/library/base", "base"),
    ("docker.io/library/alpine:3.18", "alpine:3.18"), ("reg:5000/a/b:1", "reg:5000/a/b:1"),
    ("scratch", None), ("context", None), ("Not Valid", None), ("", None),
])
def test_context_key(name: str, key: Optional[str]) -> None:
    assert context_key(name) == key


# (id, Dockerfile, expected)
CASES: List[Tuple[str, str, str]] = [
    ("from", "FROM base\nRUN true\n", f"FROM {REF}\nRUN true\n"),
    ("from-lowercase-keyword-and-stage", "from base as b\n", f"from {REF} as b\n"),
    ("from-normalised", "FROM docker.io/library/base:latest\n", f"FROM {REF}\n"),
    ("from-platform-flag", "FROM --platform=$BUILDPLATFORM base AS b\n",
     f"FROM --platform=$BUILDPLATFORM {REF} AS b\n"),
    ("from-other-image", "FROM alpine\nFROM base2\n", "FROM alpine\nFROM base2\n"),
    ("from-tagged-is-another-image", "FROM base:1\n", "FROM base:1\n"),
    ("from-continuation", "FROM \\\n  base \\\n  AS b\n", f"FROM \\\n  {REF} \\\n  AS b\n"),
    ("from-continuation-no-space", "FROM base\\\n AS b\n", f"FROM {REF}\\\n AS b\n"),
    ("from-arg", "ARG B=base\nFROM ${B}\n", f"ARG B=base\nFROM {REF}\n"),
    ("copy-from", "FROM alpine\nCOPY --from=base /a /b\nCOPY --from=0 /a /c\n",
     f"FROM alpine\nCOPY --from={REF} /a /b\nCOPY --from=0 /a /c\n"),
    ("copy-from-quoted", 'FROM alpine\nCOPY --chown=1 --from="base" /a /b\n',
     f"FROM alpine\nCOPY --chown=1 --from={REF} /a /b\n"),
    ("copy-from-other-stage", "FROM alpine AS x\nFROM alpine\nCOPY --from=x /a /b\n",
     "FROM alpine AS x\nFROM alpine\nCOPY --from=x /a /b\n"),
    ("run-mount", "FROM alpine\nRUN --mount=type=cache,target=/c --mount=type=bind,from=base,"
     "target=/m cat /m/x\n",
     f"FROM alpine\nRUN --mount=type=cache,target=/c --mount=type=bind,from={REF},target=/m cat /m/x\n"),
    ("run-mount-from-first", "FROM alpine\nRUN --mount=from=base,target=/m \\\n  true\n",
     f"FROM alpine\nRUN --mount=from={REF},target=/m \\\n  true\n"),
    ("run-mount-other", "FROM alpine\nRUN --mount=type=bind,from=based,target=/m true\n",
     "FROM alpine\nRUN --mount=type=bind,from=based,target=/m true\n"),
    ("run-mount-quoted-whole", 'FROM alpine\nRUN --mount="type=bind,from=base,target=/m" true\n',
     f'FROM alpine\nRUN --mount="type=bind,from={REF},target=/m" true\n'),
    ("heredoc-body-untouched", "FROM base\nCOPY <<EOF /x\nFROM base\nEOF\n",
     f"FROM {REF}\nCOPY <<EOF /x\nFROM base\nEOF\n"),
    ("comments-and-directives-kept", "# syntax=docker/dockerfile:1\n# hello base\nFROM base\n",
     f"# syntax=docker/dockerfile:1\n# hello base\nFROM {REF}\n"),
    ("escape-directive", "# escape=`\nFROM `\n  base\nRUN dir c:\\\n",
     f"# escape=`\nFROM `\n  {REF}\nRUN dir c:\\\n"),
    # a stage named like the context IS the context: its instructions go, its lines stay
    ("stage-named-like-context",
     "FROM alpine AS base\nRUN echo a \\\n  b\nCOPY <<EOF /x\nhi\nEOF\nFROM base\nCOPY --from=base /x /y\n",
     f"FROM {REF} AS base\n\n\n\n\n\nFROM {REF}\nCOPY --from={REF} /x /y\n"),
    ("stage-named-like-context-case", "FROM alpine AS Base\nRUN x\n", f"FROM {REF} AS Base\n\n"),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_rewrite(text: str, expected: str) -> None:
    assert rw(text) == expected


def test_build_args_override_arg_defaults_in_from() -> None:
    text = "ARG B=alpine\nFROM ${B}\n"
    assert rw(text) == text
    assert rw(text, B="base") == f"ARG B=alpine\nFROM {REF}\n"
    # only ARGs declared before FROM count; a build arg alone expands nothing
    assert rw("FROM ${B}\n", B="base") == "FROM ${B}\n"


def test_several_contexts_and_image_refs() -> None:
    text = "FROM base\nCOPY --from=assets / /a\nFROM alpine:3.18\n"
    out = rw(text, {"base": REF, "assets": "bakery-ctx/a-assets:r1", "alpine:3.18": "reg/alpine:9"})
    assert out == "FROM bakery-ctx/base:r1\nCOPY --from=bakery-ctx/a-assets:r1 / /a\nFROM reg/alpine:9\n"


def test_no_contexts_no_change() -> None:
    text = "FROM base\r\nRUN true\n"
    assert rewrite_dockerfile(text, {}) == text


def test_unrewritable_reference_is_an_error_with_its_line() -> None:
    # a quoted field inside the mount: BuildKit reads it, the in-place rewrite cannot find it
    text = 'FROM alpine\nRUN --mount=type=bind,"from=base",target=/m true\n'
    with pytest.raises(BakeryError) as ei:
        rewrite_dockerfile(text, {"base": REF}, filename="/src/Dockerfile")
    assert "from=base" in ei.value.message and "could not be rewritten" in ei.value.message
    assert ei.value.pos is not None and ei.value.pos.line == 2


def test_invalid_context_name_is_an_error() -> None:
    with pytest.raises(BakeryError, match="not a valid image or stage name"):
        rewrite_dockerfile("FROM x\n", {"Bad Name": REF})


def test_dockerfile_errors_are_reported() -> None:
    with pytest.raises(BakeryError):
        rewrite_dockerfile("FROM base\nRUN <<EOF\n", {"base": REF})


# ---------------------------------------------------------------- context_plan (pure)


def test_context_plan() -> None:
    targets = {
        "base": Target("base", platforms=["linux/amd64"]),
        "tool": Target("tool", tags=["r/tool"]),
        "app": Target("app", platforms=["linux/arm64"],
                      contexts={"base": "target:base", "t": "target:tool", "src": "./src",
                                "img": "docker-image://busybox:1"}),
    }
    jobs = {j.name: j for j in context_plan(targets, ["base", "tool", "app"], {"app", "tool"},
                                            "/w", "r1")}
    assert list(jobs) == ["base", "tool", "app:context:src", "app"]
    # base: only a context -> built under its temporary tag alone
    assert jobs["base"].only_tag == "bakery-ctx/base:r1" and jobs["base"].extra_tags == ()
    # tool: asked for too -> its own outputs plus the temporary tag
    assert jobs["tool"].only_tag is None and jobs["tool"].extra_tags == ("bakery-ctx/tool:r1",)
    local = jobs["app:context:src"]
    assert local.target.context == "/w/src" and local.platform == "linux/arm64"
    assert local.target.dockerfile_inline == "FROM scratch\nCOPY . /\n"
    assert local.only_tag == "bakery-ctx/app-src:r1"
    app = jobs["app"]
    assert set(app.deps) == {"base", "tool", "app:context:src"}
    assert app.refs == {"base": "bakery-ctx/base:r1", "t": "bakery-ctx/tool:r1",
                        "src": "bakery-ctx/app-src:r1", "img": "busybox:1"}


def test_context_plan_distinct_tags_for_similar_names() -> None:
    targets = {"a.b": Target("a.b"), "a-b": Target("a-b"),
               "app": Target("app", contexts={"x": "target:a.b", "y": "target:a-b"})}
    jobs = {j.name: j for j in context_plan(targets, ["a.b", "a-b", "app"], {"app"}, "/w", "r")}
    assert jobs["a.b"].only_tag != jobs["a-b"].only_tag
    assert len(set(jobs["app"].refs.values())) == 2


def test_context_plan_multi_platform_context_target_is_an_error() -> None:
    targets = {"base": Target("base", platforms=["linux/amd64", "linux/arm64"]),
               "app": Target("app", contexts={"base": "target:base"})}
    with pytest.raises(BakeryError, match="named context of app") as ei:
        context_plan(targets, ["base", "app"], {"app"}, "/w", "r")
    assert ei.value.hint is not None and "base.platform" in ei.value.hint
