"""Emulation's pure parts: Debian's binfmt files, the register line, the
kernel's entry files, architecture names; `setup_emulation` refuses to run
without root."""

from __future__ import annotations

import os

import pytest

from bakery.engine import emulation
from bakery.engine.emulation import (
    Handler,
    debian_handlers,
    parse_debian_binfmt,
    parse_entry,
    qemu_name,
    register_line,
    setup_emulation,
)
from bakery.errors import BakeryError

AARCH64 = r"""package qemu-user-static
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
magic \x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00
offset 0
mask \xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff
credentials no
fix_binary yes
preserve yes
"""


def test_parse_debian_binfmt_adds_fix_binary() -> None:
    h = parse_debian_binfmt("qemu-aarch64", AARCH64)
    assert h.interpreter == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    assert h.magic.startswith(r"\x7f\x45\x4c\x46") and h.mask.endswith(r"\xfe\xff\xff\xff")
    assert h.offset == 0 and h.flags == "PF"
    no_fix = AARCH64.replace("fix_binary yes", "fix_binary no").replace("preserve yes", "preserve no")
    assert parse_debian_binfmt("qemu-aarch64", no_fix + "credentials yes\n").flags == "CF"


def test_parse_debian_binfmt_errors() -> None:
    with pytest.raises(BakeryError, match="no interpreter or magic"):
        parse_debian_binfmt("qemu-x", "package qemu-user-static\n")
    with pytest.raises(BakeryError, match="bad offset"):
        parse_debian_binfmt("qemu-x", AARCH64.replace("offset 0", "offset x"))


def test_register_line() -> None:
    h = parse_debian_binfmt("qemu-aarch64", AARCH64)
    line = register_line(h)
    assert line == (":qemu-aarch64:M::" + h.magic + ":" + h.mask
                    + ":/usr/libexec/qemu-binfmt/aarch64-binfmt-P:PF")
    assert register_line(Handler("x", "/i", "ab", "ff", 4, "F")) == ":x:M:4:ab:ff:/i:F"
    with pytest.raises(BakeryError, match="not allowed"):
        register_line(Handler("x", "/a:b", "ab", "ff"))


def test_parse_entry() -> None:
    e = parse_entry("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n"
                    "offset 0\nmagic 7f454c46\nmask ffffffff\n")
    assert e == {"enabled": "enabled", "interpreter": "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
                 "flags": "POF", "offset": "0", "magic": "7f454c46", "mask": "ffffffff"}
    assert emulation._usable(e) and not emulation._usable(dict(e, flags="PO"))
    assert not emulation._usable(dict(e, enabled="disabled"))
    assert not emulation._usable(e, Handler("qemu-aarch64", "/other", "", ""))


@pytest.mark.parametrize("arch,q", [("arm64", "aarch64"), ("linux/arm64", "aarch64"), ("aarch64", "aarch64"),
                                    ("riscv64", "riscv64"), ("386", "i386"), ("mips64le", "mips64el")])
def test_qemu_name(arch: str, q: str) -> None:
    assert qemu_name(arch) == q


def test_debian_handlers_reads_only_qemu_user_static(tmp_path) -> None:  # type: ignore[no-untyped-def]
    interp = tmp_path / "aarch64-binfmt-P"
    interp.write_text("")
    (tmp_path / "qemu-aarch64").write_text(AARCH64.replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
                                                           str(interp)))
    (tmp_path / "qemu-gone").write_text(AARCH64.replace("aarch64-binfmt-P", "missing-binfmt-P"))
    (tmp_path / "qemu-other").write_text(AARCH64.replace("qemu-user-static", "qemu-user-binfmt"))
    (tmp_path / "jar").write_text("package openjdk\ninterpreter /usr/bin/jexec\nmagic PK\n")
    hs = debian_handlers(str(tmp_path))
    assert list(hs) == ["aarch64"] and hs["aarch64"].interpreter == str(interp)
    assert debian_handlers(str(tmp_path / "none")) == {}


def test_setup_needs_root(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BakeryError, match="needs root") as e:
        setup_emulation(["arm64"])
    assert e.value.hint and "sudo bakery setup emulation" in e.value.hint


def test_ensure_emulator_native_is_nothing() -> None:
    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    assert emulation.ensure_emulator(host) is None


def test_emulation_status(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    binfmt = tmp_path / "binfmt"
    binfmt.mkdir()
    monkeypatch.setattr(emulation, "BINFMT", str(binfmt))
    monkeypatch.setattr(emulation, "debian_handlers", lambda directory="": {})
    assert emulation.emulation_status().startswith("no qemu handler with the fix-binary flag")
    assert "apt-get install qemu-user-static" in emulation.emulation_status()
    (binfmt / "qemu-aarch64").write_text("enabled\ninterpreter /q/aarch64\nflags: POF\n")
    (binfmt / "qemu-riscv64").write_text("enabled\ninterpreter /q/riscv64\nflags: P\n")
    (binfmt / "qemu-arm").write_text("disabled\ninterpreter /q/arm\nflags: F\n")
    (binfmt / "register").write_text("")
    assert emulation.emulation_status() == (
        "qemu for aarch64; not usable (disabled or without F): arm, riscv64")
    monkeypatch.setattr(emulation, "BINFMT", str(tmp_path / "none"))
    assert "not mounted" in emulation.emulation_status()
