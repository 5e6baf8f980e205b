"""Local context hashing on real temporary directories."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Sequence

import pytest

from bakery.errors import BakeryError
from bakery.graph.context import ContextHasher, has_wildcards, normalize_pattern
from bakery.graph.ops import LocalSource

OLD = time.time() - 3600  # mtimes safely outside the racy window


def write(root: str, rel: str, data: str = "x", mode: int = 0o644, old: bool = True) -> str:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(data)
    os.chmod(path, mode)
    if old:
        os.utime(path, (OLD, OLD))
    return path


def read_json(path: str) -> Any:
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture
def ctx(tmp_path: object) -> str:
    root = os.path.join(str(tmp_path), "ctx")
    write(root, "a.txt", "alpha")
    write(root, "b.txt", "beta")
    write(root, "src/main.go", "package main")
    write(root, "src/lib/util.go", "package lib")
    write(root, "docs/guide.md", "guide")
    write(root, "docs/README.md", "readme")
    return root


def digest(root: str, patterns: Sequence[str], exclude: Sequence[str] = (),
           include: Sequence[str] = ()) -> str:
    src = LocalSource("context", root, include=tuple(include), exclude=tuple(exclude))
    return ContextHasher(None)(src, tuple(patterns))


def test_content_changes_change_the_digest(ctx: str) -> None:
    before = digest(ctx, ["a.txt"])
    assert before.startswith("sha256:")
    write(ctx, "a.txt", "ALPHA")
    assert digest(ctx, ["a.txt"]) != before


def test_mtime_only_changes_do_not(ctx: str) -> None:
    before = digest(ctx, ["."])
    os.utime(os.path.join(ctx, "a.txt"), (OLD + 100, OLD + 100))
    os.utime(os.path.join(ctx, "src"), (OLD + 100, OLD + 100))
    assert digest(ctx, ["."]) == before


def test_mode_changes_change_the_digest(ctx: str) -> None:
    before = digest(ctx, ["a.txt"])
    os.chmod(os.path.join(ctx, "a.txt"), 0o755)
    assert digest(ctx, ["a.txt"]) != before


def test_symlinks(ctx: str) -> None:
    os.symlink("a.txt", os.path.join(ctx, "link"))
    in_dir = digest(ctx, ["."])
    named = digest(ctx, ["link"])
    # retargeting the link changes both the walk and the named path
    os.unlink(os.path.join(ctx, "link"))
    os.symlink("b.txt", os.path.join(ctx, "link"))
    assert digest(ctx, ["."]) != in_dir
    assert digest(ctx, ["link"]) != named
    # a named link follows to its target: the target's content counts
    before = digest(ctx, ["link"])
    write(ctx, "b.txt", "BETA")
    assert digest(ctx, ["link"]) != before


def test_symlinks_in_paths_stay_inside_the_root(ctx: str, tmp_path: object) -> None:
    write(str(tmp_path), "outside/secret.txt", "nope")
    os.symlink("/src", os.path.join(ctx, "abs"))  # absolute: resolved inside the root
    os.symlink("../../outside", os.path.join(ctx, "up"))  # cannot climb out either
    assert digest(ctx, ["abs/main.go"]) != digest(ctx, ["src/lib/util.go"])
    with pytest.raises(BakeryError, match=re.escape('"/up/secret.txt": not found')):
        digest(ctx, ["up/secret.txt"])


def test_directories_are_hashed_recursively(ctx: str) -> None:
    before = digest(ctx, ["src"])
    write(ctx, "src/lib/util.go", "package lib // changed")
    assert digest(ctx, ["src"]) != before
    before = digest(ctx, ["src"])
    write(ctx, "src/lib/new.go", "package lib")
    assert digest(ctx, ["src"]) != before
    # a file outside the copied directory does not matter
    before = digest(ctx, ["src"])
    write(ctx, "a.txt", "changed")
    assert digest(ctx, ["src"]) == before


def test_paths_are_normalised(ctx: str) -> None:
    assert digest(ctx, ["/a.txt"]) == digest(ctx, ["./a.txt"]) == digest(ctx, ["x/../a.txt"])
    assert normalize_pattern("/") == normalize_pattern("") == normalize_pattern("./") == "."
    assert has_wildcards("*.go") and has_wildcards("a?") and has_wildcards("[ab]")
    assert not has_wildcards("a\\*b")


def test_missing_path_is_buildkits_error(ctx: str) -> None:
    with pytest.raises(BakeryError) as e:
        digest(ctx, ["x"])
    assert str(e.value) == 'failed to compute cache key: "/x": not found'
    with pytest.raises(BakeryError, match=re.escape('"/src/nope.go": not found')):
        digest(ctx, ["src/nope.go"])
    with pytest.raises(BakeryError, match="not found"):
        digest(os.path.join(ctx, "no-such-dir"), ["."])


def test_wildcards_match_per_segment(ctx: str) -> None:
    write(ctx, "sub/c.txt", "gamma")
    stars = digest(ctx, ["*.txt"])
    assert stars == digest(ctx, ["*.txt"])
    # sub/c.txt is not matched by *.txt: changing it changes nothing
    write(ctx, "sub/c.txt", "GAMMA")
    assert digest(ctx, ["*.txt"]) == stars
    write(ctx, "b.txt", "BETA")
    assert digest(ctx, ["*.txt"]) != stars
    # a new match changes the digest
    before = digest(ctx, ["*.txt"])
    write(ctx, "z.txt", "zeta")
    assert digest(ctx, ["*.txt"]) != before
    # wildcards in directory segments, and classes
    before = digest(ctx, ["src/*/util.go"])
    write(ctx, "src/lib/util.go", "changed")
    assert digest(ctx, ["src/*/util.go"]) != before
    before = digest(ctx, ["[ab].txt"])
    write(ctx, "b.txt", "class")
    assert digest(ctx, ["[ab].txt"]) != before


def test_a_wildcard_matching_nothing_is_not_an_error(ctx: str) -> None:
    empty = digest(ctx, ["*.rs"])
    assert empty == digest(ctx, ["*.rs"])
    write(ctx, "main.rs", "fn main() {}")
    assert digest(ctx, ["*.rs"]) != empty


def test_dockerignore_exclusions(ctx: str) -> None:
    exclude = ["docs", "!docs/README.md", "*.txt"]
    whole = digest(ctx, ["."], exclude)
    # excluded files do not count...
    write(ctx, "docs/guide.md", "changed")
    write(ctx, "a.txt", "changed")
    assert digest(ctx, ["."], exclude) == whole
    # ...the exception does
    write(ctx, "docs/README.md", "changed")
    assert digest(ctx, ["."], exclude) != whole
    # an excluded path does not exist for COPY
    with pytest.raises(BakeryError, match=re.escape('"/a.txt": not found')):
        digest(ctx, ["a.txt"], exclude)
    assert digest(ctx, ["docs"], exclude) != digest(ctx, ["docs"])
    # wildcards skip excluded matches
    assert digest(ctx, ["docs/*.md"], exclude) == digest(ctx, ["docs/*.md"], ["docs/guide.md"])


def test_include_patterns_do_not_hide_files(ctx: str) -> None:
    os.symlink("a.txt", os.path.join(ctx, "link"))
    # the frontend lists what COPY reads; a symlink target outside it still counts
    assert digest(ctx, ["link"], include=["link"]) == digest(ctx, ["link"])


def test_hashing_is_lazy_and_memoised(ctx: str) -> None:
    h = ContextHasher(None)
    src = LocalSource("context", ctx)
    h(src, ("a.txt",))
    assert h.reads == 1  # only the file asked for
    h(src, ("a.txt",))
    h(src, ("src",))
    assert h.reads == 3
    h(src, (".",))
    assert h.reads == 6  # the rest, each file once


def test_metadata_cache_avoids_rereading(ctx: str, tmp_path: object) -> None:
    cache = os.path.join(str(tmp_path), "cache", "meta.json")
    src = LocalSource("context", ctx)
    first = ContextHasher(cache)
    d1 = first(src, (".",))
    assert first.reads == 6
    first.save()
    assert read_json(cache)["version"] == 1

    second = ContextHasher(cache)
    assert second(src, (".",)) == d1
    assert second.reads == 0

    # a changed file is read again (and only it); same size, same mtime as before
    path = os.path.join(ctx, "a.txt")
    write(ctx, "a.txt", "ALPHA")
    third = ContextHasher(cache)
    assert third(src, (".",)) != d1
    assert third.reads == 1
    third.save()
    fourth = ContextHasher(cache)
    fourth(src, (".",))
    assert fourth.reads == 0
    assert os.stat(path).st_mtime == OLD


def test_recently_modified_files_are_not_remembered(ctx: str, tmp_path: object) -> None:
    cache = os.path.join(str(tmp_path), "meta.json")
    write(ctx, "fresh.txt", "new", old=False)
    src = LocalSource("context", ctx)
    h = ContextHasher(cache, racy_window=60)
    h(src, ("fresh.txt", "a.txt"))
    h.save()
    again = ContextHasher(cache, racy_window=60)
    again(src, ("fresh.txt", "a.txt"))
    assert again.reads == 1  # fresh.txt only


def test_a_broken_cache_file_is_ignored(ctx: str, tmp_path: object) -> None:
    cache = os.path.join(str(tmp_path), "meta.json")
    with open(cache, "w") as fh:
        fh.write("{not json")
    h = ContextHasher(cache)
    assert h(LocalSource("context", ctx), ("a.txt",)) == digest(ctx, ["a.txt"])
    h.save()
    assert read_json(cache)["version"] == 1
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith(".tmp-")]
