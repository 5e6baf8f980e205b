"""The on-disk caches of the bake layer: right answers first, speed second."""

from __future__ import annotations

import os
from typing import Any, Dict

import pytest

import bakery.bakefile.evaluate as evaluate_mod
from bakery.bakefile.files import BakeFile
from bakery.bakefile.loader import load_files, plan_print
from bakery.errors import BakeryError

TEXT = 'variable "V" { default = "x" }\ntarget "a" { tags = ["i:${V}"] }\n'


@pytest.fixture()
def cache(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BAKERY_CACHE_DIR", str(tmp_path))
    calls: Dict[str, int] = {"n": 0}
    real = evaluate_mod.evaluate_bodies

    def counting(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(evaluate_mod, "evaluate_bodies", counting)
    return tmp_path, calls


def test_config_cache_hit_and_env_invalidation(cache) -> None:  # type: ignore[no-untyped-def]
    _, calls = cache
    files = [BakeFile("docker-bake.hcl", TEXT)]
    assert load_files(files, {}, {}).targets[0].tags == ["i:x"]
    assert load_files(files, {}, {}).targets[0].tags == ["i:x"]
    assert calls["n"] == 1
    # the variable's environment override changed: evaluate again
    assert load_files(files, {}, {"V": "y"}).targets[0].tags == ["i:y"]
    assert calls["n"] == 2
    # an unrelated variable does not matter
    assert load_files(files, {}, {"V": "y", "OTHER": "1"}).targets[0].tags == ["i:y"]
    assert calls["n"] == 2
    # --var is part of the key
    assert load_files(files, {"V": "z"}, {}).targets[0].tags == ["i:z"]
    assert calls["n"] == 3


def test_changed_file_is_evaluated_again(cache) -> None:  # type: ignore[no-untyped-def]
    _, calls = cache
    load_files([BakeFile("docker-bake.hcl", TEXT)], {}, {})
    cfg = load_files([BakeFile("docker-bake.hcl", TEXT.replace('"x"', '"w"'))], {}, {})
    assert cfg.targets[0].tags == ["i:w"] and calls["n"] == 2


def test_impure_functions_are_never_cached(cache) -> None:  # type: ignore[no-untyped-def]
    _, calls = cache
    files = [BakeFile("docker-bake.hcl", 'target "a" { tags = [uuidv4()] }\n')]
    a = load_files(files, {}, {}).targets[0].tags
    b = load_files(files, {}, {}).targets[0].tags
    assert a != b and calls["n"] == 2


def test_corrupt_cache_entries_are_ignored(cache) -> None:  # type: ignore[no-untyped-def]
    root, calls = cache
    files = [BakeFile("docker-bake.hcl", TEXT)]
    load_files(files, {}, {})
    for dirpath, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(dirpath, n), "wb") as fh:
                fh.write(b"not a pickle")
    assert load_files(files, {}, {}).targets[0].tags == ["i:x"]
    assert calls["n"] == 2


def test_print_cache_checks_secrets_again(cache, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    _, calls = cache
    cwd = str(tmp_path_factory.mktemp("ctx"))
    with open(os.path.join(cwd, "token"), "w") as fh:
        fh.write("s3cret")
    files = [BakeFile("docker-bake.hcl", 'target "a" { secret = ["id=t,src=token"] }\n')]
    text, _ = plan_print(files, {}, {}, cwd, ["a"], [])
    again, _ = plan_print(files, {}, {}, cwd, ["a"], [])
    assert text == again and calls["n"] == 1
    os.unlink(os.path.join(cwd, "token"))
    with pytest.raises(BakeryError, match="failed to stat token"):
        plan_print(files, {}, {}, cwd, ["a"], [])


def test_print_cache_keys_on_targets_and_set(cache) -> None:  # type: ignore[no-untyped-def]
    files = [BakeFile("docker-bake.hcl", TEXT + 'target "b" {}\n')]
    a, _ = plan_print(files, {}, {}, ".", ["a"], [])
    b, _ = plan_print(files, {}, {}, ".", ["b"], [])
    s, _ = plan_print(files, {}, {}, ".", ["a"], ["a.tags=z"])
    env1, _ = plan_print(files, {}, {"X": "1"}, ".", ["a"], ["a.args.X"])
    env2, _ = plan_print(files, {}, {"X": "2"}, ".", ["a"], ["a.args.X"])
    assert '"a"' in a and '"b"' in b and '"z"' in s and a != b
    assert '"X": "1"' in env1 and '"X": "2"' in env2
