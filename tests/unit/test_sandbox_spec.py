"""The sandbox's pure parts: OCI spec generation, user resolution, hosts
and resolv.conf, ulimits, environment, rootfs paths (no runtime needed)."""

from __future__ import annotations

import os
from typing import Any, Dict, List

import pytest

from bakery.engine.sandbox import (
    DEFAULT_PATH,
    RunSpec,
    SandboxMount,
    UnavailableSandbox,
    build_oci_config,
    detect_sandbox,
    make_hosts,
    make_resolv_conf,
    parse_ulimit,
    resolve_user,
)
from bakery.engine.sandbox.common import MountStubs, secure_join
from bakery.engine.sandbox.oci import (
    DEFAULT_CAPABILITIES,
    DEFAULT_RESOLV_CONF,
    RLIM_INFINITY,
    check_spec,
    network_notes,
    parse_extra_host,
    process_env,
)
from bakery.engine.sandbox.runc import platform_notes
from bakery.engine.sandbox.users import ExecUser, parse_group, parse_passwd
from bakery.errors import BakeryError

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
broken line
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""

GROUP = """\
root:x:0:
bin:x:1:root,daemon
staff:x:50:alice,bob
alice:x:1000:
bob:x:1001:
docker:x:999:alice
"""


def _spec(**kw: Any) -> RunSpec:
    base: Dict[str, Any] = {"rootfs": "/r", "args": ("/bin/sh", "-c", "true")}
    base.update(kw)
    return RunSpec(**base)


ROOT = ExecUser(0, 0)


def _config(spec: RunSpec, user: ExecUser = ROOT, sources: Any = None) -> Dict[str, Any]:
    src = sources if sources is not None else [m.source for m in spec.mounts]
    return build_oci_config(spec, user, process_env(spec, user), "/b/hosts", "/b/resolv.conf", src)


def _mount(cfg: Dict[str, Any], dest: str) -> Dict[str, Any]:
    found = [m for m in cfg["mounts"] if m["destination"] == dest]
    assert len(found) == 1, dest
    return found[0]


# -- user resolution ------------------------------------------------------------


def test_parse_passwd_and_group() -> None:
    users = parse_passwd(PASSWD)
    assert [u.name for u in users] == ["root", "daemon", "alice", "bob", "nobody"]
    assert users[2].uid == 1000 and users[2].home == "/home/alice"
    groups = parse_group(GROUP)
    assert groups[2].name == "staff" and groups[2].members == ("alice", "bob")


@pytest.mark.parametrize("user,uid,gid,extra,home", [
    ("", 0, 0, (1,), "/root"),
    ("root", 0, 0, (1,), "/root"),
    ("alice", 1000, 1000, (50, 999), "/home/alice"),
    ("1000", 1000, 1000, (50, 999), "/home/alice"),
    ("alice:staff", 1000, 50, (), "/home/alice"),
    ("alice:4242", 1000, 4242, (), "/home/alice"),
    ("bob:docker", 1001, 999, (), "/home/bob"),
    ("4242", 4242, 0, (), "/"),
    ("4242:4343", 4242, 4343, (), "/"),
    ("4242:staff", 4242, 50, (), "/"),
])
def test_resolve_user(user: str, uid: int, gid: int, extra: tuple, home: str) -> None:
    u = resolve_user(user, PASSWD, GROUP)
    assert (u.uid, u.gid, u.additional_gids, u.home) == (uid, gid, extra, home)


def test_resolve_user_without_files() -> None:
    assert resolve_user("", None, None) == ExecUser(0, 0, (), "/", "")
    u = resolve_user("1000:1000", None, None)
    assert (u.uid, u.gid, u.additional_gids) == (1000, 1000, ())
    u = resolve_user("1000", None, None)
    assert (u.uid, u.gid) == (1000, 0)


def test_unknown_user_is_buildkits_message() -> None:
    with pytest.raises(BakeryError) as e:
        resolve_user("nosuch", PASSWD, GROUP)
    assert str(e.value) == "unable to find user nosuch: no matching entries in passwd file"
    with pytest.raises(BakeryError, match="unable to find user app: no matching entries in passwd file"):
        resolve_user("app", None, None)


def test_unknown_group() -> None:
    with pytest.raises(BakeryError) as e:
        resolve_user("alice:wheel", PASSWD, GROUP)
    assert str(e.value) == "unable to find group wheel: no matching entries in group file"
    with pytest.raises(BakeryError, match="unable to find group wheel"):
        resolve_user("1000:wheel", None, None)


# -- hosts, resolv.conf, extra hosts ---------------------------------------------


