"""Content cache keys of operations."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import pytest

from bakery.errors import BakeryError
from bakery.graph.keys import CANONICAL_PREFIX, Keyer, canonical, op_key, short_key
from bakery.graph.ops import (
    Copy,
    Exec,
    FileOp,
    ImageSource,
    LocalSource,
    Merge,
    Mkdir,
    Mkfile,
    Mount,
    Platform,
    Ref,
    Rm,
    ScratchSource,
    SourceLocation,
    Symlink,
)

AMD64 = Platform("linux", "amd64")
BUSYBOX = "docker.io/library/busybox:latest"


class Files:
    """A file_digest callback backed by a dict, counting calls."""

    def __init__(self, contents: Dict[Tuple[str, ...], str]) -> None:
        self.contents = contents
        self.calls: List[Tuple[LocalSource, Tuple[str, ...]]] = []

    def __call__(self, source: LocalSource, patterns: Tuple[str, ...]) -> str:
        self.calls.append((source, patterns))
        return self.contents.get(patterns, "sha256:" + "e" * 64)


def dag(cmd: str = "echo hi > /f", context: str = "/repo", description: str = "") -> Exec:
    base = Ref(ImageSource(BUSYBOX, AMD64))
    ctx = Ref(LocalSource("context", context, exclude=(".git",)))
    copied = FileOp(base, (Copy(ctx, ("app.py",), "/app/"),), AMD64, description=description)
    return Exec(
        rootfs=Ref(copied), args=("/bin/sh", "-c", cmd), env=("PATH=/usr/bin:/bin",),
        cwd="/app", platform=AMD64, description=description,
    )


def key(op: Any, files: Any = None) -> str:
    return op_key(op, files or Files({}))


def test_keys_look_like_digests() -> None:
    k = key(dag())
    assert k.startswith("sha256:") and len(k) == 7 + 64
    assert short_key(k) == k[7:19]


def test_equal_ops_in_separately_built_dags_have_equal_keys() -> None:
    a, b = dag(), dag()
    assert a is not b and a.rootfs is not b.rootfs
    keyer = Keyer(Files({}))
    assert keyer.key(a) == keyer.key(b)
    assert key(a) == key(b)  # and with separate memos


def test_compare_false_fields_do_not_change_keys() -> None:
    plain = dag()
    labelled = dag(description="[app 2/3] COPY app.py /app/")
    located = dataclasses.replace(plain, location=SourceLocation("Dockerfile", 3, 4),
                                  description="RUN echo hi")
    assert key(plain) == key(labelled) == key(located)
    merge = Merge((plain.rootfs, Ref(plain)), description="x")
    assert key(merge) == key(dataclasses.replace(merge, description="y"))


def _other(value: Any, f: dataclasses.Field) -> Any:
    """A value different from ``value`` of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, bytes):
        return value + b"x"
    if isinstance(value, tuple):
        if f.name == "mounts":
            return (Mount("tmpfs", "/tmp"),)
        if f.name == "actions":
            return (*value, Rm("/x"))
        if f.name == "inputs":
            return value[:1]
        return (*value, "x")
    if isinstance(value, Platform):
        return Platform("linux", "arm64")
    if isinstance(value, Ref):
        return Ref(ImageSource("docker.io/library/alpine:latest", AMD64))
    if value is None:
        return {"base": Ref(ScratchSource()), "location": None, "description": ""}.get(f.name, 7)
    raise AssertionError(f"no other value for {f.name}={value!r}")


def _variants() -> List[Tuple[str, Any, Any]]:
    """(label, op, op with one compare=True field changed) for every field."""
    img = ImageSource(BUSYBOX, AMD64)
    ctx = Ref(LocalSource("context", "/repo"))
    ops: List[Any] = [
        img,
        LocalSource("context", "/repo", include=("a",), exclude=("b",)),
        dag(),
        FileOp(Ref(img), (Mkdir("/d"),), AMD64),
        Merge((Ref(img), Ref(ScratchSource()))),
    ]
    out: List[Tuple[str, Any, Any]] = []
    for op in ops:
        for f in dataclasses.fields(op):
            if f.compare:
                value = getattr(op, f.name)
                out.append((f"{type(op).__name__}.{f.name}", op,
                            dataclasses.replace(op, **{f.name: _other(value, f)})))
    # nested records: every field of Mount and of each file action
    mount = Mount("bind", "/src", source=ctx, selector="sub", mode=0o755, uid=1, gid=2, size=3)
    actions: List[Any] = [
        Copy(ctx, ("a",), "/a"), Mkdir("/d"), Mkfile("/f", b"data"), Rm("/r"), Symlink("/l", "t"),
        mount,
    ]
    for rec in actions:
        for f in dataclasses.fields(rec):
            if not f.compare:
                continue
            value = getattr(rec, f.name)
            changed = dataclasses.replace(rec, **{f.name: _other(value, f)})
            wrap = (lambda r: dataclasses.replace(dag(), mounts=(r,))) if isinstance(rec, Mount) \
                else (lambda r: FileOp(Ref(img), (r,), AMD64))
            out.append((f"{type(rec).__name__}.{f.name}", wrap(rec), wrap(changed)))
    return out


