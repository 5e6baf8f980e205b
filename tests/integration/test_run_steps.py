"""RUN steps through `bakery run` (root, runc), end to end, checked in the
layers of the OCI output: deletions as whiteouts, arm64 steps under
qemu-user emulation, cache mounts kept across runs with each sharing mode,
the SSH agent forwarded to a step, and signals to bakery.

A registry on 127.0.0.1 holds the busybox base image (amd64, plus arm64 when
an arm64 busybox is available, see test_run_example.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import pytest

from tests.integration.ocitar import image_layers
from tests.integration.registry import running_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARM64_BUSYBOX = os.environ.get("BAKERY_ARM64_BUSYBOX", "/opt/bakery-test/arm64/bin/busybox")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Any:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("RUN steps as root (rootless runs: test_rootless.py)")
    for tool in ("runc", "docker-registry", "umoci"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} is not installed")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox-static is not installed")
    tmp = tmp_path_factory.mktemp("steps")
    with running_registry(str(tmp)) as reg:
        platforms = [f"linux/amd64={busybox}"]
        if os.path.exists(ARM64_BUSYBOX):
            platforms.append(f"linux/arm64={ARM64_BUSYBOX}")
        ref = f"{reg.host}/bakery/busybox:latest"
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tools", "busybox_image.py"), ref,
                        *platforms], check=True, cwd=ROOT, capture_output=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
        yield {"ref": ref, "arm64": len(platforms) > 1}


class Project:
    def __init__(self, path: str, base_ref: str):
        self.path = path
        self.cache = os.path.join(path, "cache")
        self.base = base_ref
        os.makedirs(path, exist_ok=True)

    def write(self, dockerfile: str, platform: str = "linux/amd64", extra: str = "") -> None:
        with open(os.path.join(self.path, "Dockerfile"), "w") as f:
            f.write(dockerfile)
        with open(os.path.join(self.path, "docker-bake.hcl"), "w") as f:
            f.write(f'''target "app" {{
  args = {{ BASE = "{self.base}" }}
  platforms = ["{platform}"]
  output = ["type=oci,dest=out/app.tar"]
{extra}}}
''')

    def cmd(self, *args: str) -> List[str]:
        return [sys.executable, "-m", "bakery", "run", "--progress", "plain", *args]

    def env(self, **extra: str) -> Dict[str, str]:
        return dict(os.environ, PYTHONPATH=ROOT, BAKERY_CACHE_DIR=self.cache, **extra)

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        r = subprocess.run(self.cmd(*args), cwd=self.path, env=self.env(**env), capture_output=True,
                           text=True, timeout=600)
        if check:
            assert r.returncode == 0, r.stderr[-4000:]
        return r

    def layers(self, arch: Optional[str] = None) -> Any:
        return image_layers(os.path.join(self.path, "out", "app.tar"), arch)


@pytest.fixture()
def project(base, tmp_path) -> Project:  # type: ignore[no-untyped-def]
    return Project(str(tmp_path / "proj"), base["ref"])


# -- files deleted: whiteouts ------------------------------------------------------


def test_deletions_are_whiteouts_in_the_layer(project: Project) -> None:
    project.write("""\
ARG BASE
FROM $BASE
RUN mkdir -p /a/sub /b /c && echo 1 > /a/f && echo 2 > /a/sub/g && echo 3 > /b/h && echo 4 > /c/i \\
 && ln -s f /a/link
RUN rm /a/f /etc/group && rm -r /a/sub && rm -r /b && mkdir /b && echo new > /b/n && rm -r /c \\
 && echo c > /c
