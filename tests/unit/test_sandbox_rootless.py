"""Rootless runs, the pure parts: the id mapping, the rootless OCI spec,
which users a rootless step may run as, the owners recorded in its layer,
and what `detect_sandbox` picks when not root."""

from __future__ import annotations

import io
import os
import tarfile
from typing import Any, Dict, List, Tuple

import pytest

from bakery.engine.sandbox import (
    ExecUser,
    NamespaceSandbox,
    RuncSandbox,
    RunSpec,
    SandboxMount,
    UnavailableSandbox,
    build_oci_config,
    detect_sandbox,
)
from bakery.engine.sandbox.rootless import (
    IdMap,
    check_user,
    current_idmap,
    layer_owner,
    rootless_config,
    userns_support,
)
from bakery.engine.snapshots import owners_of_layers
from bakery.errors import BakeryError

MAP = IdMap(uid=1000, gid=1001)


def _config() -> Dict[str, Any]:
    spec = RunSpec(rootfs="/r", args=("/bin/true",),
                   mounts=(SandboxMount("tmpfs", "", "/t"),))
    return build_oci_config(spec, ExecUser(0, 0), ["PATH=/bin"], "/h", "/rc", [""])


def test_rootless_config_adds_a_user_namespace_with_one_id_each() -> None:
    root = _config()
    cfg = rootless_config(root, MAP)
    types = [ns["type"] for ns in cfg["linux"]["namespaces"]]
    assert types.count("user") == 1
    assert {"pid", "ipc", "uts", "mount", "network"} <= set(types)
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert cfg["linux"]["gidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]
    # no cgroups: no device rules, no cgroup mount
    assert "resources" not in cfg["linux"]
    assert not [m for m in cfg["mounts"] if m["type"] == "cgroup"]
    # /sys cannot be mounted fresh: a read-only bind of the host's
    sys_mount = [m for m in cfg["mounts"] if m["destination"] == "/sys"]
    assert sys_mount == [{"destination": "/sys", "type": "bind", "source": "/sys",
                          "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    # gid 5 (tty) is not mapped: devpts without gid=
    devpts = next(m for m in cfg["mounts"] if m["type"] == "devpts")
    assert not [o for o in devpts["options"] if o.startswith("gid=")]
    assert "newinstance" in devpts["options"]
    # the rest is the root spec's; the input is not changed
    assert cfg["process"] == root["process"]
    assert [m["destination"] for m in cfg["mounts"]] == [
        m["destination"] for m in root["mounts"] if m["type"] != "cgroup"]
    assert "resources" in root["linux"] and "uidMappings" not in root["linux"]
    assert rootless_config(cfg, MAP)["linux"]["namespaces"] == cfg["linux"]["namespaces"]


def test_host_network_keeps_the_host_network_namespace() -> None:
    spec = RunSpec(rootfs="/r", args=("/bin/true",), network="host")
    cfg = rootless_config(build_oci_config(spec, ExecUser(0, 0), [], "/h", "/rc", []), MAP)
    assert [ns["type"] for ns in cfg["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount", "user"]


@pytest.mark.parametrize("user", [ExecUser(1000, 1000), ExecUser(0, 50), ExecUser(0, 0, (50,))])
def test_only_root_can_run_rootless(user: ExecUser) -> None:
    with pytest.raises(BakeryError, match="rootless step has only uid 0") as e:
        check_user(user, "alice")
    assert e.value.hint and "root" in e.value.hint


def test_root_runs_rootless() -> None:
    check_user(ExecUser(0, 0), "")


def test_to_inside() -> None:
    assert MAP.to_inside(1000, 1001) == (0, 0)
    assert MAP.to_inside(0, 0) == (65534, 65534)
    assert MAP.to_inside(1000, 5) == (0, 65534)


@pytest.mark.parametrize("host,original,want", [
    ((1000, 1001), None, (0, 0)),  # new file: root's in the step
    ((1000, 1001), (33, 33), (33, 33)),  # changed in place: keeps its layer's owner
    ((1000, 1001), (0, 0), (0, 0)),
    ((1000, 0), (33, 33), (0, 65534)),  # owner changed on the host: as the step sees it
])
def test_layer_owner(host: Tuple[int, int], original: Any, want: Tuple[int, int]) -> None:
    assert layer_owner(host[0], host[1], MAP, original) == want


@pytest.mark.parametrize("text,ok", [("96365\n", True), ("0\n", False), ("x", False), (None, False)])
def test_userns_support(text: Any, ok: bool) -> None:
    reason = userns_support(text)
    assert (reason is None) == ok
    if not ok:
        assert "user namespaces" in (reason or "") or "max_user_namespaces" in (reason or "")


def test_current_idmap(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert current_idmap() is None
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setattr(os, "getgid", lambda: 1001)
    assert current_idmap() == MAP


def _tar(entries: List[Tuple[str, int, int, str]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, uid, gid, kind in entries:
            ti = tarfile.TarInfo(name)
            ti.uid, ti.gid = uid, gid
            ti.type = tarfile.DIRTYPE if kind == "d" else tarfile.REGTYPE
            tf.addfile(ti, io.BytesIO(b""))
    buf.seek(0)
    return buf


def test_owners_of_layers_follow_whiteouts() -> None:
    lower = _tar([("a", 1, 1, "d"), ("a/x", 2, 2, "f"), ("a/y", 3, 3, "f"), ("b", 4, 4, "d"),
                  ("b/z", 5, 5, "f"), ("./c", 6, 6, "f"), ("bb", 9, 9, "f")])
    upper = _tar([("a/.wh.x", 0, 0, "f"), ("b/.wh..wh..opq", 0, 0, "f"), ("b/new", 7, 7, "f"),
                  ("c", 8, 8, "f")])
    owners = owners_of_layers([lower, upper])
    assert owners == {"a": (1, 1), "a/y": (3, 3), "b": (4, 4), "b/new": (7, 7), "c": (8, 8),
                      "bb": (9, 9)}
    gone = owners_of_layers([_tar([("d", 1, 1, "d"), ("d/e", 2, 2, "f")]),
                             _tar([(".wh.d", 0, 0, "f")])])
    assert gone == {}


def test_detect_rootless_runc(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import bakery.engine.sandbox.detect as detect

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setattr(os, "getgid", lambda: 1001)
    monkeypatch.setattr(detect, "find_runtime", lambda name: "/usr/sbin/runc" if name == "runc" else None)
    monkeypatch.setattr(RuncSandbox, "version", lambda self: "1.1.5")
    sb, why = detect_sandbox()
    assert isinstance(sb, RuncSandbox) and sb.idmap == MAP
    assert "rootless" in why and "uid 1000/gid 1001" in why and "runc 1.1.5" in why
    assert sb._global("/state")[:4] == ["/usr/sbin/runc", "--root", "/state", "--rootless"]
    sb, why = detect_sandbox("crun")
    assert isinstance(sb, UnavailableSandbox) and "rootless" in why
    sb, why = detect_sandbox("namespace")
    assert isinstance(sb, NamespaceSandbox) and sb.idmap == MAP
    assert "Linux namespaces" in why and "uid 1000/gid 1001" in why
    monkeypatch.setattr(detect, "find_runtime", lambda name: None)
    sb, why = detect_sandbox()
    assert isinstance(sb, NamespaceSandbox) and "no runc installed" in why and "rootless" in why
    sb, why = detect_sandbox("runc")
    assert isinstance(sb, UnavailableSandbox) and "runc" in why


# -- subordinate ids (userns.py) ------------------------------------------------------


def test_parse_subid() -> None:
    from bakery.engine.sandbox.userns import parse_subid

    text = "# comment\nalice:100000:65536\n1001:200000:65536\nbob:300000:0\nbad line\nalice:x:1\n"
    assert parse_subid(text, "alice", 1000) == [(100000, 65536)]
    assert parse_subid(text, "carol", 1001) == [(200000, 65536)]
    assert parse_subid(text, "bob", 1002) == []


def test_map_args_and_uid_map() -> None:
    from bakery.engine.sandbox.userns import map_args, parse_uid_map

    assert map_args(1000, [(100000, 65536), (300000, 10)]) == ["0", "1000", "1", "1", "100000", "65536"]
    assert map_args(1000, []) == ["0", "1000", "1"]
    assert parse_uid_map("         0       1001          1\n         1     100000      65536\n") == [
        (0, 1001, 1), (1, 100000, 65536)]


def test_idmap_of_a_range() -> None:
    whole = IdMap(0, 0, 65537)  # inside bakery's own namespace
    assert whole.to_inside(1000, 33) == (1000, 33) and whole.to_inside(70000, 0) == (65534, 0)
    check_user(ExecUser(1000, 1000, (50,)), "alice", whole)
    with pytest.raises(BakeryError, match="maps ids 0 to 65536 only"):
        check_user(ExecUser(70000, 0), "big", whole)
    # the identity: no nested user namespace, and gid 5 is mapped (devpts keeps gid=5)
    cfg = rootless_config(_config(), whole)
    assert "user" not in [ns["type"] for ns in cfg["linux"]["namespaces"]]
    assert "uidMappings" not in cfg["linux"] and "resources" not in cfg["linux"]
    devpts = next(m for m in cfg["mounts"] if m["type"] == "devpts")
    assert "gid=5" in devpts["options"]