@pytest.mark.parametrize("label,op,changed", _variants(), ids=[v[0] for v in _variants()])
def test_every_compared_field_changes_the_key(label: str, op: Any, changed: Any) -> None:
    assert op != changed
    assert key(op) != key(changed), label


def test_an_input_change_changes_the_key() -> None:
    a = dag()
    copied = a.rootfs.op
    assert isinstance(copied, FileOp)
    pinned = Ref(ImageSource(BUSYBOX, AMD64, "sha256:1"))
    deeper = dataclasses.replace(a, rootfs=Ref(dataclasses.replace(copied, base=pinned)))
    assert key(a) != key(deeper)


def test_file_content_changes_the_key_and_paths_do_not() -> None:
    one = Files({("app.py",): "sha256:" + "1" * 64})
    two = Files({("app.py",): "sha256:" + "2" * 64})
    assert key(dag(), one) != key(dag(), two)
    assert one.calls == [(LocalSource("context", "/repo", exclude=(".git",)), ("app.py",))]
    # the same content in another checkout: the same keys downstream...
    assert key(dag(context="/elsewhere"), one) == key(dag(), one)
    # ...but the local sources stay two nodes
    assert key(LocalSource("context", "/a")) != key(LocalSource("context", "/b"))


def test_bind_mounts_from_local_sources_hash_their_selector() -> None:
    files = Files({("sub",): "sha256:" + "3" * 64})
    m = Mount("bind", "/src", source=Ref(LocalSource("context", "/repo")), selector="sub")
    op = dataclasses.replace(dag(), mounts=(m,))
    before = key(op, files)
    assert (LocalSource("context", "/repo"), ("sub",)) in files.calls
    files.contents[("sub",)] = "sha256:" + "4" * 64
    assert key(op, files) != before


def test_secrets_contribute_ids_only() -> None:
    files = Files({})
    secret = Mount("secret", "/run/secrets/npmrc", secret_id="npmrc", env="NPM_TOKEN",
                   required=True)
    op = dataclasses.replace(dag(), mounts=(secret, Mount("ssh", "/ssh", secret_id="default")))
    form = canonical(op, files)
    data = json.loads(form[len(CANONICAL_PREFIX):])
    mounts = data["mounts"]
    assert mounts[0] == {"@": "Mount", "type": "secret", "target": "/run/secrets/npmrc",
                         "secret_id": "npmrc", "env": "NPM_TOKEN", "required": True}
    # nothing was read for the secret: only the COPY's files
    assert [p for _, p in files.calls] == [("app.py",)]
    # a different secret id is a different key; the secret's value never matters
    other = dataclasses.replace(op, mounts=(dataclasses.replace(secret, secret_id="pypirc"),
                                            op.mounts[1]))
    assert key(op) != key(other)


def test_mkfile_data_is_part_of_the_key() -> None:
    a = FileOp(None, (Mkfile("/f", b"one"),))
    b = FileOp(None, (Mkfile("/f", b"two"),))
    assert key(a) != key(b)
    assert b'"@bytes":"b25l"' in canonical(a)


def test_pinned_key_of_a_small_op() -> None:
    op = Exec(rootfs=Ref(ImageSource(BUSYBOX, AMD64)), args=("/bin/sh", "-c", "echo hi > /f"),
              env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",), cwd="/", platform=AMD64)
    assert canonical(ImageSource(BUSYBOX, AMD64)) == (
        b'bakery-op-v1\n{"@":"ImageSource","platform":{"@":"Platform","architecture":"amd64",'
        b'"os":"linux"},"ref":"docker.io/library/busybox:latest"}'
    )
    # changing this value invalidates every cache: do it only on purpose
    assert key(op) == PINNED


PINNED = "sha256:f886382c925d9f427055a1bbe093771c362add8bb53ea4f31f75975797617c02"


def test_keys_are_the_same_in_another_process() -> None:
    code = (
        "from bakery.graph.ops import *; from bakery.graph.keys import op_key\n"
        "p = Platform('linux', 'amd64')\n"
        "op = Exec(rootfs=Ref(ImageSource('docker.io/library/busybox:latest', p)),"
        " args=('/bin/sh', '-c', 'echo hi > /f'), env=('PATH=/usr/sbin:/usr/bin:/sbin:/bin',),"
        " cwd='/', platform=p)\n"
        "print(op_key(op, None))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    outs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=root)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                capture_output=True, text=True).stdout.strip())
    assert outs == {PINNED}


def test_local_copies_need_a_file_digest() -> None:
    with pytest.raises(BakeryError, match="failed to compute cache key"):
        op_key(dag(), None)


def test_deep_chains_do_not_recurse() -> None:
    state = Ref(ImageSource(BUSYBOX, AMD64))
    for i in range(5000):
        state = Ref(Exec(rootfs=state, args=("true", str(i)), env=(), cwd="/", platform=AMD64))
    keyer = Keyer(None)
    k = keyer.key(state.op)
    assert k.startswith("sha256:")
    assert keyer.key(state.op) == k


def test_equal_ops_share_one_key_string() -> None:
    keyer = Keyer(Files({}))
    a, b = keyer.key(dag()), keyer.key(dag())
    assert a is b
