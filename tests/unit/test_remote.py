"""Remote sources without a network: file names, dates, checksums, git refs,
keys, and the engine's run-time pins (with the fetch replaced by a fake)."""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any, Dict, List

import pytest

from bakery.dockerfile.gitref import GitRef, parse_git_ref
from bakery.engine import remote
from bakery.engine.executor import Engine
from bakery.engine.snapshots import Snapshotter
from bakery.engine.store import Store
from bakery.graph.keys import op_key
from bakery.graph.ops import (
    Copy,
    FileOp,
    GitSource,
    HttpSource,
    Ref,
    ScratchSource,
    SourceLocation,
    parse_checksum,
)


@pytest.mark.parametrize("url,manual,cd,expected", [
    ("http://h/a/b.tgz", "", "", "b.tgz"),
    ("http://h/a/b.tgz?x=1#f", "", "", "b.tgz"),
    ("http://h/", "", "", "index"),
    ("http://h", "", "", "index"),
    ("http://h/a/", "", "", "a"),
    ("http://h/a", "", 'attachment; filename="real.txt"', "real.txt"),
    ("http://h/a", "", "attachment; filename=../../etc/passwd", "passwd"),
    ("http://h/a", "", 'attachment; filename="dir/"', "a"),
    ("http://h/a", "", "attachment; filename*=UTF-8''na%C3%AFve.txt", "naïve.txt"),
    ("http://h/a", "given", 'attachment; filename="real.txt"', "given"),
    ("http://h/a", "../x/y", "", "y"),
    ("http://h/a", "..", "", "index"),
])
def test_http_filename(url: str, manual: str, cd: str, expected: str) -> None:
    assert remote.http_filename(url, manual, cd) == expected


def test_last_modified() -> None:
    assert remote.last_modified("Sun, 13 Sep 2020 12:26:40 GMT") == 1_600_000_000
    assert remote.last_modified("Sunday, 13-Sep-20 12:26:40 GMT") == 1_600_000_000
    assert remote.last_modified("") is None
    assert remote.last_modified("yesterday") is None


def test_parse_checksum() -> None:
    assert parse_checksum("sha256:" + "a" * 64) == ("sha256", "a" * 64)
    assert parse_checksum("sha512:" + "0" * 128)[0] == "sha512"
    for bad, msg in (("abc", "format"), ("md5:" + "a" * 32, "unsupported"),
                     ("sha256:" + "A" * 64, "length or characters"), ("sha256:abc", "length")):
        with pytest.raises(ValueError, match=msg):
            parse_checksum(bad)


@pytest.mark.parametrize("src,expected", [
    ("https://h/r.git", GitRef("https://h/r.git")),
    ("https://h/r.git#v1", GitRef("https://h/r.git", "v1")),
    ("https://h/r.git#:sub", GitRef("https://h/r.git", "", "sub")),
    ("git://h/r#main:a/b", GitRef("git://h/r", "main", "a/b")),
    ("ssh://git@h/r#x", GitRef("ssh://git@h/r", "x")),
    ("git@h:o/r.git#dev", GitRef("git@h:o/r.git", "dev")),
    ("https://h/r.git##ref=v2,subdir=d", GitRef("https://h/r.git", "v2", "d")),
    ("https://h/r.git##commit=abc123", GitRef("https://h/r.git", "abc123", "", "abc123")),
    ("https://h/file.tgz", None),
    ("http://h/r.git.tgz", None),
    ("ftp://h/r.git", None),
    ("local/path", None),
    ("./x.git", None),
])
def test_parse_git_ref(src: str, expected: Any) -> None:
    assert parse_git_ref(src) == expected


def test_http_source_keys() -> None:
    a = HttpSource("http://h/a", "a")
    assert op_key(a, None) == op_key(HttpSource("http://h/a", "a", description="x",
                                                location=SourceLocation("D", 1, 1)), None)
    assert op_key(a, None) != op_key(HttpSource("http://h/b", "a"), None)
    assert op_key(a, None) != op_key(HttpSource("http://h/a", "a", checksum="sha256:" + "1" * 64), None)
    assert op_key(GitSource("git://h/r", "v1"), None) != op_key(GitSource("git://h/r", "v2"), None)


def test_http_pin_depends_on_content_name_mode_and_date() -> None:
    src = HttpSource("http://h/a", "a")
    r = remote.HttpResult("sha256:" + "1" * 64, "a", "", 1)
    pins = {
        remote.http_pin(src, r),
        remote.http_pin(src, remote.HttpResult("sha256:" + "2" * 64, "a", "", 1)),
        remote.http_pin(src, remote.HttpResult(r.digest, "b", "", 1)),
        remote.http_pin(src, remote.HttpResult(r.digest, "a", "Sun, 13 Sep 2020 12:26:40 GMT", 1)),
        remote.http_pin(HttpSource("http://h/a", "a", perm=0o644), r),
    }
    assert len(pins) == 5
    # the URL itself is not part of it: the same file from a mirror is the same content
    assert remote.http_pin(HttpSource("http://mirror/a", "a"), r) == remote.http_pin(src, r)


# -- the engine's pins -----------------------------------------------------------


