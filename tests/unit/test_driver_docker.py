"""The docker driver: target -> ``docker build`` argv (pure), what it
rejects, and DockerDriver's scheduling against a fake ``docker`` CLI."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

import pytest

from bakery.bakefile.buildflags import SSH, Attest, CacheOptionsEntry, ExportEntry, Secret
from bakery.bakefile.model import Target
from bakery.drivers import DockerDriver, docker_build_args
from bakery.drivers.docker import BuildCommand
from bakery.errors import BakeryError

HOST = "unix:///run/d.sock"
CWD = "/src"
D = "/usr/bin/docker"
PRE = [D, "-H", HOST, "build", "--progress=plain"]


def argv(t: Target, platform: Optional[str] = None, **kw: Any) -> List[str]:
    return docker_build_args(t, platform, HOST, CWD, **kw).argv


# (id, target, platform, expected argv after PRE)
CASES: List[Tuple[str, Target, Optional[str], List[str]]] = [
    ("defaults", Target("a"), None,
     ["-f", "/src/Dockerfile", "--network=host", "/src"]),
    ("context-and-dockerfile", Target("a", context="app", dockerfile="build/Dockerfile.x"), None,
     ["-f", "/src/app/build/Dockerfile.x", "--network=host", "/src/app"]),
    ("dockerfile-up-and-abs", Target("a", context="./app/", dockerfile="../Dockerfile"), None,
     ["-f", "/src/Dockerfile", "--network=host", "/src/app"]),
    ("dockerfile-absolute", Target("a", context="/ctx", dockerfile="/df/Dockerfile"), None,
     ["-f", "/df/Dockerfile", "--network=host", "/ctx"]),
    ("cwd-prefix", Target("a", context="cwd://sub", dockerfile="cwd://df/D"), None,
     ["-f", "/src/df/D", "--network=host", "/src/sub"]),
    ("remote-context", Target("a", context="https://github.com/o/r.git#main"), None,
     ["--network=host", "https://github.com/o/r.git#main"]),
    ("remote-context-dockerfile", Target("a", context="git@github.com:o/r.git", dockerfile="./x/D"),
     None, ["-f", "x/D", "--network=host", "git@github.com:o/r.git"]),
    ("args-labels-sorted-none-unset",
     Target("a", args={"Z": "1", "A": "x=y", "U": None}, labels={"org.b": "2", "org.a": "", "n": None}),
     None, ["-f", "/src/Dockerfile", "--build-arg", "A=x=y", "--build-arg", "Z=1",
            "--label", "org.a=", "--label", "org.b=2", "--network=host", "/src"]),
    ("tags-target-platform", Target("a", tags=["r/a:1", "r/a:latest"], target="final",
                                    platforms=["linux/arm64"]), None,
     ["-f", "/src/Dockerfile", "-t", "r/a:1", "-t", "r/a:latest", "--target", "final",
      "--platform", "linux/arm64", "--network=host", "/src"]),
    ("explicit-platform", Target("a"), "linux/amd64",
     ["-f", "/src/Dockerfile", "--platform", "linux/amd64", "--network=host", "/src"]),
    ("secrets", Target("a", secret=[Secret("tok", src="s/tok.txt"), Secret("e", env="MY_ENV"),
                                     Secret("abs", src="/etc/a,b")]), None,
     ["-f", "/src/Dockerfile", "--secret", "id=tok,src=/src/s/tok.txt", "--secret", "id=e,env=MY_ENV",
      "--secret", 'id=abs,"src=/etc/a,b"', "--network=host", "/src"]),
    ("ssh", Target("a", ssh=[SSH("default"), SSH("key", ["k1", "/k2"])]), None,
     ["-f", "/src/Dockerfile", "--ssh", "default", "--ssh", "key=/src/k1,/k2", "--network=host",
      "/src"]),
    ("network-kept", Target("a", network="none"), None,
     ["-f", "/src/Dockerfile", "--network=none", "/src"]),
    ("flags", Target("a", no_cache=True, pull=True, shm_size="128m", ulimits=["nofile=1024:2048"],
                     extra_hosts={"db": "10.0.0.2", "api": "10.0.0.1", "gone": None}), None,
     ["-f", "/src/Dockerfile", "--network=host", "--no-cache", "--pull",
      "--add-host", "api:10.0.0.1", "--add-host", "db:10.0.0.2", "--shm-size", "128m",
      "--ulimit", "nofile=1024:2048", "/src"]),
    ("false-flags", Target("a", no_cache=False, pull=False), None,
     ["-f", "/src/Dockerfile", "--network=host", "/src"]),
    ("cache-from", Target("a", cache_from=[CacheOptionsEntry.from_text("r/cache:1"),
                                           CacheOptionsEntry("registry", {"ref": "r/cache:2"})]), None,
     ["-f", "/src/Dockerfile", "--network=host", "--cache-from", "r/cache:1",
      "--cache-from", "r/cache:2", "/src"]),
    ("output-local", Target("a", output=[ExportEntry.from_text("out/bin")]), None,
     ["-f", "/src/Dockerfile", "--network=host", "--output", "type=local,dest=/src/out/bin", "/src"]),
    ("output-tar", Target("a", output=[ExportEntry.from_text("type=tar,dest=/tmp/a.tar")]), None,
     ["-f", "/src/Dockerfile", "--network=host", "--output", "type=tar,dest=/tmp/a.tar", "/src"]),
    ("output-docker-is-tags", Target("a", tags=["x"], output=[ExportEntry.from_text("type=docker")]),
     None, ["-f", "/src/Dockerfile", "-t", "x", "--network=host", "/src"]),
    ("output-image-name", Target("a", tags=["x"],
                                 output=[ExportEntry.from_text('type=image,"name=y,x",push=false')]),
     None, ["-f", "/src/Dockerfile", "-t", "x", "-t", "y", "--network=host", "/src"]),
    ("entitlement-network-host", Target("a", entitlements=["network.host"], call="build",
                                        attest=[Attest("provenance", disabled=True)]), None,
     ["-f", "/src/Dockerfile", "--network=host", "/src"]),
]


@pytest.mark.parametrize(("t", "platform", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_argv(t: Target, platform: Optional[str], expected: List[str]) -> None:
    assert argv(t, platform) == PRE + expected


def test_dockerfile_inline_goes_to_stdin() -> None:
    cmd = docker_build_args(Target("a", context="ctx", dockerfile="ignored",
                                   dockerfile_inline="FROM scratch\n"), None, HOST, CWD)
    assert isinstance(cmd, BuildCommand)
    assert cmd.argv == [*PRE, "-f", "-", "--network=host", "/src/ctx"]
    assert cmd.stdin == "FROM scratch\n"
    _argv, stdin, _push = docker_build_args(Target("a"), None, HOST, CWD)  # a triple
    assert stdin is None


def test_docker_binary_and_iidfile() -> None:
    assert argv(Target("a"), docker="docker", iidfile="/t/i") == [
        "docker", "-H", HOST, "build", "--progress=plain", "-f", "/src/Dockerfile", "--network=host",
        "--iidfile", "/t/i", "/src"]


# (id, target, words the error must contain)
REJECTS: List[Tuple[str, Target, List[str]]] = [
    ("contexts-oci-layout", Target("t", contexts={"base": "oci-layout:///l:tag"}),
     ["contexts", "base=oci-layout:///l:tag", "OCI layout"]),
    ("contexts-remote", Target("t", contexts={"src": "https://example.com/r.git"}),
     ["contexts", "src=", "remote"]),
    ("contexts-git", Target("t", contexts={"src": "git@example.com:r.git"}), ["contexts", "remote"]),
    ("contexts-bad-name", Target("t", contexts={"Not An Image": "target:b"}),
     ["contexts", "'Not An Image'"]),
    ("contexts-remote-build-context", Target("t", context="https://example.com/r.git",
                                             contexts={"base": "target:b"}),
     ["contexts", "remote", "Dockerfile"]),
    ("contexts-with-pull", Target("t", pull=True, contexts={"base": "target:b", "d": "dir"}),
     ["pull", "base, d"]),
    ("cache-to", Target("t", cache_to=[CacheOptionsEntry("inline")]), ["cache-to"]),
    ("cache-from-local", Target("t", cache_from=[CacheOptionsEntry("local", {"src": "/c"})]),
     ["cache-from", "type=local"]),
    ("cache-from-registry-mode", Target("t", cache_from=[CacheOptionsEntry("registry", {"ref": "r", "mode": "max"})]),
     ["cache-from"]),
    ("output-oci", Target("t", output=[ExportEntry.from_text("type=oci,dest=a.tar")]), ["output", "type=oci"]),
    ("output-docker-dest", Target("t", output=[ExportEntry.from_text("type=docker,dest=a.tar")]),
     ["output", "dest"]),
    ("output-image-attr", Target("t", output=[ExportEntry.from_text("type=image,compression=zstd")]),
     ["output", "compression"]),
    ("output-two", Target("t", output=[ExportEntry.from_text("a"), ExportEntry.from_text("b")]),
     ["output", "one output"]),
    ("output-stdout", Target("t", output=[ExportEntry.from_text("-")]), ["output", "dest"]),
    ("output-local-attr", Target("t", output=[ExportEntry.from_text("type=local,dest=o,platform-split=false")]),
     ["output", "platform-split"]),
    ("platforms", Target("t", platforms=["linux/amd64", "linux/arm64"]),
     ["platforms", "multi-platform manifest index"]),
    ("output-registry-dest", Target("t", tags=["r/t"], output=[ExportEntry.from_text("type=registry,dest=x")]),
     ["output", "dest"]),
    ("call", Target("t", call="check"), ["call"]),
    ("attest", Target("t", attest=[Attest("sbom")]), ["attest"]),
    ("annotations", Target("t", annotations=["index:a=b"]), ["annotations"]),
    ("entitlements", Target("t", entitlements=["security.insecure"]), ["entitlements", "security.insecure"]),
    ("network", Target("t", network="mynet"), ["network", "mynet"]),
    ("no-cache-filter", Target("t", no_cache_filter=["base"]), ["no-cache-filter"]),
    ("policy", Target("t", policy=[object()]), ["policy"]),
]


@pytest.mark.parametrize(("t", "words"), [pytest.param(*c[1:], id=c[0]) for c in REJECTS])
def test_rejects(t: Target, words: List[str]) -> None:
    with pytest.raises(BakeryError) as ei:
        argv(t)
    msg = str(ei.value)
    assert msg.startswith("target t: "), msg
    assert "docker driver" in msg
    for w in words:
        assert w in msg


def test_registry_output_builds_tagged_then_pushes() -> None:
    cmd = docker_build_args(Target("a", tags=["r/a:1"], output=[ExportEntry.from_text(
        "type=registry,name=r/a:2")]), None, HOST, CWD)
    assert cmd.argv == [*PRE, "-f", "/src/Dockerfile", "-t", "r/a:1", "-t", "r/a:2",
                        "--network=host", "/src"]
    assert cmd.push == ("r/a:1", "r/a:2")


@pytest.mark.parametrize("out", ["type=image,push=true", "type=docker,push=true"])
def test_push_true_pushes_the_tags(out: str) -> None:
    cmd = docker_build_args(Target("a", tags=["r/a:1"], output=[ExportEntry.from_text(out)]),
                            None, HOST, CWD)
    assert cmd.push == ("r/a:1",)
    assert docker_build_args(Target("a", tags=["r/a:1"]), None, HOST, CWD).push == ()
    assert docker_build_args(Target("a", tags=["r/a:1"], output=[ExportEntry.from_text(
        "type=image,push=false")]), None, HOST, CWD).push == ()


def test_no_iidfile_with_a_local_or_tar_export() -> None:
    # Docker 20.10's CLI fails such a build: "server did not provide an image ID"
    for out in ("out", "type=tar,dest=o.tar"):
        cmd = docker_build_args(Target("a", output=[ExportEntry.from_text(out)]), None, HOST, CWD,
                                iidfile="/t/i")
        assert "--iidfile" not in cmd.argv
    assert "--iidfile" in argv(Target("a"), iidfile="/t/i")


def test_registry_output_needs_a_name() -> None:
    with pytest.raises(BakeryError, match="no image name to push"):
        docker_build_args(Target("t", output=[ExportEntry.from_text("type=registry")]), None, HOST, CWD)
    with pytest.raises(BakeryError, match="no image name to push"):
        docker_build_args(Target("t", output=[ExportEntry.from_text("type=image,push=true")]), None,
                          HOST, CWD)


def test_tags_with_local_output_are_not_applied() -> None:
    # as in buildx: tags name images; a local/tar export has none, so no -t (and no error)
    cmd = docker_build_args(Target("a", tags=["x"], output=[ExportEntry.from_text("out")]),
                            None, HOST, CWD)
    assert cmd.argv == [*PRE, "-f", "/src/Dockerfile", "--network=host",
                        "--output", "type=local,dest=/src/out", "/src"]
    assert cmd.push == ()


def test_split_build_is_one_platform_under_a_temporary_tag() -> None:
    t = Target("a", tags=["r/a:1"], platforms=["linux/amd64", "linux/arm64"],
               output=[ExportEntry.from_text("type=oci,dest=a.tar")])
    with pytest.raises(BakeryError):
        docker_build_args(t, "linux/arm64", HOST, CWD)  # not split: rejected
    cmd = docker_build_args(t, "linux/arm64", HOST, CWD, split_tag="bakery-split/a:1")
    assert cmd.argv == [*PRE, "-f", "/src/Dockerfile", "-t", "bakery-split/a:1",
                        "--platform", "linux/arm64", "--network=host", "/src"]
    assert cmd.push == ()


def test_named_contexts_build_the_rewritten_dockerfile() -> None:
    t = Target("a", context="app", contexts={"base": "target:b"})
    with pytest.raises(BakeryError, match="rewritten"):
        argv(t)  # the driver always passes the rewritten Dockerfile
    assert argv(t, rewritten="/tmp/x/Dockerfile", extra_tags=["bakery-ctx/a:1"]) == [
        *PRE, "-f", "/tmp/x/Dockerfile", "-t", "bakery-ctx/a:1", "--network=host", "/src/app"]
    inline = Target("a", dockerfile_inline="FROM base\n", contexts={"base": "target:b"})
    cmd = docker_build_args(inline, None, HOST, CWD, rewritten="FROM bakery-ctx/b:1\n")
    assert cmd.argv[5:7] == ["-f", "-"] and cmd.stdin == "FROM bakery-ctx/b:1\n"
    # a remote build context with an inline Dockerfile is fine (bakery rewrites the inline text)
    remote = Target("a", context="https://example.com/r.git", dockerfile_inline="FROM base\n",
                    contexts={"base": "docker-image://busybox"})
    assert docker_build_args(remote, None, HOST, CWD, rewritten="FROM busybox\n").argv[-1] == \
        "https://example.com/r.git"


def test_context_tag_on_a_target_without_image_is_an_error() -> None:
    t = Target("b", output=[ExportEntry.from_text("type=local,dest=out")])
    with pytest.raises(BakeryError, match="leaves no image"):
        argv(t, extra_tags=["bakery-ctx/b:1"])


# ---------------------------------------------------------------- DockerDriver with a fake CLI

FAKE = r'''#!{python}
import json, os, sys, time
args = sys.argv[1:]
log = os.environ["FAKE_LOG"]
ctx = args[-1]
name = os.path.basename(ctx)
stdin = sys.stdin.read() if "-" in args else None
with open(log, "a") as fh:
    fh.write(json.dumps({{"ev": "start", "name": name, "t": time.time(), "args": args,
                          "stdin": stdin, "bk": os.environ.get("DOCKER_BUILDKIT")}}) + "\n")
print("#1 building " + name, flush=True)
conf = os.path.join(ctx, "conf")
sleep, rc = 0.0, 0
if os.path.exists(conf):
    sleep, rc = json.load(open(conf))
time.sleep(sleep)
for i in range(60):
    print("line %d of %s" % (i, name))
with open(log, "a") as fh:
    fh.write(json.dumps({{"ev": "end", "name": name, "t": time.time()}}) + "\n")
if rc:
    print("ERROR: failed to solve " + name)
    sys.exit(rc)
if "--iidfile" in args and "--output" not in args:  # local/tar outputs leave no image
    with open(args[args.index("--iidfile") + 1], "w") as fh:
        fh.write("sha256:" + name)
'''


class Fake:
    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.docker = os.path.join(tmp, "docker")
        with open(self.docker, "w") as fh:
            fh.write(FAKE.format(python=sys.executable))
        os.chmod(self.docker, os.stat(self.docker).st_mode | stat.S_IXUSR)
        self.log = os.path.join(tmp, "log.jsonl")
        self.lines: List[Tuple[str, str]] = []

    def target(self, name: str, sleep: float = 0.0, rc: int = 0, **kw: Any) -> Target:
        ctx = os.path.join(self.tmp, name)
        os.makedirs(ctx, exist_ok=True)
        with open(os.path.join(ctx, "conf"), "w") as fh:
            json.dump([sleep, rc], fh)
        return Target(name, context=ctx, **kw)

    def driver(self, **kw: Any) -> DockerDriver:
        return DockerDriver(HOST, docker=self.docker, cwd=self.tmp, env={"FAKE_LOG": self.log}, **kw)

    def cb(self, target: str, line: str) -> None:
        self.lines.append((target, line))

    def events(self) -> List[Dict[str, Any]]:
        with open(self.log) as fh:
            return [json.loads(x) for x in fh]

    def span(self) -> Dict[str, Tuple[float, float]]:
        ev = self.events()
        start = {e["name"]: e["t"] for e in ev if e["ev"] == "start"}
        end = {e["name"]: e["t"] for e in ev if e["ev"] == "end"}
        return {n: (start[n], end[n]) for n in start if n in end}


@pytest.fixture
def fake(tmp_path: Any) -> Fake:
    return Fake(str(tmp_path))


def test_run_orders_by_depends_on(fake: Fake) -> None:
    targets = {
        "base": fake.target("base", sleep=0.3),
        "app": fake.target("app", depends_on=["base"], dockerfile_inline="FROM base\n"),
        "tool": fake.target("tool", depends_on=["base"]),
        "other": fake.target("other", sleep=0.3),
    }
    ids = fake.driver().run(targets, ["app", "tool", "other"], 4, fake.cb)
    assert ids == {"base": "sha256:base", "app": "sha256:app", "tool": "sha256:tool",
                   "other": "sha256:other"}
    span = fake.span()
    assert span["app"][0] >= span["base"][1]
    assert span["tool"][0] >= span["base"][1]
    # independent targets overlap
    assert span["other"][0] < span["base"][1] and span["base"][0] < span["other"][1]
    starts = {e["name"]: e for e in fake.events() if e["ev"] == "start"}
    assert starts["app"]["stdin"] == "FROM base\n"
    assert starts["base"]["stdin"] is None
    assert all(e["bk"] == "1" for e in starts.values())
    got = [line for t, line in fake.lines if t == "app"]
    assert got[0] == "#1 building app" and got[-1] == "line 59 of app"


def test_run_respects_jobs(fake: Fake) -> None:
    targets = {n: fake.target(n, sleep=0.2) for n in ("a", "b", "c")}
    fake.driver().run(targets, ["a", "b", "c"], 1, None)
    spans = sorted(fake.span().values())
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end


def test_run_failure_has_tail_and_stops(fake: Fake) -> None:
    targets = {
        "bad": fake.target("bad", rc=1),
        "after": fake.target("after", depends_on=["bad"]),
    }
    with pytest.raises(BakeryError) as ei:
        fake.driver().run(targets, ["after"], 2, fake.cb)
    msg = str(ei.value)
    assert msg.startswith("target bad: docker build exited 1")
    assert "ERROR: failed to solve bad" in msg and "line 59 of bad" in msg
    assert "line 0 of bad" not in msg  # only the tail
    assert "after" not in {e["name"] for e in fake.events()}


def test_run_failure_cancels_running(fake: Fake) -> None:
    targets = {"bad": fake.target("bad", rc=3), "slow": fake.target("slow", sleep=30)}
    done = threading.Event()
    err: List[BaseException] = []

    def go() -> None:
        try:
            fake.driver().run(targets, ["slow", "bad"], 2, None)
        except BaseException as e:
            err.append(e)
        done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(20), "the slow build was not cancelled"
    assert err and "target bad: docker build exited 3" in str(err[0])


def test_run_timeout(fake: Fake) -> None:
    targets = {"slow": fake.target("slow", sleep=30)}
    with pytest.raises(BakeryError, match=r"target slow: docker build timed out after 0\.5s"):
        fake.driver(timeout=0.5).run(targets, ["slow"], 1, None)


def test_run_checks_every_target_first(fake: Fake) -> None:
    targets = {"ok": fake.target("ok"), "no": fake.target("no", cache_to=[CacheOptionsEntry("inline")])}
    with pytest.raises(BakeryError, match="target no: cache-to"):
        fake.driver().run(targets, ["ok", "no"], 2, None)
    assert not os.path.exists(fake.log)


def test_run_graph_errors(fake: Fake) -> None:
    a = fake.target("a", depends_on=["b"])
    b = fake.target("b", depends_on=["a"])
    with pytest.raises(BakeryError, match="depends_on cycle: a -> b -> a"):
        fake.driver().run({"a": a, "b": b}, ["a"], 2, None)
    with pytest.raises(BakeryError, match=r"target zz \(in depends_on of a\)"):
        fake.driver().run({"a": fake.target("a", depends_on=["zz"])}, ["a"], 2, None)


def test_run_local_output_has_no_image_id(fake: Fake, tmp_path: Any) -> None:
    t = fake.target("loc", output=[ExportEntry("local", {}, str(tmp_path / "out"))])
    assert fake.driver().run({"loc": t}, ["loc"], 1, None) == {"loc": ""}


def test_missing_docker_binary(tmp_path: Any) -> None:
    d = DockerDriver(HOST, docker=str(tmp_path / "nope"))
    with pytest.raises(BakeryError, match="not an executable"):
        d.run({"a": Target("a")}, ["a"], 1, None)


def test_run_named_contexts_builds_dependencies_and_removes_temporary_tags(fake: Fake) -> None:
    os.makedirs(os.path.join(fake.tmp, "assets"))
    targets = {
        "base": fake.target("base", sleep=0.2),
        "app": fake.target("app", contexts={"base": "target:base", "assets": "assets"},
                           dockerfile_inline="FROM base\nCOPY --from=assets / /a\n"),
    }
    ids = fake.driver().run(targets, ["app"], 4, fake.cb)
    assert ids == {"base": "sha256:base", "app": "sha256:app"}
    ev = fake.events()
    starts = [e for e in ev if e["ev"] == "start"]
    builds = {e["name"]: e for e in starts if "build" in e["args"]}
    span = fake.span()
    base_tag = builds["base"]["args"][builds["base"]["args"].index("-t") + 1]
    assets = next(e for n, e in builds.items() if n == "assets")
    assets_tag = assets["args"][assets["args"].index("-t") + 1]
    assert base_tag.startswith("bakery-ctx/base:") and assets_tag.startswith("bakery-ctx/app-assets:")
    assert builds["app"]["stdin"] == f"FROM {base_tag}\nCOPY --from={assets_tag} / /a\n"
    assert assets["stdin"] == "FROM scratch\nCOPY . /\n"
    assert span["app"][0] >= span["base"][1] and span["app"][0] >= span["assets"][1]
    # base was only needed as a context: built under the temporary tag alone
    assert builds["base"]["args"].count("-t") == 1
    rmi = [e["args"][-1] for e in starts if "rmi" in e["args"]]
    assert sorted(rmi) == sorted([base_tag, assets_tag])
    assert {t for t, _ in fake.lines} == {"base", "app", "app:context:assets"}


def test_run_named_contexts_removes_temporary_tags_after_a_failure(fake: Fake) -> None:
    targets = {
        "base": fake.target("base", tags=["r/base:1"]),
        "app": fake.target("app", rc=1, contexts={"base": "target:base"},
                           dockerfile_inline="FROM base\n"),
    }
    with pytest.raises(BakeryError, match="target app: docker build exited 1"):
        fake.driver().run(targets, ["app", "base"], 2, fake.cb)
    starts = [e for e in fake.events() if e["ev"] == "start"]
    base = next(e for e in starts if e["name"] == "base")
    tags = [base["args"][i + 1] for i, a in enumerate(base["args"]) if a == "-t"]
    # asked for itself: its own tag plus the temporary one
    assert tags[0] == "r/base:1" and tags[1].startswith("bakery-ctx/base:")
    assert [e["args"][-1] for e in starts if "rmi" in e["args"]] == [tags[1]]


def test_run_named_context_dockerfile_is_rewritten_to_a_temp_copy(fake: Fake) -> None:
    targets = {
        "base": fake.target("base"),
        "app": fake.target("app", contexts={"base": "target:base"}),
    }
    with open(os.path.join(fake.tmp, "app", "Dockerfile"), "w") as fh:
        fh.write("# syntax check\nFROM base\nRUN true\n")
    seen: List[str] = []

    def cb(target: str, line: str) -> None:
        if target == "app" and not seen:
            e = next(x for x in fake.events() if x["ev"] == "start" and x["name"] == "app")
            path = e["args"][e["args"].index("-f") + 1]
            with open(path) as fh:
                seen.append(fh.read())
            seen.append(path)
    fake.driver().run(targets, ["app"], 1, cb)
    assert seen[0].startswith("# syntax check\nFROM bakery-ctx/base:") and seen[0].endswith(
        "\nRUN true\n")
    assert os.path.basename(seen[1]) == "Dockerfile" and not seen[1].startswith(fake.tmp)
    assert not os.path.exists(seen[1])  # the temp copy is gone after the run


def test_run_named_context_errors_come_before_any_build(fake: Fake) -> None:
    targets = {
        "base": fake.target("base", platforms=["linux/amd64", "linux/arm64"]),
        "app": fake.target("app", contexts={"base": "target:base"}, dockerfile_inline="FROM base\n"),
    }
    with pytest.raises(BakeryError, match="named context of app"):
        fake.driver().run(targets, ["app"], 1, fake.cb)
    targets["base"] = fake.target("base")
    targets["app"] = fake.target("app", contexts={"base": "target:base"})  # no Dockerfile
    with pytest.raises(BakeryError, match="cannot read its Dockerfile"):
        fake.driver().run(targets, ["app"], 1, fake.cb)
    assert not os.path.exists(fake.log)


def test_run_rewrite_errors_name_the_target(fake: Fake) -> None:
    targets = {
        "base": fake.target("base"),
        "app": fake.target("app", contexts={"base": "target:base"},
                           dockerfile_inline='FROM x\nRUN --mount=type=bind,"from=base",target=/m t\n'),
    }
    with pytest.raises(BakeryError) as ei:
        fake.driver().run(targets, ["app"], 1, fake.cb)
    assert ei.value.message.startswith("target app: RUN --mount=from=base: the reference could not")
    assert ei.value.pos is not None and ei.value.pos.line == 2
    assert not os.path.exists(fake.log)
