"""COPY semantics on real directories (BuildKit's rules)."""

from __future__ import annotations

import os
from typing import Dict

import pytest

from bakery.engine.fileops import apply_actions, apply_chmod, copy, parse_chown, resolve_in_root
from bakery.errors import BakeryError
from bakery.graph.ops import Copy, LocalSource, Mkdir, Mkfile, Ref, Rm, Symlink

CTX = Ref(LocalSource("context", "/ctx"))


def files(root) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = os.readlink(p)
            else:
                with open(p) as fh:
                    out[rel] = fh.read()
    return out


@pytest.fixture()
def ctx(tmp_path):  # type: ignore[no-untyped-def]
    c = tmp_path / "ctx"
    (c / "app" / "sub").mkdir(parents=True)
    (c / "app" / "main.py").write_text("main")
    (c / "app" / "sub" / "x.txt").write_text("x")
    (c / "a.txt").write_text("a")
    (c / "b.txt").write_text("b")
    (c / "README").write_text("r")
    os.symlink("a.txt", c / "link")
    return c


@pytest.fixture()
def root(tmp_path):  # type: ignore[no-untyped-def]
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    os.symlink("/etc", r / "etc-link")
    return r


@pytest.mark.parametrize(
    "src,dest,expected",
    [
        (("a.txt",), "/dst", {"dst": "a"}),
        (("a.txt",), "/dst/", {"dst/a.txt": "a"}),
        (("a.txt",), "/etc", {"etc/a.txt": "a"}),  # an existing directory
        (("app",), "/srv", {"srv/main.py": "main", "srv/sub/x.txt": "x"}),  # contents of a dir
        (("*.txt",), "/t/", {"t/a.txt": "a", "t/b.txt": "b"}),
        (("a.txt", "README"), "/m/", {"m/a.txt": "a", "m/README": "r"}),
        (("link",), "/l", {"l": "a"}),  # the top-level source symlink is followed
        (("app/sub/x.txt",), "/etc-link/", {"etc/x.txt": "x"}),  # resolved inside the root
        ((".",), "/all/", {"all/a.txt": "a", "all/b.txt": "b", "all/README": "r", "all/app/main.py": "main",
                           "all/app/sub/x.txt": "x", "all/link": "a.txt"}),
    ],
)
def test_copy_rules(ctx, root, src, dest, expected) -> None:  # type: ignore[no-untyped-def]
    copy(Copy(CTX, src, dest), str(ctx), str(root), keep_owner=False)
    got = files(root)
    for k, v in expected.items():
        assert got.get(k) == v, (k, got)


def test_several_sources_need_a_directory(ctx, root) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError, match="destination must be a directory and end with a /"):
        copy(Copy(CTX, ("a.txt", "b.txt"), "/file"), str(ctx), str(root), keep_owner=False)


def test_missing_source(ctx, root) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError, match='"/nope": not found'):
        copy(Copy(CTX, ("nope",), "/x"), str(ctx), str(root), keep_owner=False)
    with pytest.raises(BakeryError, match="no source files were specified"):
        copy(Copy(CTX, ("*.nope",), "/x/"), str(ctx), str(root), keep_owner=False)


def test_exclude_and_chmod_and_chown(ctx, root) -> None:  # type: ignore[no-untyped-def]
    copy(Copy(CTX, ("app",), "/srv/", exclude=("sub",), chmod="0640", chown="1000:1000"),
         str(ctx), str(root), keep_owner=False)
    assert files(root) == {"srv/main.py": "main"}
    st = os.stat(root / "srv" / "main.py")
    assert st.st_mode & 0o7777 == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_context_files_become_root_owned_and_keep_mtime(ctx, root) -> None:  # type: ignore[no-untyped-def]
    os.utime(ctx / "a.txt", (1000, 1000))
    copy(Copy(CTX, ("a.txt",), "/a"), str(ctx), str(root), keep_owner=False)
    st = os.stat(root / "a")
    assert int(st.st_mtime) == 1000
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, 0)


