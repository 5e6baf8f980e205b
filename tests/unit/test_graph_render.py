"""``bakery plan`` renderings against golden files in tests/data/graph/.

Regenerate with ``UPDATE_GOLDEN=1 python3 -m pytest tests/unit/test_graph_render.py``
and review the diff.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import shutil
import subprocess
import sys
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
       "matrix": "matrix.json", "github-matrix": "github-matrix.json"}


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


def test_github_matrix_one_entry_per_target(graph: BuildGraph) -> None:
    want = {"include": [{"target": "api"}, {"target": "worker"}, {"target": "e2e"}]}
    assert json.loads(render(graph, "github-matrix")) == want
    assert json.loads(render(graph, "matrix", split="targets")) == want
    split = json.loads(render(graph, "github-matrix", split="platforms"))
    assert split == json.loads(render(graph, "matrix"))
    text = render(graph, "github-matrix")
    assert "\n" not in text.rstrip("\n")  # one line, for $GITHUB_OUTPUT


def test_unknown_split(graph: BuildGraph) -> None:
    with pytest.raises(BakeryError, match="unknown matrix split"):
        render(graph, "github-matrix", split="arch")


def test_text_marks_cached_steps_and_sums_up(graph: BuildGraph) -> None:
    order = graph.order()
    hit = set(order[:3])
    text = render(graph, "text", cached=hit.__contains__)
    lines = text.splitlines()
    marked = [ln for ln in lines if ln.startswith("  #") and ln.endswith("  cached")]
    assert len(marked) == 3
    for k in order[:3]:
        assert any(graph.nodes[k].short in ln for ln in marked)
    platforms = {e.platform for e in graph.exports.values()}
    assert lines[-1] == (
        f"summary: {len(graph.targets)} targets, {len(platforms)} platforms, "
        f"{graph.total_steps} nodes, {graph.shared_steps} shared, 3 cached"
    )
    plain = render(graph, "text")
    assert "  cached" not in plain
    assert plain.splitlines()[-1].startswith("summary: ") and "cached" not in plain.splitlines()[-1]


def test_cached_is_asked_about_every_step_once(graph: BuildGraph) -> None:
    asked: list = []
    render(graph, "text", cached=lambda k: asked.append(k) or False)
    assert sorted(asked) == sorted(graph.nodes)


def test_dot_renders_with_graphviz(graph: BuildGraph, tmp_path: Any) -> None:
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("graphviz `dot` is not installed (Debian package: graphviz)")
    src = tmp_path / "plan.dot"
    src.write_text(render(graph, "dot"), encoding="utf-8")
    r = subprocess.run([dot, "-Tsvg", str(src)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "<svg" in r.stdout
    assert r.stderr.strip() == "", r.stderr  # no syntax warnings either
    svg = html.unescape(r.stdout)  # graphviz writes "-" as &#45;
    for e in graph.exports.values():
        assert f"{e.target}@{e.platform}" in svg


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def plan_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    with open(os.path.join(ROOT, "schemas", "plan.schema.json"), encoding="utf-8") as fh:
        schema = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_json_validates_against_plan_schema(graph: BuildGraph) -> None:
    v = plan_validator()
    data = json.loads(render(graph, "json"))
    errors = sorted(v.iter_errors(data), key=str)
    assert not errors, [e.message for e in errors]
    assert any("after" in s for s in data["steps"])  # the optional keys are exercised
    assert any(s["kind"] == "local" for s in data["steps"])


def test_plan_schema_rejects_undocumented_or_missing_keys(graph: BuildGraph) -> None:
    v = plan_validator()
    data = json.loads(render(graph, "json"))
    data["steps"][0]["surprise"] = 1
    assert not v.is_valid(data)
    data = json.loads(render(graph, "json"))
    del data["counts"]
    assert not v.is_valid(data)
    data = json.loads(render(graph, "json"))
    data["steps"][0]["kind"] = "magic"
    assert not v.is_valid(data)


def test_cli_json_of_the_example_validates(tmp_path: Any) -> None:
    v = plan_validator()
    env = {k: val for k, val in os.environ.items() if k not in ("VERSION", "REGISTRY")}
    env["BAKERY_CACHE_DIR"] = str(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "bakery", "plan", "--format", "json"],
        cwd=os.path.join(ROOT, "examples", "monorepo"), env=env, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    errors = sorted(v.iter_errors(data), key=str)
    assert not errors, [e.message for e in errors]
    assert data["counts"]["steps"] == len(data["steps"]) > 0
