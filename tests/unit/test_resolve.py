"""Resolution rules (inherits, --set, groups, links) on plain Target records."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from bakery.bakefile.model import Config, Group, Target
from bakery.bakefile.printer import target_to_json
from bakery.bakefile.resolve import merge_targets, normalize_target, read_targets
from bakery.errors import BakeryError


def cfg(*items: Any) -> Config:
    c = Config()
    for it in items:
        (c.groups if isinstance(it, Group) else c.targets).append(it)
    return c


def printed(c: Config, names: List[str], sets: List[str] = (), env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    r = read_targets(c, names, list(sets), env or {})
    return {
        "group": {k: list(v.targets) for k, v in r.groups.items()},
        "target": {k: target_to_json(v) for k, v in r.targets.items()},
    }


@pytest.mark.parametrize(
    "parent,child,key,expected",
    [
        # replaced attributes
        (dict(tags=["a"]), dict(tags=["b"]), "tags", ["b"]),
        (dict(platforms=["linux/amd64"]), dict(platforms=[]), "platforms", None),
        (dict(context="x"), dict(), "context", "x"),
        (dict(dockerfile="A"), dict(dockerfile="B"), "dockerfile", "B"),
        (dict(target="s1"), dict(target="s2"), "target", "s2"),
        (dict(pull=True), dict(pull=False), "pull", False),
        (dict(description="p"), dict(description=""), "description", "p"),
        # merged maps; a null value in the child leaves the parent's
        (dict(args={"A": "1", "B": "2"}), dict(args={"B": "3", "C": "4"}), "args", {"A": "1", "B": "3", "C": "4"}),
        (dict(args={"A": "1"}), dict(args={"A": None}), "args", {"A": "1"}),
        (dict(labels={"l": "1"}), dict(labels={"m": "2"}), "labels", {"l": "1", "m": "2"}),
        # appended lists (and de-duplicated by normalisation)
        (dict(annotations=["a=1"]), dict(annotations=["b=2", "a=1"]), "annotations", ["a=1", "b=2"]),
        (dict(entitlements=["network.host"]), dict(entitlements=["security.insecure"]), "entitlements",
         ["network.host", "security.insecure"]),
        (dict(no_cache_filter=["a"]), dict(no_cache_filter=["b"]), "no-cache-filter", ["a", "b"]),
    ],
)
def test_inherit_merge_rules(parent: dict, child: dict, key: str, expected: Any) -> None:
    c = cfg(Target("p", **parent), Target("c", inherits=("p",), **child))
    out = printed(c, ["c"])["target"]["c"]
    assert out.get(key) == expected


def test_defaults_context_and_dockerfile() -> None:
    out = printed(cfg(Target("a", dockerfile="")), ["a"])["target"]["a"]
    assert out["context"] == "." and out["dockerfile"] == "Dockerfile"


@pytest.mark.parametrize(
    "ctx,expected",
    [("./", "."), ("./demo", "demo"), ("a/../b/", "b"), ("cwd://", "."), ("cwd://x/./y", "x/y"),
     ("https://github.com/a/b.git#main", "https://github.com/a/b.git#main")],
)
def test_context_is_cleaned(ctx: str, expected: str) -> None:
    assert printed(cfg(Target("a", context=ctx)), ["a"])["target"]["a"]["context"] == expected


def test_inherits_chain_order_and_overrides_reach_parents() -> None:
    c = cfg(
        Target("base", args={"A": "base"}, tags=["t"]),
        Target("mid", inherits=("base",), args={"B": "mid"}),
        Target("leaf", inherits=("mid",), args={"C": "leaf"}),
    )
    out = printed(c, ["leaf"], ["base.args.A=set", "leaf.tags+=extra"])["target"]["leaf"]
    assert out["args"] == {"A": "set", "B": "mid", "C": "leaf"}
    assert out["tags"] == ["t", "extra"]


@pytest.mark.parametrize(
    "sets,key,expected",
    [
        (["*.platform=linux/arm64"], "platforms", ["linux/arm64"]),
        # kept as one entry, as buildx prints it (builds split it: Target.build_platforms)
        (["*.platform=linux/amd64,linux/arm64"], "platforms", ["linux/amd64,linux/arm64"]),
        (["a.platform=linux/arm64", "a.platform=linux/amd64"], "platforms", ["linux/arm64", "linux/amd64"]),
        (["a.tags=x", "a.tags=y"], "tags", ["x", "y"]),
        (["a.tags+=x"], "tags", ["orig", "x"]),
        (["a.no-cache=true"], "no-cache", True),
        (["a.pull=0"], "pull", False),
        (["a.args.K=v"], "args", {"K": "v"}),
        (["a.output=type=local,dest=out"], "output", [{"type": "local", "dest": "out"}]),
        (["a.context=sub"], "context", "sub"),
        (["a.network=host"], "entitlements", ["network.host"]),
    ],
)
def test_set_overrides(sets: List[str], key: str, expected: Any) -> None:
    out = printed(cfg(Target("a", tags=["orig"])), ["a"], sets)["target"]["a"]
    assert out.get(key) == expected


def test_set_args_without_value_reads_environment() -> None:
    out = printed(cfg(Target("a")), ["a"], ["a.args.HOME"], {"HOME": "/root"})["target"]["a"]
    assert out["args"] == {"HOME": "/root"}


@pytest.mark.parametrize(
    "sets,message",
    [
        (["nope"], "invalid override key nope, expected target.name"),
        (["a.tags"], "invalid override a.tags, expected target.name=value"),
        (["zzz.tags=x"], "could not find any target matching 'zzz'"),
        (["a.foo=x"], "unknown key: foo"),
        (["a.no-cache=maybe"], "invalid value maybe for boolean key no-cache"),
        (["a.args=x"], "invalid key a.args, args requires name"),
    ],
)
def test_set_errors(sets: List[str], message: str) -> None:
    with pytest.raises(BakeryError) as e:
        printed(cfg(Target("a")), ["a"], sets)
    assert e.value.message == message


def test_default_group_collects_requested_names_sorted() -> None:
    c = cfg(Target("b"), Target("a"), Group("default", ("b",)), Group("g", ("a",)))
    out = printed(c, ["default", "g"])
    assert out["group"] == {"default": ["b", "g"], "g": ["a"]}
    assert set(out["target"]) == {"a", "b"}


def test_nested_groups() -> None:
    c = cfg(Target("a"), Target("b"), Group("x", ("a", "y")), Group("y", ("b", "a")))
    out = printed(c, ["x"])
    assert set(out["target"]) == {"a", "b"}
    assert out["group"] == {"default": ["x"], "x": ["a", "y"], "y": ["b", "a"]}


def test_group_cycle_is_an_error() -> None:
    # buildx fails here too ("failed to find target x"); the message says why
    c = cfg(Target("a"), Target("b"), Group("x", ("a", "y")), Group("y", ("b", "x")))
    with pytest.raises(BakeryError, match="group x cannot be used inside another group: its members form a cycle"):
        printed(c, ["x"])


def test_empty_nested_group_is_an_error() -> None:
    c = cfg(Target("a"), Group("x", ("a", "empty")), Group("empty", ()))
    with pytest.raises(BakeryError, match="group empty cannot be used inside another group: it is empty"):
        printed(c, ["x"])


def test_glob_target_names() -> None:
    c = cfg(Target("app-1"), Target("app-2"), Target("other"))
    assert set(printed(c, ["app-*"])["target"]) == {"app-1", "app-2"}
    with pytest.raises(BakeryError, match="could not find any target matching"):
        printed(c, ["zz*"])


def test_unknown_target_has_a_hint() -> None:
    with pytest.raises(BakeryError) as e:
        printed(cfg(Target("frontend")), ["frontnd"])
    assert e.value.message == "failed to find target frontnd"
    assert e.value.hint == 'did you mean "frontend"?'


def test_linked_targets_are_added_as_cache_only() -> None:
    c = cfg(Target("base", entitlements=["network.host"]), Target("app", contexts={"b": "target:base"}))
    out = printed(c, ["app"])
    assert out["target"]["base"]["output"] == [{"type": "cacheonly"}]
    assert out["target"]["app"]["entitlements"] == ["network.host"]
    assert out["group"]["default"] == ["app"]


@pytest.mark.parametrize(
    "targets,message",
    [
        ([Target("a", contexts={"x": "target:a"})], "target a cannot link to itself"),
        ([Target("a", contexts={"x": "target:b"}), Target("b", contexts={"x": "target:a"})],
         "infinite loop from b to a"),
        ([Target("a", platforms=["linux/amd64", "linux/arm64"], contexts={"x": "target:b"}),
          Target("b", platforms=["linux/amd64", "linux/s390x"])],
         "target b can't be used by a because its platforms ['linux/amd64', 'linux/arm64'] "
         "are not a subset of ['linux/amd64', 'linux/s390x']"),
    ],
)
def test_link_errors(targets: List[Target], message: str) -> None:
    with pytest.raises(BakeryError) as e:
        printed(cfg(*targets), ["a"])
    assert e.value.message == message


def test_merge_is_pure() -> None:
    a = Target("a", tags=["x"], args={"A": "1"})
    b = Target("a", tags=["y"], args={"B": "2"})
    m = merge_targets(a, b)
    assert a.args == {"A": "1"} and m.args == {"A": "1", "B": "2"} and m.tags == ["y"]


def test_normalize_drops_empty_contexts_and_duplicates() -> None:
    t = normalize_target(Target("a", contexts={"x": "", "y": "z"}, tags=["a", "", "a"]))
    assert t.contexts == {"y": "z"} and t.tags == ["a"]


def test_inherits_cycle_is_an_error() -> None:
    c = cfg(Target("a", inherits=("b",)), Target("b", inherits=("c",)), Target("c", inherits=("a",)))
    with pytest.raises(BakeryError) as e:
        printed(c, ["a"])
    assert e.value.message == "inherits cycle: a -> b -> c -> a"


def test_diamond_inheritance_merges_the_shared_parent_once() -> None:
    c = cfg(
        Target("base", annotations=["x=1"], args={"B": "1"}),
        Target("l", inherits=("base",), args={"L": "1"}),
        Target("r", inherits=("base",), args={"R": "1"}),
        Target("leaf", inherits=("l", "r")),
    )
    out = printed(c, ["leaf"])["target"]["leaf"]
    assert out["args"] == {"B": "1", "L": "1", "R": "1"} and out["annotations"] == ["x=1"]


def test_evolve_copies() -> None:
    a = Target("a", tags=["x"])
    b = a.evolve(tags=["y"])
    assert a.tags == ["x"] and b.tags == ["y"] and b.name == "a" and b == Target("a", tags=["y"])


def test_link_to_a_missing_target_names_the_user() -> None:
    c = cfg(Target("b", contexts={"x": "target:zz"}))
    with pytest.raises(BakeryError) as e:
        printed(c, ["b"])
    assert e.value.message == 'target b: contexts names "target:zz", but there is no target zz'