@pytest.mark.parametrize(
    "mode,spec,is_dir,expected",
    [(0o644, "755", False, 0o755), (0o644, "u+x", False, 0o744), (0o755, "go-rwx", False, 0o700),
     (0o644, "a+X", False, 0o644), (0o644, "a+X", True, 0o755), (0o777, "o=r", False, 0o774),
     (0o644, "u+s", False, 0o4644)],
)
def test_chmod(mode: int, spec: str, is_dir: bool, expected: int) -> None:
    assert apply_chmod(mode, spec, is_dir) & 0o7777 == expected


def test_resolve_in_root_never_escapes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = tmp_path / "r"
    (r / "a").mkdir(parents=True)
    os.symlink("../../../../etc", r / "a" / "up")
    assert resolve_in_root(str(r), "/a/up/passwd") == os.path.join(str(r), "etc", "passwd")
    assert resolve_in_root(str(r), "../../x") == os.path.join(str(r), "x")


def test_other_actions(root) -> None:  # type: ignore[no-untyped-def]
    apply_actions(
        [Mkdir("/w/x", 0o700), Mkfile("/w/f", b"data", 0o600), Symlink("/w/s", "f"), Rm("/etc")],
        str(root), {},
    )
    assert oct(os.stat(root / "w" / "x").st_mode & 0o777) == "0o700"
    assert (root / "w" / "f").read_bytes() == b"data" and os.readlink(root / "w" / "s") == "f"
    assert not (root / "etc").exists()


def test_dockerignore_applies_to_copies(ctx, root) -> None:  # type: ignore[no-untyped-def]
    from bakery.dockerfile.dockerignore import IgnoreMatcher

    (ctx / "debug.log").write_text("log")
    (ctx / "keep.log").write_text("keep")
    ignore = IgnoreMatcher(["*.log", "!keep.log", "app/sub"])
    copy(Copy(CTX, (".",), "/all/"), str(ctx), str(root), keep_owner=False, ignore=ignore)
    got = files(root)
    assert "all/debug.log" not in got and got["all/keep.log"] == "keep"
    assert "all/app/main.py" in got and "all/app/sub/x.txt" not in got
    copy(Copy(CTX, ("*.log",), "/logs/"), str(ctx), str(root), keep_owner=False, ignore=ignore)
    assert [k for k in files(root) if k.startswith("logs/")] == ["logs/keep.log"]
    with pytest.raises(BakeryError, match=r'"/debug\.log": not found'):
        copy(Copy(CTX, ("debug.log",), "/x"), str(ctx), str(root), keep_owner=False, ignore=ignore)


# -- --chown by name (BuildKit's readUser; cases checked against Docker 20.10's BuildKit)

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n# a comment\nalice:x:1000:1001::/home/alice:/bin/sh\n"
          "bob:x:1002:1003::/:/bin/sh\nbroken:x:abc:1::/:/bin/sh\n")
GROUP = "root:x:0:\nstaff:x:50:alice\nbad:x:zz:\n"


@pytest.fixture()
def named_root(tmp_path):  # type: ignore[no-untyped-def]
    r = tmp_path / "named"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text(PASSWD)
    (r / "etc" / "group").write_text(GROUP)
    return r


