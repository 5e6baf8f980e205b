"""`bakery run` for real: the example monorepo on the embedded engine.

A registry on 127.0.0.1 holds a busybox base image made from Debian's
busybox-static (amd64, plus arm64 when its binary is available, run
through qemu-user-static); runc executes the RUN steps; skopeo and umoci
check the OCI outputs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import List

import pytest

from tests.integration.registry import push_busybox_image

ARM64_BUSYBOX = os.environ.get("BAKERY_ARM64_BUSYBOX", "/opt/bakery-test/arm64/bin/busybox")

pytestmark = pytest.mark.integration


def bakery(env, *args: str, check: bool = True) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    sets: List[str] = []
    if env["platforms"] == ["linux/amd64"]:
        sets = ["--set", "*.platform=linux/amd64"]
    e = dict(os.environ, BAKERY_CACHE_DIR=env["cache"])
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}",
                        *sets, *args], cwd=env["cwd"], capture_output=True, text=True, env=e, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def steps_run(r: subprocess.CompletedProcess) -> int:
    m = re.search(r"done: (\d+) steps run, (\d+) from the cache", r.stderr)
    assert m, r.stderr[-2000:]
    return int(m.group(1))


def unpack(env, target: str, arch: str, dest: str) -> str:  # type: ignore[no-untyped-def]
    layout = os.path.join(dest, "layout")
    os.makedirs(layout)
    subprocess.run(["tar", "-xf", os.path.join(env["cwd"], "out", f"{target}.tar"), "-C", layout], check=True)
    one = os.path.join(dest, "one")
    subprocess.run(["skopeo", "copy", "-q", "--override-arch", arch, f"oci:{layout}:dev", f"oci:{one}:x"],
                   check=True)
    bundle = os.path.join(dest, "bundle")
    subprocess.run(["umoci", "unpack", "--image", f"{one}:x", bundle], check=True, capture_output=True)
    return os.path.join(bundle, "rootfs")


def test_example_builds_caches_and_rebuilds_only_what_changed(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = bakery(env)
    n_first = steps_run(first)
    assert n_first > 0
    for target in ("api", "worker", "web-plain", "web-debug"):
        raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{env['cwd']}/out/{target}.tar:dev"],
                             capture_output=True, text=True, check=True).stdout
        doc = json.loads(raw)
        if len(env["platforms"]) > 1:
            archs = sorted(m["platform"]["architecture"] for m in doc["manifests"])
            assert archs == ["amd64", "arm64"]
    rootfs = unpack(env, "api", "amd64", str(tmp_path / "api-amd64"))
    with open(os.path.join(rootfs, "app", "api", "VERSION")) as fh:
        assert fh.read().strip() == "api dev"
    with open(os.path.join(rootfs, "etc", "motd")) as fh:
        assert fh.read().strip() == "bakery example monorepo"
    if len(env["platforms"]) > 1:
        web = unpack(env, "web-debug", "arm64", str(tmp_path / "web-arm64"))
        with open(os.path.join(web, "www", "index.html")) as fh:
            assert "(debug)" in fh.read()

    # unchanged: nothing runs
    assert steps_run(bakery(env)) == 0

    # one service's file changes: only its COPY and the RUN after it, per platform
    with open(os.path.join(env["cwd"], "services", "api", "run.sh"), "a") as fh:
        fh.write("# changed\n")
    assert steps_run(bakery(env)) == 2 * len(env["platforms"])


def test_failed_run_reports_the_line_and_keeps_the_store(env) -> None:  # type: ignore[no-untyped-def]
    os.makedirs(os.path.join(env["cwd"], "broken"))
    with open(os.path.join(env["cwd"], "broken", "Dockerfile"), "w") as fh:
        fh.write(f"FROM {env['base']}\nRUN echo about to fail && exit 3\n")
    with open(os.path.join(env["cwd"], "docker-bake.override.hcl"), "w") as fh:
        fh.write('target "broken" {\n  context = "broken"\n}\n')
    r = bakery(env, "broken", check=False)
    assert r.returncode == 1
    assert "exit code: 3 (broken/Dockerfile:2)" in r.stderr
    assert "about to fail" in r.stderr
    assert "Traceback" not in r.stderr
    # the store is still usable
    assert bakery(env, "api").returncode == 0




def test_depends_on_orders_targets(env) -> None:  # type: ignore[no-untyped-def]
    with open(os.path.join(env["cwd"], "docker-bake.override.hcl"), "w") as fh:
        fh.write('target "first" {\n  context = "first"\n  output = ["type=local,dest=out/first"]\n}\n'
                 'target "second" {\n  context = "second"\n  depends_on = ["first"]\n'
                 '  output = ["type=local,dest=out/second"]\n}\n')
    for name in ("first", "second"):
        os.makedirs(os.path.join(env["cwd"], name))
        with open(os.path.join(env["cwd"], name, "Dockerfile"), "w") as fh:
            fh.write(f"FROM {env['base']}\nRUN echo {name} > /{name}\n")
    r = bakery(env, "second", "-j", "4")
    n = re.search(r"^#(\d+) \[2/2\] RUN echo first ", r.stderr, re.M)
    assert n, r.stderr
    first = r.stderr.index(f"#{n.group(1)} DONE ")
    second = r.stderr.index("[2/2] RUN echo second")
    assert first < second, r.stderr
    assert os.path.exists(os.path.join(env["cwd"], "out", "first"))


def test_secrets_reach_the_step_and_nothing_else(env) -> None:  # type: ignore[no-untyped-def]
    secret = "s3cr3t-value-for-bakery-test"
    with open(os.path.join(env["cwd"], "docker-bake.override.hcl"), "w") as fh:
        fh.write('target "sec" {\n  context = "sec"\n  secret = ["id=tok,env=BAKERY_TEST_TOKEN"]\n'
                 '  output = ["type=oci,dest=out/sec.tar"]\n}\n')
    import hashlib

    digest = hashlib.sha256(secret.encode()).hexdigest()  # the Dockerfile holds only this
    os.makedirs(os.path.join(env["cwd"], "sec"))
    with open(os.path.join(env["cwd"], "sec", "Dockerfile"), "w") as fh:
        fh.write(f"FROM {env['base']}\n"
                 "RUN --mount=type=secret,id=tok test \"$(sha256sum < /run/secrets/tok | cut -d' ' -f1)\" = "
                 f"\"{digest}\" && echo secret-ok > /ok\n"
                 "RUN --mount=type=secret,id=tok,env=TOK test \"$(printf %s \"$TOK\" | sha256sum | cut -d' ' -f1)\" = "
                 f"\"{digest}\" && echo env-ok >> /ok\n")
    os.environ["BAKERY_TEST_TOKEN"] = secret
    try:
        r = bakery(env, "sec")
    finally:
        del os.environ["BAKERY_TEST_TOKEN"]
    assert secret not in r.stdout + r.stderr
    needle = secret.encode()
    for dirpath, _, names in os.walk(env["cache"]):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    assert needle not in fh.read(), p
    with open(os.path.join(env["cwd"], "out", "sec.tar"), "rb") as fh:
        assert needle not in fh.read()


def test_push_multi_platform_to_the_registry(env) -> None:  # type: ignore[no-untyped-def]
    host = env["base"].split("/")[0]
    ref = f"{host}/example/api:pushed"
    r = bakery(env, "api", "--set", f"api.output=type=registry,name={ref}")
    assert f"api: pushed {ref}" in r.stdout
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, text=True, check=True).stdout
    doc = json.loads(raw)
    if len(env["platforms"]) > 1:
        assert sorted(m["platform"]["architecture"] for m in doc["manifests"]) == ["amd64", "arm64"]
    else:
        assert doc["layers"]


def test_two_runs_share_one_store_at_once(env) -> None:  # type: ignore[no-untyped-def]
    e = dict(os.environ, BAKERY_CACHE_DIR=env["cache"])
    sets = ["--set", "*.platform=linux/amd64"] if env["platforms"] == ["linux/amd64"] else []
    cmd = [sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}", *sets]
    procs = [subprocess.Popen(cmd, cwd=env["cwd"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert steps_run(bakery(env)) == 0


def test_killed_build_leaves_a_usable_store(env) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    with open(os.path.join(env["cwd"], "docker-bake.override.hcl"), "w") as fh:
        fh.write('target "slow" {\n  context = "slow"\n  output = ["type=cacheonly"]\n}\n')
    os.makedirs(os.path.join(env["cwd"], "slow"))
    with open(os.path.join(env["cwd"], "slow", "Dockerfile"), "w") as fh:
        fh.write(f"FROM {env['base']}\nRUN echo started && sleep 30 && echo done > /f\n")
    e = dict(os.environ, BAKERY_CACHE_DIR=env["cache"])
    p = subprocess.Popen([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}",
                          "--set", "*.platform=linux/amd64", "slow"], cwd=env["cwd"], env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    assert p.stderr is not None
    seen = ""
    while time.time() < deadline:
        line = p.stderr.readline()
        seen += line
        if "started" in line:
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert "started" in seen
    # the store is still usable and right: the example builds and caches
    assert bakery(env, "api").returncode == 0
    assert steps_run(bakery(env, "api")) == 0


def test_plan_resolve_shows_what_run_cached(env) -> None:  # type: ignore[no-untyped-def]
    bakery(env, "api")
    sets = ["--set", "*.platform=linux/amd64"] if env["platforms"] == ["linux/amd64"] else []
    e = dict(os.environ, BAKERY_CACHE_DIR=env["cache"])
    r = subprocess.run([sys.executable, "-m", "bakery", "plan", "--resolve", "--var",
                        f"BASE_IMAGE={env['base']}", *sets, "api"], cwd=env["cwd"], env=e,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    steps = [line for line in r.stdout.splitlines() if re.match(r"\s+#\d+", line)]
    runnable = [s for s in steps if " exec " in s or " file " in s]
    assert runnable and all("cached" in s for s in runnable), r.stdout


@pytest.mark.parametrize("partial", [False, True])
def test_keep_going_and_outputs_on_failure(env, partial: bool) -> None:  # type: ignore[no-untyped-def]
    with open(os.path.join(env["cwd"], "docker-bake.override.hcl"), "w") as fh:
        fh.write('target "broken" {\n  context = "broken"\n  output = ["type=oci,dest=out/broken.tar"]\n}\n'
                 'group "mixed" {\n  targets = ["broken", "api"]\n}\n')
    os.makedirs(os.path.join(env["cwd"], "broken"))
    with open(os.path.join(env["cwd"], "broken", "Dockerfile"), "w") as fh:
        fh.write(f"FROM {env['base']}\nRUN exit 7\n")
    extra = ["--outputs-on-failure"] if partial else []
    r = bakery(env, "mixed", "--keep-going", *extra, check=False)
    assert r.returncode == 1 and "exit code: 7" in r.stderr
    assert os.path.exists(os.path.join(env["cwd"], "out", "api.tar")) == partial
    assert not os.path.exists(os.path.join(env["cwd"], "out", "broken.tar"))
    # keep-going built api anyway: it is in the cache now
    assert steps_run(bakery(env, "api")) == 0


def test_a_moved_base_tag_rebuilds_the_steps_after_from(env) -> None:  # type: ignore[no-untyped-def]
    assert steps_run(bakery(env, "api")) > 0
    assert steps_run(bakery(env, "api")) == 0
    busybox = shutil.which("busybox")
    platforms = [f"linux/amd64={busybox}"]
    if len(env["platforms"]) > 1:
        platforms.append(f"linux/arm64={ARM64_BUSYBOX}")
    push_busybox_image("--version", "2", env["base"], *platforms)
    # per platform: the new base pulled, then base's RUN + COPY and api's COPY + RUN
    assert steps_run(bakery(env, "api")) == 5 * len(env["platforms"])


def test_docker_output_without_dest_loads_into_the_engine(env) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.dockerd import running_dockerd

    with running_dockerd() as d:
        e = dict(d.env(), BAKERY_CACHE_DIR=env["cache"])
        r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}",
                            "--set", "*.platform=linux/amd64", "--set", "api.output=type=docker", "api"],
                           cwd=env["cwd"], env=e, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "api: loaded into" in r.stdout
        out = d.docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                       "127.0.0.1:5000/bakery-example/api:dev")
        assert "org.opencontainers.image.version" in (out if isinstance(out, str) else out.stdout)
