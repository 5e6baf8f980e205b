"""Layer diffs and application, on real directories (overlayfs when root)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from bakery.engine.layers import apply_layer, diff_overlay, diff_trees, snapshot_meta
from bakery.errors import BakeryError


def tree(root) -> dict:  # type: ignore[no-untyped-def]
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mode & 0o7777)
            else:
                with open(p, "rb") as fh:
                    out[rel] = ("file", st.st_mode & 0o7777, fh.read())
    return out


def make_lower(root) -> None:  # type: ignore[no-untyped-def]
    os.makedirs(root / "etc" / "conf.d")
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc" / "conf.d" / "a.conf").write_text("a")
    (root / "etc" / "conf.d" / "b.conf").write_text("b")
    os.makedirs(root / "var" / "cache")
    (root / "var" / "cache" / "big").write_text("x" * 1000)
    os.symlink("passwd", root / "etc" / "pw")


def mutate(root) -> None:  # type: ignore[no-untyped-def]
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n")
    os.unlink(root / "etc" / "pw")
    import shutil

    shutil.rmtree(root / "var" / "cache")
    os.makedirs(root / "app")
    (root / "app" / "run").write_text("#!/bin/sh\n")
    os.chmod(root / "app" / "run", 0o755)
    os.link(root / "app" / "run", root / "app" / "run2")
    os.symlink("/app/run", root / "usr-run")


def layer_names(data: bytes) -> list:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return [m.name for m in t.getmembers()]


def test_diff_trees_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lower, upper, result = tmp_path / "lower", tmp_path / "upper", tmp_path / "result"
    make_lower(lower)
    subprocess.run(["cp", "-a", str(lower), str(upper)], check=True)
    subprocess.run(["cp", "-a", str(lower), str(result)], check=True)
    before = snapshot_meta(str(upper))
    mutate(upper)
    buf = io.BytesIO()
    diff_trees(before, str(upper), buf)
    names = layer_names(buf.getvalue())
    assert "etc/passwd" in names and "etc/.wh.pw" in names and "var/.wh.cache" in names
    assert "etc/conf.d/a.conf" not in names  # untouched files are not in the layer
    assert not any(n.startswith("var/cache/") for n in names)
    assert names == sorted(names, key=lambda n: n.split("/"))
    apply_layer(io.BytesIO(buf.getvalue()), str(result))
    assert tree(result) == tree(upper)
    st = os.stat(result / "app" / "run")
    assert st.st_nlink == 2 and os.path.samefile(result / "app" / "run", result / "app" / "run2")


def test_layers_are_deterministic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lower = tmp_path / "l"
    make_lower(lower)
    a, b = io.BytesIO(), io.BytesIO()
    diff_trees({}, str(lower), a)
    diff_trees({}, str(lower), b)
    assert a.getvalue() == b.getvalue()
    c = io.BytesIO()
    diff_trees({}, str(lower), c, source_date_epoch=1000)
    with tarfile.open(fileobj=io.BytesIO(c.getvalue())) as t:
        assert {m.mtime for m in t.getmembers()} == {1000}
        assert {(m.uname, m.gname) for m in t.getmembers()} == {("", "")}


def test_opaque_whiteout_applies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    make_lower(root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.addfile(tarfile.TarInfo("etc/conf.d/.wh..wh..opq"))
        ti = tarfile.TarInfo("etc/conf.d/new.conf")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"new"))
    buf.seek(0)
    apply_layer(buf, str(root))
    assert sorted(os.listdir(root / "etc" / "conf.d")) == ["new.conf"]


@pytest.mark.parametrize("name", ["../escape", "a/../../escape"])
def test_apply_refuses_escaping_entries(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo(name)
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"x"))
    buf.seek(0)
    (tmp_path / "root").mkdir()
    with pytest.raises(BakeryError, match="leaves the root filesystem"):
        apply_layer(buf, str(tmp_path / "root"))
    assert not (tmp_path / "escape").exists()


def test_apply_refuses_paths_through_symlinks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(str(tmp_path), root / "link")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("link/evil")
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"x"))
    buf.seek(0)
    with pytest.raises(BakeryError, match="a parent is a symlink"):
        apply_layer(buf, str(root))
    assert not (tmp_path / "evil").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs needs root")
def test_diff_overlay_matches_diff_trees(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    make_lower(lower)
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"overlayfs not mountable here: {r.stderr.decode().strip()}")
    try:
        mutate(merged)
        import shutil

        shutil.rmtree(merged / "etc" / "conf.d")
        os.makedirs(merged / "etc" / "conf.d")
        (merged / "etc" / "conf.d" / "only.conf").write_text("o")
        expected = tree(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    buf = io.BytesIO()
    diff_overlay(str(upper), buf)
    names = layer_names(buf.getvalue())
    assert "etc/.wh.pw" in names and "var/.wh.cache" in names
    assert "etc/conf.d/.wh..wh..opq" in names
    result = tmp_path / "result"
    subprocess.run(["cp", "-a", str(lower), str(result)], check=True)
    apply_layer(io.BytesIO(buf.getvalue()), str(result))
    assert tree(result) == expected


def test_whiteout_never_hides_an_entry_of_the_same_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    os.makedirs(root / "-x")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("-x")  # sorts before ".wh.-x"
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"f"))
        t.addfile(tarfile.TarInfo(".wh.-x"))
    buf.seek(0)
    apply_layer(buf, str(root))
    assert (root / "-x").read_bytes() == b"f"