def test_hosts_file() -> None:
    assert make_hosts("bakery") == (
        "127.0.0.1\tlocalhost bakery\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    text = make_hosts("h", ("db=10.0.0.2", "cache:10.0.0.3", "v6=2001:db8::1"))
    assert text.splitlines()[2:] == ["10.0.0.2\tdb", "10.0.0.3\tcache", "2001:db8::1\tv6"]
    assert make_hosts("").startswith("127.0.0.1\tlocalhost buildkitsandbox\n")


@pytest.mark.parametrize("bad", ["nohost", "=1.2.3.4", "h=not-an-ip", "h=host-gateway"])
def test_bad_extra_hosts(bad: str) -> None:
    with pytest.raises(BakeryError):
        parse_extra_host(bad)


def test_extra_host_normalises_the_ip() -> None:
    assert parse_extra_host("a=2001:DB8:0::1") == ("a", "2001:db8::1")


def test_resolv_conf_drops_loopback_nameservers() -> None:
    host = "# managed\nnameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch example.com\noptions ndots:2\n"
    out = make_resolv_conf(host)
    assert "127.0.0.53" not in out
    assert "nameserver 10.0.0.1" in out
    assert "search example.com" in out and "options ndots:2" in out


def test_resolv_conf_defaults_when_nothing_is_left() -> None:
    out = make_resolv_conf("nameserver 127.0.0.53\nnameserver ::1\nsearch lan\n")
    assert out == "search lan\n" + DEFAULT_RESOLV_CONF
    assert make_resolv_conf(None) == DEFAULT_RESOLV_CONF
    assert "nameserver 8.8.8.8" in DEFAULT_RESOLV_CONF


def test_resolv_conf_host_network_keeps_the_host_file() -> None:
    host = "nameserver 127.0.0.53\nsearch lan"
    assert make_resolv_conf(host, host_network=True) == host + "\n"


# -- ulimits ------------------------------------------------------------------------


def test_parse_ulimit() -> None:
    assert parse_ulimit("nofile=1024:2048") == ("RLIMIT_NOFILE", 1024, 2048)
    assert parse_ulimit("nproc=512") == ("RLIMIT_NPROC", 512, 512)
    assert parse_ulimit("core=-1") == ("RLIMIT_CORE", RLIM_INFINITY, RLIM_INFINITY)
    assert parse_ulimit("memlock=64:-1") == ("RLIMIT_MEMLOCK", 64, RLIM_INFINITY)


@pytest.mark.parametrize("bad,msg", [
    ("nofile", "invalid ulimit argument"),
    ("bogus=1", "invalid ulimit type: bogus"),
    ("nofile=1:2:3", "too many limit value arguments"),
    ("nofile=x", "invalid ulimit value"),
    ("nofile=2048:1024", "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
])
def test_bad_ulimits(bad: str, msg: str) -> None:
    with pytest.raises(BakeryError, match=msg):
        parse_ulimit(bad)


# -- the OCI spec ----------------------------------------------------------------


def test_namespaces_network_none_and_host() -> None:
    kinds = [n["type"] for n in _config(_spec())["linux"]["namespaces"]]
    assert sorted(kinds) == ["ipc", "mount", "network", "pid", "uts"]
    assert all("path" not in n for n in _config(_spec())["linux"]["namespaces"])
    kinds = [n["type"] for n in _config(_spec(network="host"))["linux"]["namespaces"]]
    assert sorted(kinds) == ["ipc", "mount", "pid", "uts"]
    kinds = [n["type"] for n in _config(_spec(network="default"))["linux"]["namespaces"]]
    assert "network" in kinds


def test_default_network_note() -> None:
    assert network_notes(_spec()) == []
    assert network_notes(_spec(network="default"))


def test_process_section() -> None:
    user = ExecUser(1000, 1000, (50,), "/home/alice")
    cfg = _config(_spec(args=("echo", "hi"), env=("A=1",), cwd="work", user="alice",
                        ulimits=("nofile=1024:2048", "nproc=10", "nofile=10:20")), user)
    p = cfg["process"]
    assert p["args"] == ["echo", "hi"]
    assert p["terminal"] is False
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [50]}
    assert p["cwd"] == "/work"
    assert p["env"] == ["A=1", f"PATH={DEFAULT_PATH}", "HOME=/home/alice"]
    assert p["noNewPrivileges"] is False
    assert p["rlimits"] == [{"type": "RLIMIT_NPROC", "soft": 10, "hard": 10},
                            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]
    for k in ("bounding", "effective", "permitted"):
        assert p["capabilities"][k] == list(DEFAULT_CAPABILITIES)
    assert "inheritable" not in p["capabilities"] and "ambient" not in p["capabilities"]
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES and len(DEFAULT_CAPABILITIES) == 14
    assert cfg["hostname"] == "bakery"
    assert cfg["root"] == {"path": "/r", "readonly": False}


def test_env_keeps_given_path_and_home() -> None:
    env = process_env(_spec(env=("PATH=/x", "HOME=/h")), ExecUser(0, 0, (), "/root"))
    assert env == ["PATH=/x", "HOME=/h"]


def test_secret_env_overrides_and_can_be_left_out() -> None:
    spec = _spec(env=("TOKEN=public", "B=2"), secret_env={"TOKEN": "s3cr3t"})
    assert process_env(spec, ExecUser(0, 0))[-1] == "TOKEN=s3cr3t"
    assert "TOKEN=public" not in process_env(spec, ExecUser(0, 0))
    assert all("s3cr3t" not in e for e in process_env(spec, ExecUser(0, 0), with_secrets=False))
    assert "s3cr3t" not in repr(spec)
    assert "TOKEN" in repr(spec)


def test_secret_data_not_in_repr() -> None:
    m = SandboxMount("secret", "", "/run/secrets/x", data=b"s3cr3t")
    assert "s3cr3t" not in repr(m)


def test_standard_mounts() -> None:
    cfg = _config(_spec(shm_size=1 << 20))
    dests = [m["destination"] for m in cfg["mounts"]]
    assert dests[:8] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                         "/sys/fs/cgroup", "/etc/hosts"]
    assert _mount(cfg, "/proc")["type"] == "proc"
    assert _mount(cfg, "/dev")["type"] == "tmpfs"
    assert "newinstance" in _mount(cfg, "/dev/pts")["options"]
    assert "size=1048576" in _mount(cfg, "/dev/shm")["options"]
    assert "ro" in _mount(cfg, "/sys")["options"]
    assert _mount(cfg, "/etc/hosts") == {"destination": "/etc/hosts", "type": "bind",
                                         "source": "/b/hosts", "options": ["rbind", "ro"]}
    assert _mount(cfg, "/etc/resolv.conf")["source"] == "/b/resolv.conf"
    devices = {d["path"]: (d["major"], d["minor"]) for d in cfg["linux"]["devices"]}
    assert devices == {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
                       "/dev/random": (1, 8), "/dev/urandom": (1, 9), "/dev/tty": (5, 0)}
    assert cfg["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert "/proc/kcore" in cfg["linux"]["maskedPaths"]
    assert "/proc/sys" in cfg["linux"]["readonlyPaths"]
    no_cg = build_oci_config(_spec(), ExecUser(0, 0), [], "/h", "/r", [], with_cgroup=False)
    assert "/sys/fs/cgroup" not in [m["destination"] for m in no_cg["mounts"]]


def test_user_mounts() -> None:
    spec = _spec(cwd="/src", mounts=(
        SandboxMount("bind", "/host/ctx", "/ctx", readonly=True),
        SandboxMount("cache", "/host/cache", "/root/.cache"),
        SandboxMount("tmpfs", "", "/scratch", size=1 << 20),
        SandboxMount("secret", "", "/run/secrets/tok", data=b"x", mode=0o400),
        SandboxMount("ssh", "/tmp/agent.sock", "/run/buildkit/ssh_agent.0"),
        SandboxMount("bind", "/host/rel", "node_modules"),
    ))
    cfg = _config(spec, sources=["/host/ctx", "/host/cache", "", "/priv/secrets/3",
                                 "/tmp/agent.sock", "/host/rel"])
    assert _mount(cfg, "/ctx") == {"destination": "/ctx", "type": "bind", "source": "/host/ctx",
                                   "options": ["rbind", "ro"]}
    assert _mount(cfg, "/root/.cache")["options"] == ["rbind", "rw"]
    tmpfs = _mount(cfg, "/scratch")
    assert tmpfs["type"] == "tmpfs" and "size=1048576" in tmpfs["options"]
    secret = _mount(cfg, "/run/secrets/tok")
    assert secret["source"] == "/priv/secrets/3" and "ro" in secret["options"]
    assert "ro" in _mount(cfg, "/run/buildkit/ssh_agent.0")["options"]
    assert _mount(cfg, "/src/node_modules")["source"] == "/host/rel"
    # user mounts come after the standard ones, in order
    dests = [m["destination"] for m in cfg["mounts"]]
    assert dests.index("/ctx") > dests.index("/etc/resolv.conf")


def test_spec_has_no_secret_env_unless_given() -> None:
    spec = _spec(secret_env={"TOKEN": "s3cr3t"})
    cfg = build_oci_config(spec, ExecUser(0, 0), process_env(spec, ExecUser(0, 0), False),
                           "/h", "/r", [])
    assert "s3cr3t" not in repr(cfg)


@pytest.mark.parametrize("kw,msg", [
    ({"args": ()}, "nothing to run"),
    ({"network": "bridge"}, "unknown network mode"),
    ({"mounts": (SandboxMount("nfs", "/a", "/b"),)}, "unknown mount type"),
    ({"mounts": (SandboxMount("bind", "", "/b"),)}, "has no source"),
    ({"mounts": (SandboxMount("secret", "", "/b"),)}, "has no source"),
    ({"mounts": (SandboxMount("tmpfs", "", ""),)}, "has no target"),
    ({"secret_env": {"A=B": "x"}}, "invalid environment variable name"),
    ({"ulimits": ("nofile=2:1",)}, "soft limit"),
    ({"extra_hosts": ("x=y",)}, "invalid IP address"),
])
def test_check_spec(kw: Dict[str, Any], msg: str) -> None:
    with pytest.raises(BakeryError, match=msg):
        check_spec(_spec(**kw))


def test_platform_notes() -> None:
    assert platform_notes("") == []
    machine = os.uname().machine
    native = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    assert platform_notes(f"linux/{native}") == []
    other = "linux/s390x" if native != "s390x" else "linux/amd64"
    assert "emulation" in platform_notes(other)[0]


# -- paths inside the rootfs --------------------------------------------------------


def test_secure_join_stays_inside_the_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("x")
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "up")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    r = str(root)
    assert secure_join(r, "/abs/passwd") == f"{r}/etc/passwd"
    assert secure_join(r, "/up/passwd") == f"{r}/etc/passwd"
    assert secure_join(r, "/../../x/./y") == f"{r}/x/y"
    assert secure_join(r, "/missing/dir") == f"{r}/missing/dir"
    with pytest.raises(BakeryError, match="symbolic links"):
        secure_join(r, "/loop1/x")