""")
    project.run("app")
    layers = project.layers()
    assert len(layers) == 3
    last = layers[-1]
    # deleted files and directories: .wh.NAME, and nothing of what was under them
    assert {"a/.wh.f", "a/.wh.sub", "etc/.wh.group"} <= set(last)
    assert not [n for n in last if n.startswith("a/sub/")]
    # a directory emptied and made again: its old entries are hidden (an
    # opaque directory, or a whiteout per old entry), the new one is there
    assert "b/.wh..wh..opq" in last or "b/.wh.h" in last
    assert last["b/n"][1] == b"new\n"
    # a directory replaced by a file: the file, no entries below it
    assert last["c"][0].isreg() and last["c"][1] == b"c\n"
    assert not [n for n in last if n.startswith("c/") and not n.startswith("c/.wh.")]
    # what a real tool makes of the layers (umoci applies the whiteouts)
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    one = os.path.join(project.path, "one")
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{os.path.join(project.path, 'out', 'app.tar')}",
                    f"oci:{one}:x"], check=True, capture_output=True)
    bundle = os.path.join(project.path, "bundle")
    subprocess.run(["umoci", "unpack", "--image", f"{one}:x", bundle], check=True, capture_output=True)
    rootfs = os.path.join(bundle, "rootfs")
    assert sorted(os.listdir(os.path.join(rootfs, "a"))) == ["link"]
    assert sorted(os.listdir(os.path.join(rootfs, "b"))) == ["n"]
    assert os.path.isfile(os.path.join(rootfs, "c"))
    assert not os.path.exists(os.path.join(rootfs, "etc", "group"))
    assert os.path.exists(os.path.join(rootfs, "etc", "passwd"))


# -- foreign platforms ------------------------------------------------------------


def test_arm64_run_step_under_emulation(base, project: Project) -> None:  # type: ignore[no-untyped-def]
    if not base["arm64"]:
        pytest.skip(f"no arm64 busybox at {ARM64_BUSYBOX} (BAKERY_ARM64_BUSYBOX)")
    if not os.path.exists("/usr/share/binfmts/qemu-aarch64") and not shutil.which("qemu-aarch64-static"):
        pytest.skip("qemu-user-static is not installed")
    if os.uname().machine == "aarch64":
        pytest.skip("the host is arm64: nothing to emulate")
    project.write("ARG BASE\nFROM $BASE\nRUN uname -m > /arch && /bin/busybox uname -m >> /arch\n",
                  platform="linux/arm64")
    project.run("app")
    layers = project.layers("arm64")
    assert layers[-1]["arch"][1] == b"aarch64\naarch64\n"
    # the binfmt handler bakery relies on has the fix-binary flag
    with open("/proc/sys/fs/binfmt_misc/qemu-aarch64") as f:
        text = f.read()
    assert "enabled" in text and "F" in text.split("flags:")[1].split()[0]


# -- bakery setup emulation --------------------------------------------------------------


def _entry(name: str) -> Optional[str]:
    try:
        with open(f"/proc/sys/fs/binfmt_misc/{name}") as f:
            return f.read()
    except OSError:
        return None


def _setup(*args: str, nobody: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bakery", "setup", "emulation", *args]
    if nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/bin/python3",
               *cmd[1:]]
    return subprocess.run(cmd, cwd="/", env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=120)


def test_setup_emulation_registers_with_fix_binary_idempotently() -> None:
    if os.geteuid() != 0:
        pytest.skip("registering binfmt_misc handlers needs root")
    if not os.path.exists("/usr/share/binfmts/qemu-riscv64") or \
            not os.path.exists("/usr/share/binfmts/qemu-aarch64"):
        pytest.skip("Debian's qemu-user-static is not installed")
    # riscv64 is used by no other test: it is removed again if it was not there
    had_riscv = _entry("qemu-riscv64") is not None
    try:
        r = _setup("--arch", "riscv64", "--arch", "linux/arm64")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 2 and lines[0].startswith("qemu-aarch64: ") and lines[1].startswith("qemu-riscv64: ")
        for name in ("qemu-aarch64", "qemu-riscv64"):
            text = _entry(name)
            assert text is not None and text.startswith("enabled"), name
            flags = text.split("flags:")[1].split()[0]
            assert "F" in flags and "P" in flags, (name, flags)
            assert f"/usr/libexec/qemu-binfmt/{name[5:]}-binfmt-P" in text
        # again: nothing to do, nothing re-registered (a running build is not disturbed)
        again = _setup("--arch", "riscv64", "--arch", "arm64")
        assert again.returncode == 0, again.stderr
        assert [ln.split(":")[1].strip().split(" (")[0] for ln in again.stdout.splitlines()] == [
            "already registered", "already registered"]
        # the host's own architecture is never registered
        host = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
        assert _setup("--arch", host).stdout == ""
    finally:
        if not had_riscv and _entry("qemu-riscv64") is not None:
            with open("/proc/sys/fs/binfmt_misc/qemu-riscv64", "w") as f:
                f.write("-1")


def test_setup_emulation_errors() -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to nobody needs root")
    r = _setup("--arch", "arm64", nobody=True)
    assert r.returncode == 1 and "needs root" in r.stderr and "Traceback" not in r.stderr, r.stderr
    if os.path.isdir("/usr/share/binfmts"):
        r = _setup("--arch", "vax")
        assert r.returncode == 1 and "no qemu-user-static emulator for vax" in r.stderr, r.stderr


# -- signals ----------------------------------------------------------------------


def _container_procs(marker: str) -> List[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_build_and_its_step(project: Project, sig: int) -> None:
    marker = f"bakery-signal-test-{sig}-{os.getpid()}"
    # the step prints "running" (its description shows "run""ning")
    project.write(f'ARG BASE\nFROM $BASE\nRUN echo "run""ning" && sleep 300 && echo {marker}\n')
    p = subprocess.Popen(project.cmd("app"), cwd=project.path, env=project.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        seen = ""
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                ln.rstrip().endswith("running") for ln in seen.splitlines()):
            line = p.stderr.readline()
            if not line:
                break
            seen += line
        assert "running\n" in seen, seen[-2000:]
        assert _container_procs(marker), "the step's process is not running"
        p.send_signal(sig)
        _, rest = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == (130 if sig == signal.SIGINT else 143), (p.returncode, rest)
    assert "Traceback" not in rest
    # the step's process tree, its mounts and its temporary directories are gone
    deadline = time.time() + 10
    while _container_procs(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _container_procs(marker) == []
    with open("/proc/self/mountinfo") as f:
        assert project.cache not in f.read()
    tmp = os.path.join(project.cache, "tmp")
    assert not os.path.isdir(tmp) or [d for d in os.listdir(tmp) if d.startswith("rootfs-")] == []


# -- cache mounts ------------------------------------------------------------------


def test_cache_mounts_are_kept_across_runs(project: Project) -> None:
    project.write("""\