@pytest.mark.parametrize("chown,expected", [
    ("", None),
    ("7", (7, 7)),
    ("7:8", (7, 8)),
    ("alice", (1000, 1001)),  # the primary group from /etc/passwd
    ("alice:staff", (1000, 50)),
    ("1000:staff", (1000, 50)),
    ("bob:50", (1002, 50)),
    ("bob:nosuchgroup", (1002, 1003)),  # an unknown group keeps the user's
    ("nosuch", (0, 0)),  # BuildKit: an unknown user is root, silently
    ("nosuch:staff", (0, 50)),
])
def test_parse_chown_names(named_root, chown, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_chown(chown, str(named_root)) == expected


def test_parse_chown_errors(named_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError, match="invalid /etc/passwd entry for user 'broken'"):
        parse_chown("broken", str(named_root))
    with pytest.raises(BakeryError, match="invalid /etc/group entry for group 'bad'"):
        parse_chown("1:bad", str(named_root))
    empty = tmp_path / "scratch"
    empty.mkdir()
    with pytest.raises(BakeryError, match="cannot resolve user 'alice' of chown 'alice:staff': "
                                          "the destination has no /etc/passwd"):
        parse_chown("alice:staff", str(empty))
    with pytest.raises(BakeryError, match="cannot resolve group 'staff'"):
        parse_chown("1:staff", str(empty))
    assert parse_chown("1:2", str(empty)) == (1, 2)  # numbers need no files


def test_passwd_is_read_inside_the_root(named_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """/etc/passwd a symlink to an absolute path: resolved in the root, never the host's."""
    other = tmp_path / "other"
    (other / "etc").mkdir(parents=True)
    (other / "etc" / "passwd").write_text("carol:x:4242:4242::/:/bin/sh\n")
    os.rename(named_root / "etc" / "passwd", named_root / "etc" / "passwd.real")
    os.symlink("/etc/passwd.real", named_root / "etc" / "passwd")
    assert parse_chown("alice", str(named_root)) == (1000, 1001)
    assert parse_chown("carol", str(named_root)) == (0, 0)


def test_copy_and_mkdir_chown_by_name(ctx, named_root) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    cp = Copy(source=CTX, src=("app",), dest="/srv/app/", chown="alice:staff")
    apply_actions([cp, Mkdir("/home/alice/w", chown="alice")], str(named_root),
                  {id(cp): (str(ctx), False, None)})
    st = os.stat(named_root / "srv" / "app" / "main.py")
    assert (st.st_uid, st.st_gid) == (1000, 50)
    for d in ("home", "home/alice", "home/alice/w"):  # BuildKit: every made parent too
        st = os.stat(named_root / d)
        assert (st.st_uid, st.st_gid) == (1000, 1001), d


# -- ADD's auto-extraction of local archives (compared with Docker 20.10's BuildKit in
#    tests/integration/test_buildkit_compat.py, case add-archives)


def _archive(path, mode: str) -> None:  # type: ignore[no-untyped-def]
    import io
    import tarfile

    with tarfile.open(path, mode) as tf:
        for name, data, fmode, uid in (("top", None, 0o750, 0), ("top/a.txt", b"a", 0o640, 7),
                                       ("top/run", b"#!", 0o755, 1001)):
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = fmode, uid, uid, 1_600_000_000
            if data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))


@pytest.mark.parametrize("name,mode", [("p.tar", "w"), ("p.tar.gz", "w:gz"), ("p.tbz", "w:bz2"),
                                       ("odd-name", "w:xz")])
def test_add_unpacks_archives(ctx, root, name, mode) -> None:  # type: ignore[no-untyped-def]
    _archive(ctx / name, mode)
    (ctx / "notatar.gz").write_text("plain text")
    cp = Copy(source=CTX, src=(name, "notatar.gz"), dest="/x/", chown="1000:1000", unpack=True)
    apply_actions([cp], str(root), {id(cp): (str(ctx), False, None)})
    assert files(root / "x") == {"top/a.txt": "a", "top/run": "#!", "notatar.gz": "plain text"}
    assert os.stat(root / "x" / "top").st_mode & 0o7777 == 0o750
    st = os.stat(root / "x" / "top" / "a.txt")
    assert st.st_mode & 0o7777 == 0o640 and int(st.st_mtime) == 1_600_000_000
    if os.geteuid() == 0:  # members keep the archive's owners; --chown is for the rest
        assert (st.st_uid, st.st_gid) == (7, 7)
        assert os.stat(root / "x" / "notatar.gz").st_uid == 1000
        assert os.stat(root / "x").st_uid == 1000


def test_copy_and_unpack_false_keep_archives_whole(ctx, root) -> None:  # type: ignore[no-untyped-def]
    _archive(ctx / "p.tar", "w")
    cp = Copy(source=CTX, src=("p.tar",), dest="/packed", unpack=False)
    apply_actions([cp], str(root), {id(cp): (str(ctx), False, None)})
    assert os.path.isfile(root / "packed")


def test_unpack_refuses_entries_leaving_the_destination(ctx, root) -> None:  # type: ignore[no-untyped-def]
    import io
    import tarfile

    with tarfile.open(ctx / "evil.tar", "w") as tf:
        ti = tarfile.TarInfo("../../escape")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    cp = Copy(source=CTX, src=("evil.tar",), dest="/x/", unpack=True)
    with pytest.raises(BakeryError, match="leaves the root"):
        apply_actions([cp], str(root), {id(cp): (str(ctx), False, None)})
    assert not (root.parent / "escape").exists()
