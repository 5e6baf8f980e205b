"""Sharding the requested targets: balance, dependencies, determinism, errors,
and ``bakery plan|run --shard I/N``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from bakery.bakefile.model import Group, Target
from bakery.errors import BakeryError
from bakery.graph.build import BuildGraph, build_graph
from bakery.graph.shard import parse_shard, shard, shards

from .test_graph_build import AMD64, fake_digest, mini_convert


def target(name: str, runs: int, **kw: object) -> Target:
    """A target of ``runs`` + 1 steps of its own (its own base image)."""
    lines = [f"FROM example/{name}:1"] + [f"RUN step {name} {i}" for i in range(runs)]
    return Target(name, context=".", dockerfile_inline="\n".join(lines) + "\n", **kw)  # type: ignore[arg-type]


def make(targets: Sequence[Target], requested: Optional[Sequence[str]] = None,
         groups: Optional[Dict[str, Group]] = None) -> BuildGraph:
    by_name = {t.name: t for t in targets}
    return build_graph(by_name, list(requested or [t.name for t in targets if not t.linked]),
                       ".", convert=mini_convert, groups=groups or {},
                       file_digest=fake_digest, build_platform=AMD64)


def weights(graph: BuildGraph, names: Sequence[str]) -> int:
    keys = set()
    for n in names:
        keys |= graph.target_nodes(n)
    return len(keys)


# -- balance ----------------------------------------------------------------------

BALANCE: List[Tuple[List[int], int, List[List[str]]]] = [
    # runs per target t0, t1, ... (weight = runs + 1), shards, expected shards
    ([4, 3, 2, 2, 1, 0], 2, [["t0", "t3", "t5"], ["t1", "t2", "t4"]]),
    ([0, 1, 2, 3], 2, [["t0", "t3"], ["t1", "t2"]]),
    ([5, 5, 5], 3, [["t0"], ["t1"], ["t2"]]),
    ([5, 5, 5], 1, [["t0", "t1", "t2"]]),
    ([9, 0, 0, 0], 2, [["t0"], ["t1", "t2", "t3"]]),
    ([2, 2], 3, [["t0"], ["t1"], []]),  # more shards than targets: some are empty
    ([1, 1, 1, 1], 2, [["t0", "t2"], ["t1", "t3"]]),  # ties: request order, lower shard
]


@pytest.mark.parametrize("runs,n,want", BALANCE)
def test_balance_greedy_largest_first(runs: List[int], n: int, want: List[List[str]]) -> None:
    g = make([target(f"t{i}", r) for i, r in enumerate(runs)])
    assert shards(g, n) == want
    assert [shard(g, i, n) for i in range(1, n + 1)] == want


def test_balance_is_within_the_largest_target() -> None:
    runs = [7, 3, 3, 2, 9, 1, 1, 4, 6, 2, 5, 8]
    g = make([target(f"t{i}", r) for i, r in enumerate(runs)])
    for n in (2, 3, 4):
        loads = [weights(g, s) for s in shards(g, n)]
        assert max(loads) - min(loads) <= max(r + 1 for r in runs)
        assert sum(loads) == g.total_steps


# -- dependencies -----------------------------------------------------------------

def dep_targets() -> List[Target]:
    return [
        target("base", 3, linked=True),
        target("api", 1, contexts={"base": "target:base"}),
        target("worker", 1, contexts={"base": "target:base"}),
        target("e2e", 0, depends_on=["cli"]),
        target("cli", 4),
        target("docs", 2),
        target("lint", 0),
    ]


DEPS: List[Tuple[int, List[List[str]]]] = [
    # api and worker share the linked base; e2e depends_on cli
    (1, [["api", "worker", "e2e", "cli", "docs", "lint"]]),
    (2, [["api", "worker", "lint"], ["e2e", "cli", "docs"]]),
    (3, [["api", "worker"], ["e2e", "cli"], ["docs", "lint"]]),
    (4, [["api", "worker"], ["e2e", "cli"], ["docs"], ["lint"]]),
    (5, [["api", "worker"], ["e2e", "cli"], ["docs"], ["lint"], []]),
]


@pytest.mark.parametrize("n,want", DEPS)
def test_targets_that_need_each_other_share_a_shard(n: int, want: List[List[str]]) -> None:
    g = make(dep_targets())
    got = shards(g, n)
    assert got == want
    where = {t: i for i, s in enumerate(got) for t in s}
    assert where["api"] == where["worker"]  # linked to one base
    assert where["e2e"] == where["cli"]  # depends_on


def test_linked_base_requested_too_goes_with_its_users() -> None:
    g = make(dep_targets(), ["lint", "base", "api", "docs"])
    for n in (2, 3, 4):
        where = {t: i for i, s in enumerate(shards(g, n)) for t in s}
        assert where["base"] == where["api"]
        assert sorted(where) == ["api", "base", "docs", "lint"]


def test_groups_are_expanded_in_request_order() -> None:
    g = make(dep_targets(), ["all"], groups={"all": Group("all", ("lint", "docs", "cli", "e2e"))})
    assert shards(g, 1) == [["lint", "docs", "cli", "e2e"]]
    assert sorted(t for s in shards(g, 2) for t in s) == ["cli", "docs", "e2e", "lint"]


# -- determinism ------------------------------------------------------------------

def test_deterministic_and_a_partition() -> None:
    runs = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    a = make([target(f"t{i}", r) for i, r in enumerate(runs)])
    b = make([target(f"t{i}", r) for i, r in enumerate(runs)])
    for n in range(1, 8):
        sa = shards(a, n)
        assert sa == shards(b, n)
        flat = [t for s in sa for t in s]
        assert sorted(flat) == sorted(a.matrix_targets()) and len(flat) == len(set(flat))


def test_same_split_in_another_process() -> None:
    code = (
        "import json, sys; sys.path.insert(0, '.');"
        "from tests.unit.test_graph_shard import dep_targets, make;"
        "from bakery.graph.shard import shards;"
        "print(json.dumps(shards(make(dep_targets()), 3)))"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    outs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                           capture_output=True, text=True, check=True)
        outs.add(r.stdout)
    assert len(outs) == 1
    assert json.loads(outs.pop()) == shards(make(dep_targets()), 3)


# -- errors -----------------------------------------------------------------------

@pytest.mark.parametrize("spec,want", [
    ("1/3", (1, 3)), ("3/3", (3, 3)), (" 2 / 4 ", (2, 4)), ("1/1", (1, 1)),
])
def test_parse_shard(spec: str, want: Tuple[int, int]) -> None:
    assert parse_shard(spec) == want


@pytest.mark.parametrize("spec", ["0/3", "4/3", "x", "", "1/0", "0/0", "1/3/4", "-1/3", "1.5/3", "a/b"])
def test_parse_shard_rejects(spec: str) -> None:
    with pytest.raises(BakeryError) as ei:
        parse_shard(spec)
    assert ei.value.hint and "--shard I/" in ei.value.hint


@pytest.mark.parametrize("i,n", [(0, 3), (4, 3), (1, 0), ("x", 3), (1, "3"), (True, 1)])
def test_shard_rejects(i: object, n: object) -> None:
    g = make([target("a", 1)])
    with pytest.raises(BakeryError) as ei:
        shard(g, i, n)  # type: ignore[arg-type]
    assert ei.value.hint


# -- the command line ---------------------------------------------------------------

BAKE = """
group "default" { targets = ["api", "worker", "cli", "e2e"] }
target "base" {
  dockerfile-inline = "FROM alpine:3.19\\nRUN apk add --no-cache ca-certificates\\nRUN echo base\\n"
}
target "api" {
  contexts = { base = "target:base" }
  dockerfile-inline = "FROM base\\nRUN echo api\\n"
}
target "worker" {
  contexts = { base = "target:base" }
  dockerfile-inline = "FROM base\\nRUN echo worker\\n"
}
target "cli" {
  dockerfile-inline = "FROM golang:1.22\\nRUN echo one\\nRUN echo two\\nRUN echo three\\nRUN echo four\\n"
}
target "e2e" {
  depends_on = ["cli"]
  dockerfile-inline = "FROM golang:1.22\\nRUN echo e2e\\n"
}
"""


def bakery(args: List[str], cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAKERY_")}
    env["BAKERY_CACHE_DIR"] = os.path.join(cwd, ".cache")
    return subprocess.run([sys.executable, "-m", "bakery", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture()
def project(tmp_path) -> str:  # type: ignore[no-untyped-def]
    (tmp_path / "docker-bake.hcl").write_text(BAKE)
    return str(tmp_path)


def test_plan_shard_shows_only_its_targets(project: str) -> None:
    seen: List[str] = []
    for i in (1, 2):
        r = bakery(["plan", "--format", "github-matrix", "--shard", f"{i}/2"], project)
        assert r.returncode == 0, r.stderr
        names = [e["target"] for e in json.loads(r.stdout)["include"]]
        assert names
        seen.extend(names)
    assert sorted(seen) == ["api", "cli", "e2e", "worker"]
    r = bakery(["plan", "--format", "json", "--shard", "1/2"], project)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    together = [{"api", "worker"}, {"cli", "e2e"}]
    assert {t for t, v in doc["targets"].items() if v["requested"]} in together
    r = bakery(["plan", "--shard", "2/2"], project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("summary: ")
    assert r.stdout.splitlines()[-1].endswith(", 0 cached")


def test_plan_and_run_reject_bad_shards(project: str) -> None:
    for cmd in (["plan"], ["run"]):
        for spec in ("0/2", "3/2", "x"):
            r = bakery([*cmd, "--shard", spec], project)
            assert r.returncode == 1, (cmd, spec, r.stdout, r.stderr)
            assert "invalid shard" in r.stderr and "hint: write --shard I/" in r.stderr


def test_plan_split_platforms(project: str) -> None:
    r = bakery(["plan", "--format", "github-matrix", "--split", "platforms", "api"], project)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"include": [{"target": "api", "platform": "local"}]}
