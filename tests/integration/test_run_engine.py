"""`bakery run` for real (runc, a registry on 127.0.0.1): progress modes
(json validated against its schema, tty in a pseudo-terminal), --pull with a
moved tag, no-cache-filter, --no-cache, and Ctrl-C / SIGKILL during a RUN
step."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from tests.integration.registry import running_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.integration

BAKE = """\
group "default" {
  targets = ["app"]
}

target "app" {
  context = "app"
  platforms = ["linux/amd64"]
  output = ["type=local,dest=out/app"]
}
"""

DOCKERFILE = """\
FROM {base} AS build
RUN cat /etc/base-version > /seen && cat /proc/sys/kernel/random/uuid > /stamp
FROM build AS final
RUN echo final > /final && cat /proc/sys/kernel/random/uuid > /final-stamp
"""


def push_base(ref: str, version: str) -> None:
    busybox = shutil.which("busybox")
    assert busybox
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tools", "busybox_image.py"),
                    "--version", version, ref, f"linux/amd64={busybox}"],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)


@pytest.fixture()
def proj(tmp_path) -> Iterator[Dict[str, Any]]:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("RUN steps need root")
    for tool in ("runc", "docker-registry", "busybox"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} is not installed")
    with running_registry(str(tmp_path / "registry")) as reg:
        base = f"{reg.host}/bakery/busybox:latest"
        push_base(base, "1")
        work = tmp_path / "proj"
        (work / "app").mkdir(parents=True)
        (work / "docker-bake.hcl").write_text(BAKE)
        (work / "app" / "Dockerfile").write_text(DOCKERFILE.format(base=base))
        yield {"cwd": str(work), "base": base, "cache": str(tmp_path / "cache"), "reg": reg}


def bakery(p: Dict[str, Any], *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    e = dict(os.environ, BAKERY_CACHE_DIR=p["cache"])
    r = subprocess.run([sys.executable, "-m", "bakery", "run", *args], cwd=p["cwd"],
                       capture_output=True, text=True, env=e, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def executed(r: subprocess.CompletedProcess) -> int:
    m = re.search(r"done: (\d+) steps run, (\d+) from the cache", r.stderr + r.stdout)
    assert m, r.stderr[-2000:]
    return int(m.group(1))


def out_file(p: Dict[str, Any], name: str) -> str:
    with open(os.path.join(p["cwd"], "out", "app", name)) as fh:
        return fh.read().strip()


def test_moved_tag_stored_resolution_and_pull(proj) -> None:  # type: ignore[no-untyped-def]
    bakery(proj, "--progress", "plain")
    assert out_file(proj, "seen") == "1"
    r = bakery(proj, "--progress", "plain")
    assert executed(r) == 0
    push_base(proj["base"], "2")  # the tag moves: asked every run, so the steps after FROM rebuild
    r = bakery(proj, "--progress", "plain", "--pull")
    assert out_file(proj, "seen") == "2"
    assert executed(r) == 3, r.stderr  # the new base pulled, both RUN steps again
    proj["reg"].proc.terminate()  # the registry is gone
    proj["reg"].proc.wait(30)
    r = bakery(proj, "--progress", "plain")  # the last resolution stands in
    assert executed(r) == 0, r.stderr
    assert "the registry cannot be reached; using its last resolution" in r.stderr
    assert out_file(proj, "seen") == "2"
    r = bakery(proj, "--progress", "plain", "--pull", check=False)  # --pull insists on the registry
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "failed" in r.stderr and "hint:" in r.stderr


def test_no_cache_filter_reruns_the_stage_and_what_builds_on_it(proj) -> None:  # type: ignore[no-untyped-def]
    bakery(proj, "--progress", "plain")
    stamp, final = out_file(proj, "stamp"), out_file(proj, "final-stamp")
    r = bakery(proj, "--progress", "plain", "--set", "app.no-cache-filter=final")
    assert executed(r) == 1, r.stderr  # only the final stage's RUN
    assert out_file(proj, "stamp") == stamp and out_file(proj, "final-stamp") != final
    final = out_file(proj, "final-stamp")
    r = bakery(proj, "--progress", "plain", "--set", "app.no-cache-filter=build")
    assert executed(r) == 2, r.stderr  # build's RUN, and final's built on it (no pull)
    assert out_file(proj, "stamp") != stamp and out_file(proj, "final-stamp") != final
    r = bakery(proj, "--progress", "plain", "--no-cache")
    assert executed(r) == 3, r.stderr  # the base pull too
    r = bakery(proj, "--progress", "plain")
    assert executed(r) == 0


def test_json_progress_is_one_valid_event_per_line(proj) -> None:  # type: ignore[no-untyped-def]
    jsonschema = pytest.importorskip("jsonschema")
    with open(os.path.join(ROOT, "schemas", "progress-event.schema.json")) as fh:
        validator = jsonschema.Draft202012Validator(json.load(fh))
    runs = [bakery(proj, "--progress", "json"), bakery(proj, "--progress", "json")]
    for r in runs:
        events = [json.loads(line) for line in r.stdout.splitlines()]  # every line is JSON
        for ev in events:
            validator.validate(ev)
        plan = [ev for ev in events if ev["event"] == "plan"]
        assert len(plan) == 1 and plan[0]["targets"] == ["app"]
        started = [i for i, ev in enumerate(events) if ev["event"] in ("started", "cached")]
        assert started and events.index(plan[0]) < started[0]  # the plan comes first
        assert events[-1]["event"] == "result" and events[-1]["message"].startswith("done:")
    cold = [json.loads(line) for line in runs[0].stdout.splitlines()]
    warm = [json.loads(line) for line in runs[1].stdout.splitlines()]
    runs_ = [ev for ev in cold if ev["event"] == "done" and "RUN" in ev["description"]]
    assert len(runs_) == 2 and all(ev["targets"] == ["app"] for ev in runs_)
    assert not [ev for ev in warm if ev["event"] in ("started", "done")]
    # records are looked up top-down: the final step's record is enough, the
    # steps below it are neither loaded nor reported
    cached = [ev for ev in warm if ev["event"] == "cached"]
    assert cached and any(ev["description"].startswith("[final") for ev in cached)
    # a failing step: an error event for it, then the run's error; exit 1
    with open(os.path.join(proj["cwd"], "app", "Dockerfile"), "a") as fh:
        fh.write("RUN echo about to fail && exit 7\n")
    r = bakery(proj, "--progress", "json", check=False)
    assert r.returncode == 1
    events = [json.loads(line) for line in r.stdout.splitlines()]
    for ev in events:
        validator.validate(ev)
    log = [ev for ev in events if ev["event"] == "log"]
    assert any("about to fail" in ev["data"] for ev in log)
    step_err = [ev for ev in events if ev["event"] == "error" and "key" in ev]
    assert step_err and "exit code: 7" in step_err[0]["message"]
    assert events[-1]["event"] == "error" and "key" not in events[-1]
    assert "exit code: 7" in r.stderr and "Traceback" not in r.stderr


def test_quiet_prints_only_the_result(proj) -> None:  # type: ignore[no-untyped-def]
    r = bakery(proj, "--progress", "quiet")
    assert r.stderr == ""
    assert r.stdout.splitlines() == ["app: local out/app", r.stdout.splitlines()[-1]]
    assert r.stdout.splitlines()[-1].startswith("done: 3 steps run")


def test_tty_progress_in_a_pseudo_terminal(proj) -> None:  # type: ignore[no-untyped-def]
    with open(os.path.join(proj["cwd"], "app", "Dockerfile"), "a") as fh:
        fh.write("RUN for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done\n")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    e = dict(os.environ, BAKERY_CACHE_DIR=proj["cache"], TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "bakery", "run"], cwd=proj["cwd"], env=e,
                            stdin=slave, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    out = proc.communicate(timeout=60)[0].decode()
    os.close(master)
    assert proc.returncode == 0, screen.decode(errors="replace")[-3000:]
    text = screen.decode("utf-8", "replace")
    assert "[+] Building" in text  # tqdm's bar
    assert "\x1b[" in text and "\x1b[J" in text  # redrawn in place
    assert re.search(r"=> \[final 2/2\] RUN for i in .* \| tick \d", text), text[-3000:]  # running step + its output
    assert re.search(r"4/4", text)  # the final bar: every step finished
    assert re.search(r"#\d+ DONE \[build 2/2\] RUN cat /etc/base-version", text)
    assert "app: local out/app" in out  # the result on stdout


def _mounts_under(path: str) -> List[str]:
    with open("/proc/mounts") as fh:
        return [line for line in fh if path in line]


def _procs_of(cid: str) -> List[str]:
    """Processes naming the container ``cid``: its runtime, its reaper."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if cid in line and "ps -ww" not in line]


