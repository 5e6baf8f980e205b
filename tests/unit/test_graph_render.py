"""``bakery plan`` renderings against golden files in tests/data/graph/.

Regenerate with ``UPDATE_GOLDEN=1 python3 -m pytest tests/unit/test_graph_render.py``
and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Set

import pytest

from bakery.bakefile.model import Group, Target
from bakery.dockerfile.request import BuildRequest
from bakery.errors import BakeryError
from bakery.graph.build import BuildGraph, build_graph
from bakery.graph.ops import Export, Platform
from bakery.graph.render import FORMATS, render

from .test_graph_build import fake_digest, mini_convert

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "data", "graph")
EXT = {"text": "txt", "json": "json", "dot": "dot", "mermaid": "mmd", "html": "html",
       "matrix": "matrix.json"}


def convert(request: BuildRequest, image_config: Any) -> Export:
    # a fixed context path, so that local source keys do not depend on tmp dirs
    return mini_convert(dataclasses.replace(request, context="/repo"), image_config)


def plan_graph(cwd: str) -> BuildGraph:
    base = "FROM alpine:3.19\nRUN apk add --no-cache ca-certificates\n"
    targets = {
        "base": Target("base", context=".", linked=True, dockerfile_inline=base),
        "api": Target("api", context=".", contexts={"base": "target:base"},
                      platforms=["linux/amd64", "linux/arm64"], tags=["example/api:1"],
                      dockerfile_inline="FROM base\nCOPY api /srv/api\nRUN build api\n"),
        "worker": Target("worker", context=".", contexts={"base": "target:base"},
                         dockerfile_inline='FROM base\nCOPY worker /srv/worker\nRUN echo "w" > /w\n'),
        "e2e": Target("e2e", context=".", depends_on=["api", "worker"], no_cache=True,
                      dockerfile_inline="FROM golang:1.22\nCOPY e2e /e2e\nRUN go test /e2e\n"),
    }
    return build_graph(
        targets, ["services", "e2e"], cwd, convert=convert,
        groups={"services": Group("services", ("api", "worker"))},
        file_digest=fake_digest, build_platform=Platform("linux", "amd64"),
    )


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> BuildGraph:
    return plan_graph(str(tmp_path_factory.mktemp("plan")))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_golden(graph: BuildGraph, fmt: str) -> None:
    got = render(graph, fmt)
    path = os.path.join(GOLDEN, f"plan.{EXT[fmt]}")
    if os.environ.get("UPDATE_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(got)
    with open(path, encoding="utf-8") as fh:
        want = fh.read()
    assert got == want, f"{path} differs; rerun with UPDATE_GOLDEN=1 and review the diff"


def test_renderings_are_deterministic(tmp_path: Any) -> None:
    a = plan_graph(str(tmp_path))
    b = plan_graph(str(tmp_path))
    for fmt in FORMATS:
        assert render(a, fmt) == render(b, fmt)


def test_text_marks_shared_steps_and_unresolved_images(graph: BuildGraph) -> None:
    text = render(graph, "text")
    assert "docker.io/library/alpine:3.19 [linux/amd64] (unresolved)" in text
    assert "(shared by api@linux/amd64, base@linux/amd64, worker)" in text
    assert "e2e" in text and "after api@linux/amd64" in text


def test_json_is_the_documented_schema(graph: BuildGraph) -> None:
    data = json.loads(render(graph, "json"))
    assert list(data) == ["version", "build_platform", "requested", "groups", "targets",
                          "exports", "steps", "counts"]
    assert data["version"] == 1
    assert data["groups"] == {"services": ["api", "worker"]}
    assert data["counts"]["steps"] == len(data["steps"]) == graph.total_steps
    keys = {s["key"] for s in data["steps"]}
    seen: Set[str] = set()
    for s in data["steps"]:  # steps come after their inputs
        assert set(s["deps"]) <= seen
        seen.add(s["key"])
    assert all(e["root"] in keys for e in data["exports"])
    images = [s for s in data["steps"] if s["kind"] == "image"]
    assert images and all(s["digest"] is None for s in images)


def test_matrix_splits_targets_and_platforms_and_expands_groups(graph: BuildGraph) -> None:
    m = json.loads(render(graph, "matrix"))
    assert m == {"include": [
        {"target": "api", "platform": "linux/amd64"},
        {"target": "api", "platform": "linux/arm64"},
        {"target": "worker", "platform": "local"},
        {"target": "e2e", "platform": "local"},
    ]}


def test_dot_and_mermaid_have_one_node_per_step(graph: BuildGraph) -> None:
    dot = render(graph, "dot")
    assert sum(1 for line in dot.splitlines() if line.startswith('  "sha256:') and "->" not in line) \
        == graph.total_steps
    mm = render(graph, "mermaid")
    assert mm.startswith("flowchart LR\n")
    assert sum(1 for line in mm.splitlines() if line.startswith("  s") and "-->" not in line) \
        == graph.total_steps


def test_html_is_self_contained(graph: BuildGraph) -> None:
    html = render(graph, "html")
    assert html.startswith("<!DOCTYPE html>")
    assert "http://" not in html and "https://" not in html
    assert "<script src" not in html and "<link" not in html
    assert "&#34;w&#34;" in html or "&quot;w&quot;" in html  # escaped


def test_unknown_format(graph: BuildGraph) -> None:
    with pytest.raises(BakeryError, match="unknown plan format"):
        render(graph, "yaml")