def test_mount_stubs_are_removed_only_when_empty(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("keep me")
    stubs = MountStubs(str(root))
    for t in ("/proc", "/etc/hosts", "/run/secrets/id", "/data/x"):
        stubs.record(t)
    made: List[str] = ["proc", "run/secrets", "data"]
    for d in made:
        (root / d).mkdir(parents=True)
    (root / "run" / "secrets" / "id").write_text("")
    (root / "data" / "x").write_text("written by the step")
    stubs.remove()
    assert sorted(os.listdir(root)) == ["data", "etc"]
    assert (root / "etc" / "hosts").read_text() == "keep me"


# -- detection ------------------------------------------------------------------------


def test_detect_when_not_root_and_no_runc(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import bakery.engine.sandbox.detect as detect

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(detect, "find_runtime", lambda name: None)
    sb, why = detect_sandbox("runc")
    assert isinstance(sb, UnavailableSandbox)
    assert "runc" in why
    with pytest.raises(BakeryError, match="runc was asked for but is not installed") as e:
        sb.run(_spec())
    assert e.value.hint == "apt-get install runc"


def test_detect_rejects_unknown_choice() -> None:
    with pytest.raises(BakeryError, match="unknown sandbox"):
        detect_sandbox("docker")


def test_detect_namespace_when_asked(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    sb, why = detect_sandbox("namespace")
    assert sb.name in ("namespace", "unavailable")
    assert why


# -- seccomp --------------------------------------------------------------------


def test_seccomp_profile_in_the_spec() -> None:
    from bakery.engine.sandbox.seccomp import BLOCKED, default_profile

    cfg = build_oci_config(_spec(), ExecUser(0, 0), [], "/h", "/r", [], machine="x86_64")
    prof = cfg["linux"]["seccomp"]
    assert prof == default_profile("x86_64")
    assert prof["defaultAction"] == "SCMP_ACT_ALLOW"
    assert prof["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    blocked = prof["syscalls"][0]
    assert blocked["action"] == "SCMP_ACT_ERRNO" and blocked["errnoRet"] == 1
    for name in ("mount", "unshare", "setns", "keyctl", "bpf", "kexec_load", "pivot_root", "userfaultfd"):
        assert name in blocked["names"] and name in BLOCKED
    for allowed in ("ptrace", "clone", "chown", "personality", "execve"):
        assert allowed not in blocked["names"]
    assert prof["syscalls"][1] == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    clone_rules = [r for r in prof["syscalls"] if r["names"] == ["clone"]]
    masks = sorted(r["args"][0]["value"] for r in clone_rules)
    assert sum(masks) == 0x7E020000 and len(masks) == 7
    assert all(r["args"][0]["value"] == r["args"][0]["valueTwo"] and r["args"][0]["index"] == 0
               and r["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" for r in clone_rules)
    assert default_profile("s390x")["syscalls"][2]["args"][0]["index"] == 1
    assert "architectures" not in default_profile("vax")
    assert default_profile("aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