class FakeWeb:
    """Replaces remote.fetch_http: serves ``content`` and counts fetches;
    with ``etags`` it sends ETags and answers If-None-Match with 304."""

    def __init__(self, etags: bool = False) -> None:
        self.content: Dict[str, bytes] = {}
        self.fetches: List[str] = []
        self.not_modified = 0
        self.etags = etags

    def fetch(self, src: HttpSource, dest_dir: str, timeout: float = 0, etag: str = "") -> remote.HttpResult:
        self.fetches.append(src.url)
        data = self.content[src.url]
        tag = f'"{hashlib.md5(data).hexdigest()}"' if self.etags else ""
        if etag and etag == tag:
            self.not_modified += 1
            return remote.HttpResult("", "", "", 0, etag=etag, not_modified=True)
        with open(os.path.join(dest_dir, src.filename), "wb") as fh:
            fh.write(data)
        os.chmod(os.path.join(dest_dir, src.filename), 0o600)
        return remote.HttpResult("sha256:" + hashlib.sha256(data).hexdigest(), src.filename, "",
                                 len(data), etag=tag)


def _graph(*leaves: Any) -> tuple:
    from bakery.graph.keys import op_inputs

    ops: Dict[str, Any] = {}
    deps: Dict[str, tuple] = {}

    def add(op: Any) -> str:
        k = op_key(op, None)
        if k not in ops:
            ops[k] = op
            deps[k] = tuple(add(r.op) for r, _ in op_inputs(op))
        return k

    return ops, deps, [add(x) for x in leaves]


def test_changed_remote_content_reruns_only_the_steps_after_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    web = FakeWeb()
    monkeypatch.setattr(remote, "fetch_http", web.fetch)
    web.content["http://h/a"] = b"one"
    src = HttpSource("http://h/a", "a")
    copy = FileOp(Ref(ScratchSource()), (Copy(Ref(src), ("a",), "/x", dir_contents_only=False,
                                              follow_symlinks=False, allow_wildcard=False),))
    other = FileOp(Ref(ScratchSource()), ())
    ops, deps, (root, other_key) = _graph(copy, other)
    store = Store(str(tmp_path / "store"))

    def run() -> Engine:
        e = Engine(store, sandbox=None, snapshotter=Snapshotter(store, "copy"), jobs=2)
        states = e.run(ops, deps, [root, other_key])
        d = str(tmp_path / "out")
        e.snaps.materialize(states[root].layers, d)
        with open(os.path.join(d, "x"), "rb") as fh:
            assert fh.read() == web.content["http://h/a"]
        shutil.rmtree(d)
        return e

    first = run()
    assert set(first.executed) == {op_key(src, None), root, other_key, op_key(ScratchSource(), None)}
    second = run()  # the URL is fetched again (its content is its key); the copy is cached
    assert set(second.executed) == {op_key(src, None)}
    web.content["http://h/a"] = b"two"
    third = run()  # new content: the copy runs again; the unrelated step stays cached
    assert set(third.executed) == {op_key(src, None), root}
    assert len(web.fetches) == 3


def test_a_checksummed_url_is_cached_by_its_key(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    web = FakeWeb()
    monkeypatch.setattr(remote, "fetch_http", web.fetch)
    web.content["http://h/a"] = b"one"
    src = HttpSource("http://h/a", "a", checksum="sha256:" + "7" * 64)
    ops, deps, (root,) = _graph(src)
    store = Store(str(tmp_path / "store"))
    for _ in range(2):
        Engine(store, sandbox=None, snapshotter=Snapshotter(store, "copy")).run(ops, deps, [root])
    assert web.fetches == ["http://h/a"]  # the second run trusts the record


def test_an_unchanged_etag_is_not_fetched_again(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    web = FakeWeb(etags=True)
    monkeypatch.setattr(remote, "fetch_http", web.fetch)
    web.content["http://h/a"] = b"one"
    src = HttpSource("http://h/a", "a")
    copy = FileOp(Ref(ScratchSource()), (Copy(Ref(src), ("a",), "/x", dir_contents_only=False),))
    ops, deps, (root,) = _graph(copy)
    store = Store(str(tmp_path / "store"))

    def run() -> Engine:
        e = Engine(store, sandbox=None, snapshotter=Snapshotter(store, "copy"))
        states = e.run(ops, deps, [root])
        d = str(tmp_path / "out")
        e.snaps.materialize(states[root].layers, d)
        with open(os.path.join(d, "x"), "rb") as fh:
            assert fh.read() == web.content["http://h/a"]
        shutil.rmtree(d)
        return e

    assert set(run().executed) == {op_key(src, None), root, op_key(ScratchSource(), None)}
    assert run().executed == {} and web.not_modified == 1  # 304: nothing runs
    web.content["http://h/a"] = b"two"  # a new ETag: fetched, and the copy runs again
    assert set(run().executed) == {op_key(src, None), root}
    assert run().executed == {} and web.not_modified == 2
    # --no-cache asks unconditionally
    e = Engine(store, sandbox=None, snapshotter=Snapshotter(store, "copy"), no_cache=True)
    e.run(ops, deps, [root])
    assert web.not_modified == 2 and len(web.fetches) == 5
