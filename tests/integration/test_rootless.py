"""Rootless `bakery run`: RUN steps as an unprivileged user (``nobody``,
through setpriv) in runc's rootless mode, end to end, with the user's own
cache directory; the layer the step made is read back from the OCI output.

Needs root to switch to ``nobody`` (the CI runs as root), runc, busybox-static,
docker-registry, and user namespaces an unprivileged user can create.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Dict, List

import pytest

from tests.integration.ocitar import image_layers
from tests.integration.registry import running_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOBODY = 65534

pytestmark = pytest.mark.integration


def as_nobody(*cmd: str) -> List[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *cmd]


def _python_for_nobody(cwd: str) -> str:
    """An interpreter nobody may run that imports this checkout's bakery."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT}
    for py in (sys.executable, "/usr/bin/python3"):
        # the namespace sandbox starts sys.executable again: nobody must be able to
        check = "import subprocess, sys; subprocess.run([sys.executable, '-c', '0'], check=True); import bakery.cli"
        r = subprocess.run(as_nobody(py, "-c", check), cwd=cwd, env=env, capture_output=True, timeout=60)
        if r.returncode == 0:
            return py
    pytest.skip(f"no Python that nobody can run imports bakery from {ROOT}")


@pytest.fixture()
def rootless(tmp_path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("switching to nobody needs root")
    for tool in ("runc", "setpriv", "docker-registry"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} is not installed")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox-static is not installed")
    if subprocess.run(as_nobody("unshare", "-U", "-r", "true"), capture_output=True).returncode != 0:
        pytest.skip("an unprivileged user cannot create user namespaces here")
    work = tempfile.mkdtemp(prefix="bakery-rootless-", dir="/tmp")
    try:
        os.chmod(work, 0o755)
        os.chown(work, NOBODY, NOBODY)
        py = _python_for_nobody(work)
        with running_registry(str(tmp_path)) as reg:
            base = f"{reg.host}/bakery/busybox-alice:latest"
            push_base(busybox, base, str(tmp_path / "base"))
            yield {"work": work, "base": base, "python": py}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def push_base(busybox: str, ref: str, tmp: str) -> None:
    """busybox plus a layer with files that are not root's: /home/alice
    (1000:1000, 0700) holding notes (1000:1000), and /ro (0555) holding x."""
    import importlib.util

    from bakery.oci.image import ContainerConfig, add_layer, build_image
    from bakery.oci.registry import RegistryClient
    from bakery.oci.store import BlobStore

    spec = importlib.util.spec_from_file_location(
        "busybox_image", os.path.join(ROOT, "examples", "tools", "busybox_image.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    os.makedirs(tmp)
    store = BlobStore(os.path.join(tmp, "blobs"))
    mod.rootfs_tar(busybox, os.path.join(tmp, "l1.tar"))
    with tarfile.open(os.path.join(tmp, "l2.tar"), "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode, owner, data in (
                ("home", tarfile.DIRTYPE, 0o755, 0, b""),
                ("home/alice", tarfile.DIRTYPE, 0o700, 1000, b""),
                ("home/alice/notes", tarfile.REGTYPE, 0o600, 1000, b"alice\n"),
                ("ro", tarfile.DIRTYPE, 0o555, 0, b""),
                ("ro/x", tarfile.REGTYPE, 0o444, 0, b"x\n")):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.size = kind, mode, owner, owner, len(data)
            tf.addfile(ti, io.BytesIO(data))
    layers = [add_layer(store, os.path.join(tmp, n)) for n in ("l1.tar", "l2.tar")]
    cfg = ContainerConfig(env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    RegistryClient().push(store, build_image(store, layers, cfg, "linux/amd64", created=0).descriptor, ref)


def write_project(work: str, dockerfile: str, base: str) -> str:
    proj = os.path.join(work, "proj")
    os.makedirs(proj, exist_ok=True)
    with open(os.path.join(proj, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    with open(os.path.join(proj, "docker-bake.hcl"), "w") as f:
        f.write(f'''target "app" {{
  args = {{ BASE = "{base}" }}
  platforms = ["linux/amd64"]
  output = ["type=oci,dest=out/app.tar"]
}}
''')
    for dirpath, dirs, files in os.walk(work):
        for n in [*dirs, *files]:
            os.lchown(os.path.join(dirpath, n), NOBODY, NOBODY)
    return proj


def bakery_as_nobody(env: Dict[str, str], proj: str, *args: str, sandbox: str = "") -> subprocess.CompletedProcess:
    e = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": ROOT,
         "HOME": env["work"], "BAKERY_CACHE_DIR": os.path.join(env["work"], "cache"),
         "BAKERY_SANDBOX": sandbox}
    return subprocess.run(as_nobody(env["python"], "-m", "bakery", *args), cwd=proj, env=e,
                          capture_output=True, text=True, timeout=600)


DOCKERFILE = """\
ARG BASE
FROM $BASE
RUN mkdir -p /data/keep /data/gone && echo base > /data/gone/f && echo one > /data/keep/f \\
 && chown 0:0 /data/keep/f
RUN id -u > /uid && id -g > /gid && echo hello > /hello && rm -r /data/gone && rm /etc/base-version \\
 && echo two >> /data/keep/f && cat /proc/self/uid_map > /uid_map \\
 && echo more >> /home/alice/notes && touch /ro/y && ls -ln /home/alice/notes > /seen
"""


@pytest.mark.parametrize("sandbox", ["runc", "namespace"])
def test_run_steps_rootless_end_to_end(rootless, sandbox: str) -> None:  # type: ignore[no-untyped-def]
    proj = write_project(rootless["work"], DOCKERFILE, rootless["base"])
    info = bakery_as_nobody(rootless, proj, "info", sandbox=sandbox)
    assert info.returncode == 0, info.stderr
    assert "rootless" in info.stdout and f"uid {NOBODY}" in info.stdout, info.stdout
    assert ("runc" if sandbox == "runc" else "Linux namespaces") in info.stdout, info.stdout
    assert "snapshotter: copy" in info.stdout, info.stdout

    r = bakery_as_nobody(rootless, proj, "run", "app", "--progress", "plain", sandbox=sandbox)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "rootless" in r.stderr
    layers = image_layers(os.path.join(proj, "out", "app.tar"))
    assert len(layers) == 4  # busybox, alice's files, then one per RUN
    last = {name: ti for name, (ti, _) in layers[-1].items()}

    def content(name: str) -> bytes:
        return layers[-1][name][1]

    # the step ran as root in its own user namespace: nobody mapped to 0
    assert content("uid") == b"0\n" and content("gid") == b"0\n"
    assert content("uid_map").split() == [b"0", str(NOBODY).encode(), b"1"]
    # what it wrote belongs to root in the layer, not to nobody
    for name in ("uid", "gid", "hello", "data/keep/f"):
        assert (last[name].uid, last[name].gid) == (0, 0), name
    assert content("data/keep/f") == b"one\ntwo\n"
    # a file of the base that the step changed keeps its owner (1000:1000
    # from the base layer), though the step saw it as root's (single-id map)
    assert content("home/alice/notes") == b"alice\nmore\n"
    assert (last["home/alice/notes"].uid, last["home/alice/notes"].gid) == (1000, 1000)
    assert content("seen").split()[2:4] == [b"0", b"0"]
    # a 0555 directory of the base was extracted and written to
    assert "ro/y" in last and (last["ro"].mode & 0o777) == 0o555
    # deletions are whiteouts: a directory and a base-layer file
    assert "data/.wh.gone" in last and "etc/.wh.base-version" in last
    assert not any(n.startswith("data/gone/") for n in last)
    # the cache directory is nobody's, and nothing of the run is left in it
    st = os.stat(os.path.join(rootless["work"], "cache"))
    assert st.st_uid == NOBODY
    tmp = os.path.join(rootless["work"], "cache", "tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []

    # a second run is all cached
    r2 = bakery_as_nobody(rootless, proj, "run", "app", "--progress", "plain", sandbox=sandbox)
    assert r2.returncode == 0, r2.stderr[-4000:]
    assert "done: 0 steps run" in r2.stderr, r2.stderr[-2000:]


def test_rootless_user_other_than_root_is_a_clear_error(rootless) -> None:  # type: ignore[no-untyped-def]
    df = "ARG BASE\nFROM $BASE\nUSER nobody\nRUN id -u > /tmp/x\n"
    proj = write_project(rootless["work"], df, rootless["base"])
    r = bakery_as_nobody(rootless, proj, "run", "app", "--progress", "plain")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "rootless step has only uid 0" in r.stderr, r.stderr[-2000:]


SANDBOX_SCRIPT = r'''
import json, os, sys, threading, time
from bakery.engine.sandbox import NamespaceSandbox, RuncSandbox, RunSpec, SandboxCancelled, SandboxMount
from bakery.errors import BakeryError

kind, work = sys.argv[1], sys.argv[2]
rootfs, tmp = os.path.join(work, "rootfs"), os.path.join(work, "tmp")
sb = RuncSandbox("runc", tmp_dir=tmp) if kind == "runc" else NamespaceSandbox(tmp_dir=tmp)
out = {"idmap": [sb.idmap.uid, sb.idmap.gid] if sb.idmap else None}
script = ("id -u; id -g; cat /proc/self/uid_map; hostname; echo x > /dev/null && echo devnull-ok; "
          "cat /run/secrets/s; echo; echo env=$SECRET_ENV; touch /ro/new 2>/dev/null || echo ro-refused; "
          "echo t > /t/f && echo tmpfs-ok; echo rw > /made; ls /sys/kernel > /dev/null && echo sys-ok; "
          "grep -c . /proc/self/mounts > /dev/null && echo proc-ok; exit 3")
r = sb.run(RunSpec(rootfs=rootfs, args=("/bin/sh", "-c", script), hostname="rl",
                   mounts=(SandboxMount("secret", "", "/run/secrets/s", data=b"s3cret"),
                           SandboxMount("bind", os.path.join(work, "ro"), "/ro", readonly=True),
                           SandboxMount("tmpfs", "", "/t")),
                   secret_env={"SECRET_ENV": "e3nv"}))
out["code"], out["output"] = r.exit_code, r.output.decode()
try:
    sb.run(RunSpec(rootfs=rootfs, args=("id",), user="alice"))
    out["alice"] = "ran"
except BakeryError as e:
    out["alice"] = str(e)
cancel = threading.Event()
threading.Timer(1.0, cancel.set).start()
started = time.monotonic()
try:
    sb.run(RunSpec(rootfs=rootfs, args=("/bin/sh", "-c", "echo rootless-sleeper; sleep 60")), cancel=cancel)
    out["cancel"] = "not cancelled"
except SandboxCancelled:
    out["cancel"] = time.monotonic() - started
out["tmp_left"] = os.listdir(tmp)
print(json.dumps(out))
'''


@pytest.mark.parametrize("kind", ["runc", "namespace"])
def test_sandboxes_run_rootless(kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.conftest import make_busybox_rootfs

    if os.geteuid() != 0:
        pytest.skip("switching to nobody needs root")
    if kind == "runc" and shutil.which("runc") is None and not os.path.exists("/usr/sbin/runc"):
        pytest.skip("runc is not installed")
    if subprocess.run(as_nobody("unshare", "-U", "-r", "true"), capture_output=True).returncode != 0:
        pytest.skip("an unprivileged user cannot create user namespaces here")
    work = tempfile.mkdtemp(prefix="bakery-rootless-", dir="/tmp")
    try:
        os.chmod(work, 0o755)
        make_busybox_rootfs(os.path.join(work, "rootfs"))
        for d in ("ro", "tmp"):
            os.makedirs(os.path.join(work, d))
        with open(os.path.join(work, "run.py"), "w") as f:
            f.write(SANDBOX_SCRIPT)
        for dirpath, dirs, files in os.walk(work):
            os.lchown(dirpath, NOBODY, NOBODY)
            for n in files + dirs:
                os.lchown(os.path.join(dirpath, n), NOBODY, NOBODY)
        py = _python_for_nobody(work)
        r = subprocess.run(as_nobody(py, os.path.join(work, "run.py"), kind, work), cwd=work,
                           env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": ROOT},
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["idmap"] == [NOBODY, NOBODY]
        lines = out["output"].splitlines()
        assert out["code"] == 3, out["output"]
        assert lines[:3] == ["0", "0", f"0 {NOBODY} 1".replace(" ", "")] or (
            lines[:2] == ["0", "0"] and lines[2].split() == ["0", str(NOBODY), "1"]), lines
        for want in ("rl", "devnull-ok", "s3cret", "env=e3nv", "ro-refused", "tmpfs-ok", "sys-ok", "proc-ok"):
            assert want in lines, (want, lines)
        assert "cannot run as user 'alice'" in out["alice"]
        assert isinstance(out["cancel"], float) and out["cancel"] < 30
        assert out["tmp_left"] == []
        # the step's file belongs to nobody on the host; nothing of the mounts is left
        st = os.lstat(os.path.join(work, "rootfs", "made"))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
        assert not os.path.exists(os.path.join(work, "rootfs", "ro"))
        assert not os.path.exists(os.path.join(work, "rootfs", "run", "secrets"))
        assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).find(b"rootless-sleeper") >= 0]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


# -- subordinate ids (bakery re-executes itself in a user namespace) --------------

SUBID_DOCKERFILE = """\
ARG BASE
FROM $BASE
COPY --chown=1000:1000 hello.txt /home/alice/hello.txt
RUN cat /proc/self/uid_map | tr -s ' ' > /uid_map && mkdir -p /srv/www && chown 33:33 /srv/www \\
 && echo more >> /home/alice/notes && touch /srv/www/index && chown 33:44 /srv/www/index
USER 1000:1000
RUN --mount=type=cache,target=/cache,uid=1000,gid=1000 \\
    id -u > /tmp/who && echo x >> /cache/log && wc -l < /cache/log > /tmp/cache-count \\
 && echo mine > /home/alice/mine
"""


@pytest.fixture()
def subid_user(rootless):  # type: ignore[no-untyped-def]
    """A throwaway user with subordinate ids (useradd gives them), removed after."""
    for tool in ("newuidmap", "newgidmap", "useradd", "userdel"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} is not installed (Debian packages uidmap, passwd)")
    name = f"bkrl{os.getpid() % 100000}"
    r = subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    try:
        import pwd

        pw = pwd.getpwnam(name)
        with open("/etc/subuid") as f:
            if not any(line.startswith(name + ":") for line in f):
                pytest.skip("useradd gave no subordinate ids (SUB_UID_COUNT in /etc/login.defs)")
        for dirpath, _dirs, files in os.walk(rootless["work"]):
            os.lchown(dirpath, pw.pw_uid, pw.pw_gid)
            for n in files:
                os.lchown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)
        yield pw
    finally:
        # the store holds files of subordinate ids: bakery removes them in its namespace
        subprocess.run(["userdel", name], capture_output=True)


def test_run_steps_rootless_with_subordinate_ids(rootless, subid_user) -> None:  # type: ignore[no-untyped-def]
    pw = subid_user
    proj = write_project(rootless["work"], SUBID_DOCKERFILE, rootless["base"])
    with open(os.path.join(proj, "hello.txt"), "w") as f:
        f.write("hi\n")
    for dirpath, dirs, files in os.walk(rootless["work"]):
        for n in [*dirs, *files]:
            os.lchown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)
    e = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": ROOT,
         "HOME": rootless["work"], "BAKERY_CACHE_DIR": os.path.join(rootless["work"], "cache")}
    who = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--",
           rootless["python"], "-m", "bakery"]

    def bakery(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*who, *args], cwd=proj, env=e, capture_output=True, text=True, timeout=600)

    info = bakery("info")
    assert info.returncode == 0, info.stderr
    assert "subordinate ids" in info.stdout and "snapshotter: copy" in info.stdout, info.stdout
    for n in (1, 2):
        r = bakery("run", "app", "--progress", "plain", *(["--no-cache"] if n == 2 else []))
        assert r.returncode == 0, r.stderr[-4000:]
        layers = image_layers(os.path.join(proj, "out", "app.tar"))
        run1, run2 = layers[-2:]
        owner = {name: (ti.uid, ti.gid) for layer in layers[-3:] for name, (ti, _) in layer.items()}
        # the step ran in a namespace where root is the user and 1.. its subordinate ids
        with open("/etc/subuid") as f:
            start, count = next(line.strip().split(":")[1:] for line in f
                                if line.startswith(pw.pw_name + ":"))
        assert [ln.split() for ln in run1["uid_map"][1].decode().splitlines()] == [
            ["0", str(pw.pw_uid), "1"], ["1", start, count]]
        # COPY --chown, chown in a step, a base file changed in place, USER 1000
        assert owner["home/alice/hello.txt"] == (1000, 1000)
        assert owner["srv/www"] == (33, 33) and owner["srv/www/index"] == (33, 44)
        assert owner["home/alice/notes"] == (1000, 1000)
        assert run2["tmp/who"][1] == b"1000\n" and owner["home/alice/mine"] == (1000, 1000)
        # a cache mount of uid 1000, kept across runs
        assert run2["tmp/cache-count"][1].strip() == str(n).encode()
    # the store's files of subordinate ids go with bakery's own prune
    r = bakery("cache", "prune", "--all")
    assert r.returncode == 0, r.stderr


