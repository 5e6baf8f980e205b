""".dockerignore reading and matching; cases follow moby/patternmatcher's
tests (MatchesOrParentMatches semantics) and its ignorefile reader."""

from __future__ import annotations

from typing import List

import pytest

from bakery.dockerfile.dockerignore import (
    IgnoreMatcher,
    clean_path,
    go_match,
    ignore_file_for,
    read_ignore_patterns,
)
from bakery.errors import BakeryError

# (pattern, path, matches) — patternmatcher's TestMatches table, where
# "inexact" rows (matching through a parent directory) count as matches.
SINGLE = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
    # plain names match a directory and everything below it
    ("docs", "docs/README.md", True),
    ("docs/", "docs/a/b", True),
    ("*.go", "fileutils.go", True),
    ("*", "fileutils.go", True),
    ("./rel/", "rel", True),
]


@pytest.mark.parametrize("pattern,path,expected", SINGLE)
def test_single_pattern(pattern: str, path: str, expected: bool) -> None:
    assert IgnoreMatcher([pattern]).matches(path) is expected


MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["*.go", "!fileutils.go", "fileutils.go"], "fileutils.go", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
]


@pytest.mark.parametrize("patterns,path,expected", MULTI)
def test_order_last_match_wins(patterns: List[str], path: str, expected: bool) -> None:
    assert IgnoreMatcher(patterns).matches(path) is expected


def test_root_is_never_excluded() -> None:
    assert IgnoreMatcher(["*.go"]).matches(".") is False
    assert IgnoreMatcher([]).matches("/any/path/there") is False


@pytest.mark.parametrize("pattern", ["[", "!", "a[", "[^bc", "\\", "[]a]", "[x-]", "[a-b-c]"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(BakeryError):
        IgnoreMatcher([pattern])


def test_bad_pattern_position() -> None:
    with pytest.raises(BakeryError) as info:
        IgnoreMatcher.from_text("ok\n# comment\n\na[\n", ".dockerignore")
    assert info.value.pos is not None and info.value.pos.line == 4


# Go's filepath.Match (used by patternmatcher to validate patterns)
MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("[a-ζ]*", "\u03b1", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "-", True),
    ("[\\-x]", "x", True),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize("pattern,name,expected", MATCH)
def test_go_match(pattern: str, name: str, expected: bool) -> None:
    assert go_match(pattern, name) is expected


def test_read_ignore_patterns() -> None:
    content = (
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n"
        "! /inverted/abs/path\n!\n! \n  # not a comment (indented)\n./x/../y/\n\ufeffbom\n"
    )
    assert read_ignore_patterns(content) == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "!inverted/abs/path",
        "!",
        "!",
        "# not a comment (indented)",
        "y",
        "\ufeffbom",
    ]
    assert read_ignore_patterns("\ufeff# bom comment\r\nfoo\r\n") == ["foo"]


def test_clean_path() -> None:
    assert clean_path("") == "."
    assert clean_path("a//b/./c/..") == "a/b"
    assert clean_path("/../a") == "/a"
    assert clean_path("../../a") == "../../a"
    assert clean_path("/") == "/"


def test_from_text_strips_leading_slash() -> None:
    m = IgnoreMatcher.from_text("/abs\n!/abs/keep\n")
    assert m.matches("abs/x") and not m.matches("abs/keep")
    # the matcher itself, like patternmatcher.New, does not strip it
    assert not IgnoreMatcher(["/abs"]).matches("abs/x")


def test_can_skip_dir() -> None:
    m = IgnoreMatcher(["node_modules", "build", "!build/keep.txt", "logs/**"])
    assert m.can_skip_dir("node_modules")
    assert not m.can_skip_dir("build")  # an exception points inside it
    assert not m.can_skip_dir("src")  # not excluded at all
    assert m.can_skip_dir("logs/x")
    assert m.matches("build/other") and not m.matches("build/keep.txt")
    # an exception with wildcards could match anywhere: walk everything
    wild = IgnoreMatcher(["node_modules", "!logs/*/important"])
    assert not wild.can_skip_dir("node_modules")
    assert wild.matches("node_modules/x")
    plain = IgnoreMatcher(["vendor", "!src"])
    assert plain.can_skip_dir("vendor")
    assert IgnoreMatcher(["a"]).can_skip_dir("a/b")


def test_ignore_file_for() -> None:
    present = {"/ctx/dir/app.Dockerfile.dockerignore", "/ctx/.dockerignore"}
    assert ignore_file_for("/ctx/dir/app.Dockerfile", "/ctx", present.__contains__) == (
        "/ctx/dir/app.Dockerfile.dockerignore"
    )
    assert ignore_file_for("/ctx/Dockerfile", "/ctx", present.__contains__) == "/ctx/.dockerignore"
    present.add("/ctx/Dockerfile.dockerignore")
    assert ignore_file_for("/ctx/Dockerfile", "/ctx", present.__contains__) == (
        "/ctx/Dockerfile.dockerignore"
    )
    assert ignore_file_for("/x/Dockerfile", "/y", lambda p: False) is None