ARG BASE
FROM $BASE
RUN --mount=type=cache,target=/c/shared,sharing=shared \\
    --mount=type=cache,id=lk,target=/c/locked,sharing=locked \\
    --mount=type=cache,id=pv,target=/c/private,sharing=private \\
    --mount=type=cache,id=own,target=/c/owned,uid=1000,gid=50,mode=0700 \\
    for d in shared locked private owned; do echo run >> /c/$d/log; wc -l < /c/$d/log > /count-$d; done \\
 && stat -c '%u:%g:%a' /c/owned > /owned
""")
    for n in (1, 2):
        project.run("app", "--no-cache")
        last = project.layers()[-1]
        for d in ("shared", "locked", "private", "owned"):
            assert last[f"count-{d}"][1].strip() == str(n).encode(), (n, d)
        assert last["owned"][1] == b"1000:50:700\n"
        # the cache's content is never part of the layer
        assert not [name for name in last if name.startswith("c/") and name != "c"], sorted(last)
    # `bakery cache prune --all` clears them
    r = subprocess.run([sys.executable, "-m", "bakery", "cache", "prune", "--all"], cwd=project.path,
                       env=project.env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    project.run("app", "--no-cache")
    assert project.layers()[-1]["count-locked"][1].strip() == b"1"


# -- ssh ----------------------------------------------------------------------------


def _ssh_add_tools(dest: str) -> str:
    """ssh-add with its shared libraries and loader in ``dest`` (run inside
    a busybox step as ``/tools/ld.so --library-path /tools /tools/ssh-add``)."""
    ssh_add = shutil.which("ssh-add")
    if ssh_add is None or shutil.which("ssh-agent") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-client is not installed")
    os.makedirs(dest)
    shutil.copy2(ssh_add, os.path.join(dest, "ssh-add"))
    out = subprocess.run(["ldd", ssh_add], capture_output=True, text=True, check=True).stdout
    loader = ""
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if len(parts) >= 3 and parts[1] == "=>" else parts[0]
        if not path.startswith("/"):
            continue
        if "ld-linux" in path:
            loader = path
        shutil.copy2(os.path.realpath(path), os.path.join(dest, os.path.basename(path)))
    if not loader:
        pytest.skip("cannot find ssh-add's dynamic loader")
    return "/tools/" + os.path.basename(loader)


def _keygen(path: str, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True)
    out = subprocess.run(["ssh-keygen", "-l", "-f", path], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]  # SHA256:...


def test_ssh_mounts_forward_an_agent_and_key_files(project: Project) -> None:
    loader = _ssh_add_tools(os.path.join(project.path, "tools"))
    keys = os.path.join(project.path, "..", "keys")
    os.makedirs(keys)
    agent_fp = _keygen(os.path.join(keys, "agent_key"), "in-the-agent")
    file_fp = _keygen(os.path.join(keys, "file_key"), "from-a-file")
    agent_sock = os.path.join(keys, "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_sock], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not os.path.exists(agent_sock) and time.time() < deadline:
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", os.path.join(keys, "agent_key")], check=True,
                       env=dict(os.environ, SSH_AUTH_SOCK=agent_sock))
        add = f"{loader} --library-path /tools /tools/ssh-add"
        project.write(f"""\