def test_sigterm_reaches_the_reexecuted_bakery(rootless, subid_user) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    pw = subid_user
    marker = f"rootless-term-{os.getpid()}"
    df = f'ARG BASE\nFROM $BASE\nRUN echo "run""ning" && sleep 300 && echo {marker}\n'
    proj = write_project(rootless["work"], df, rootless["base"])
    for dirpath, dirs, files in os.walk(rootless["work"]):
        for n in [*dirs, *files]:
            os.lchown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)
    e = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": ROOT,
         "HOME": rootless["work"], "BAKERY_CACHE_DIR": os.path.join(rootless["work"], "cache")}
    p = subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--",
                          rootless["python"], "-m", "bakery", "run", "app", "--progress", "plain"],
                         cwd=proj, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        seen = ""
        deadline = time.time() + 120
        while time.time() < deadline and "running\n" not in seen:
            line = p.stderr.readline()
            if not line:
                break
            seen += line
        assert "running\n" in seen, seen[-2000:]
        assert [pid for pid in os.listdir("/proc") if pid.isdigit() and marker.encode() in _cmdline(pid)]
        p.send_signal(signal.SIGTERM)  # the parent, outside the namespace
        _, rest = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 143, (p.returncode, rest[-2000:])
    deadline = time.time() + 10
    while time.time() < deadline and [pid for pid in os.listdir("/proc")
                                      if pid.isdigit() and marker.encode() in _cmdline(pid)]:
        time.sleep(0.1)
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and marker.encode() in _cmdline(pid)]
    tmp = os.path.join(rootless["work"], "cache", "store", "tmp")
    assert not [d for d in os.listdir(tmp) if d.startswith("rootfs-")], os.listdir(tmp)