def _sleepers(tag: str) -> List[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if tag in line and "ps -eo" not in line]


def _runc_of(tag: str) -> Tuple[str, str]:
    """(runc --root, container id) of the running `runc run` whose container runs ``tag``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()[1:]]
    procs = {r[0]: (r[1], r[2]) for r in rows if len(r) == 3}
    for ppid, args in procs.values():
        if tag not in args or "sleep 30" not in args:
            continue
        while ppid in procs:  # up to the `runc ... run ...` process
            ppid, parent_args = procs[ppid]
            m = re.search(r"--root (\S+) .* run --bundle \S+ (bakery-[0-9a-f]+)", parent_args)
            if m:
                return m.group(1), m.group(2)
    raise AssertionError("no runc process runs " + tag + ":\n" + "\n".join(
        line for line in out.splitlines() if "runc" in line or tag in line))


def _runc_lists(root: str, cid: str) -> bool:
    """`runc --root ROOT list` shows ``cid`` (a missing root lists nothing; runc
    would create it, so it is not asked then)."""
    if not os.path.isdir(root):
        return False
    runc = shutil.which("runc") or "/usr/sbin/runc"
    r = subprocess.run([runc, "--root", root, "list", "-q"], capture_output=True, text=True)
    return cid in r.stdout.split()


def _start_sleep_build(proj: Dict[str, Any], tag: str, mode: str = "plain") -> subprocess.Popen:
    with open(os.path.join(proj["cwd"], "app", "Dockerfile"), "a") as fh:
        fh.write(f"RUN echo {tag} && sleep 30 && echo {tag}-woke > /woke\n")
    e = dict(os.environ, BAKERY_CACHE_DIR=proj["cache"])
    proc = subprocess.Popen([sys.executable, "-m", "bakery", "run", "--progress", mode],
                            cwd=proj["cwd"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not _sleepers(f"sleep 30 && echo {tag}"):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    assert _sleepers(f"sleep 30 && echo {tag}"), "the RUN step never started"
    time.sleep(0.5)
    return proc


def _store_clean(cache: str) -> None:
    store = os.path.join(cache, "store")
    assert _mounts_under(store) == []
    assert os.listdir(os.path.join(store, "tmp")) == []


@pytest.mark.parametrize("mode", ["plain", "json"])
def test_ctrl_c_during_a_run_step(proj, mode: str) -> None:  # type: ignore[no-untyped-def]
    bakery(proj, "--progress", "plain")
    tag = f"ctrlc-{mode}-{os.getpid()}"
    proc = _start_sleep_build(proj, tag, mode)
    try:
        root, cid = _runc_of(tag)
        assert _runc_lists(root, cid)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        raise
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 130, err[-3000:]
    assert took < 10, took
    if mode == "json":  # the step was cancelled, the run ended with an error event
        events = [json.loads(line) for line in out.splitlines()]
        assert any(ev["event"] == "cancelled" and tag in ev["description"] for ev in events), events
        assert events[-1]["event"] == "error" and events[-1]["message"] == "interrupted"
    assert "Traceback" not in err
    assert _sleepers(f"sleep 30 && echo {tag}") == []  # the container's processes are gone
    assert _procs_of(cid) == []
    assert not os.path.exists(root) and not _runc_lists(root, cid)  # deleted, state root removed
    _store_clean(proj["cache"])
    # the store is usable and the next run correct (the step was not recorded)
    with open(os.path.join(proj["cwd"], "app", "Dockerfile")) as fh:
        text = fh.read().replace("sleep 30", "sleep 0")
    with open(os.path.join(proj["cwd"], "app", "Dockerfile"), "w") as fh:
        fh.write(text)
    r = bakery(proj, "--progress", "plain")
    assert executed(r) == 1
    assert out_file(proj, "woke") == f"{tag}-woke"


def test_sigkill_during_a_run_step_takes_the_container_along(proj) -> None:  # type: ignore[no-untyped-def]
    bakery(proj, "--progress", "plain")
    tag = "sigkill-" + str(os.getpid())
    proc = _start_sleep_build(proj, tag)
    try:
        root, cid = _runc_of(tag)
        assert _runc_lists(root, cid)
    finally:
        proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_sleepers(f"sleep 30 && echo {tag}") or _procs_of(cid)
                                           or os.path.exists(root)):
        time.sleep(0.1)
    assert _sleepers(f"sleep 30 && echo {tag}") == []
    assert _procs_of(cid) == []
    assert not os.path.exists(root) and not _runc_lists(root, cid)  # deleted, state root removed
    # the next run cleans up what the killed one left (mounts, temp files) and is correct
    with open(os.path.join(proj["cwd"], "app", "Dockerfile")) as fh:
        text = fh.read().replace("sleep 30", "sleep 0")
    with open(os.path.join(proj["cwd"], "app", "Dockerfile"), "w") as fh:
        fh.write(text)
    r = bakery(proj, "--progress", "plain")
    assert executed(r) == 1
    assert out_file(proj, "woke") == f"{tag}-woke"
    _store_clean(proj["cache"])


def _image_digest(path: str) -> str:
    import tarfile

    with tarfile.open(path) as tf:
        f = tf.extractfile("index.json")
        assert f is not None
        return str(json.load(f)["manifests"][0]["digest"])


def test_sigkill_at_random_moments_then_identical_digests(proj, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import random

    with open(os.path.join(proj["cwd"], "docker-bake.hcl"), "w") as fh:
        fh.write(BAKE.replace('"type=local,dest=out/app"', '"type=oci,dest=out/app.tar,rewrite-timestamp=true"'))
    with open(os.path.join(proj["cwd"], "app", "Dockerfile"), "w") as fh:
        fh.write(f"FROM {proj['base']} AS build\n"
                 "RUN seq 1 3000 > /numbers && sleep 0.4\n"
                 "RUN sha256sum /numbers > /numbers.sum && sleep 0.4\n"
                 "COPY Dockerfile /src/\n"
                 "FROM build\n"
                 "RUN wc -l /numbers > /count && sleep 0.4\n")
    e = dict(os.environ, SOURCE_DATE_EPOCH="0")
    ref = dict(proj, cache=str(tmp_path / "reference-cache"))
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--progress", "plain"], cwd=proj["cwd"],
                       env=dict(e, BAKERY_CACHE_DIR=ref["cache"]), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    want = _image_digest(os.path.join(proj["cwd"], "out", "app.tar"))
    os.unlink(os.path.join(proj["cwd"], "out", "app.tar"))
    rng = random.Random(5)
    env = dict(e, BAKERY_CACHE_DIR=proj["cache"])
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "bakery", "run", "--progress", "plain"],
                                cwd=proj["cwd"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.5))
        proc.kill()
        proc.wait(60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _sleepers("/numbers"):
        time.sleep(0.1)
    assert _sleepers("/numbers") == []
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--progress", "plain"], cwd=proj["cwd"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _image_digest(os.path.join(proj["cwd"], "out", "app.tar")) == want
    _store_clean(proj["cache"])