ARG BASE
FROM $BASE
RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh \\
    echo "$SSH_AUTH_SOCK" > /sock && {add} -l > /default-keys
RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh,id=deploy,target=/run/deploy.sock \\
    SSH_AUTH_SOCK=/run/deploy.sock {add} -l > /deploy-keys && ls /run/buildkit > /left 2>&1 || true
USER 1000
RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh,uid=1000,mode=0600 \\
    --mount=type=ssh,target=/run/root.sock \\
    stat -c '%u %a' "$SSH_AUTH_SOCK" /run/root.sock > /tmp/owners && {add} -l > /tmp/user-keys \\
 && (SSH_AUTH_SOCK=/run/root.sock {add} -l > /tmp/root-sock 2>&1; echo "rc=$?" >> /tmp/root-sock)
""", extra=f'  ssh = ["default", "deploy={os.path.join(keys, "file_key")}"]\n')
        r = project.run("app", SSH_AUTH_SOCK=agent_sock)
        last2, last, user_layer = project.layers()[-3:]
        assert last2["sock"][1] == b"/run/buildkit/ssh_agent.0\n"
        default_keys = last2["default-keys"][1].decode()
        assert agent_fp in default_keys and "in-the-agent" in default_keys and file_fp not in default_keys
        deploy_keys = last["deploy-keys"][1].decode()
        assert file_fp in deploy_keys and "from-a-file" in deploy_keys and agent_fp not in deploy_keys
        # a step of user 1000 uses a socket given to uid 1000; the default
        # socket (0:0, 0600, as BuildKit's) is closed to it
        assert user_layer["tmp/owners"][1] == b"1000 600\n0 600\n"
        assert agent_fp in user_layer["tmp/user-keys"][1].decode()
        assert user_layer["tmp/root-sock"][1].decode().strip().endswith("rc=2"), user_layer["tmp/root-sock"]
        assert not [d for d in os.listdir("/tmp") if d.startswith("bakery-ssh-relay-")]
        # the socket mounts left nothing in the layers
        assert not [n for n in (*last2, *last) if n.startswith(("run/buildkit", "run/deploy"))]
        # the private agent bakery started for the key file is gone
        assert _container_procs("/bakery-ssh-") == []
        # no private key byte reached the store, the output or the log
        with open(os.path.join(keys, "file_key"), "rb") as f:
            secret = b"".join(f.read().split(b"\n")[1:3])
        assert secret and secret not in r.stderr.encode()
        for dirpath, _, files in os.walk(project.path):
            for name in files:
                p = os.path.join(dirpath, name)
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as fh:
                        assert secret not in fh.read().replace(b"\n", b""), p

        # a required ssh mount whose id the target does not forward fails clearly
        project.write("ARG BASE\nFROM $BASE\nRUN --mount=type=ssh,id=other,required=true true\n",
                      extra='  ssh = ["default"]\n')
        bad = project.run("app", check=False, SSH_AUTH_SOCK=agent_sock)
        assert bad.returncode == 1 and "no SSH key 'other' forwarded" in bad.stderr, bad.stderr[-2000:]
        assert "Traceback" not in bad.stderr
    finally:
        agent.terminate()
        agent.wait()


def test_cache_mount_from_a_stage(project: Project) -> None:
    df = """\
ARG BASE
FROM $BASE AS seed
RUN mkdir -p /seed/sub && echo {word} > /seed/f && echo deep > /seed/sub/g && chmod 0750 /seed
FROM $BASE
ARG N
RUN --mount=type=cache,id=warm,target=/c,from=seed,source=/seed \\
    echo "$N" > /n && cat /c/f /c/sub/g > /got && stat -c %a /c > /mode && echo add >> /c/f
"""
    project.write(df.format(word="seeded"))
    for n in (1, 2):
        # the seed stage comes from the cache the second time: the same source
        project.run("app", "--set", f"app.args.N={n}")
        last = project.layers()[-1]
        # made from the stage's files once, then kept across runs
        assert last["got"][1] == b"seeded\n" + b"add\n" * (n - 1) + b"deep\n", last["got"]
        assert last["mode"][1] == b"750\n"
    # another source: another cache (BuildKit keys it by id and source)
    project.write(df.format(word="other"))
    project.run("app", "--set", "app.args.N=3")
    assert project.layers()[-1]["got"][1] == b"other\ndeep\n"
