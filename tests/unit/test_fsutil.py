"""bakery.fsutil.atomic_write: all or nothing, errors reach the caller."""

from __future__ import annotations

import os
import stat

import pytest

from bakery.fsutil import atomic_write


def test_replaces_with_mode_and_leaves_no_temporary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f.json"
    path.write_text("old")
    atomic_write(str(path), "new ü", mode=0o640, sync=True)
    assert path.read_text(encoding="utf-8") == "new ü"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    atomic_write(str(path), b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(os.listdir(tmp_path)) == ["f.json"]


def test_a_failed_write_raises_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f"
    path.write_text("old")

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space"):
        atomic_write(str(path), "new")
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_a_missing_directory_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError):
        atomic_write(str(tmp_path / "no" / "f"), "x")
