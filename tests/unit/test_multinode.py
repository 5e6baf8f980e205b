"""The multi-node builder driver (bakery/drivers/multinode.py): importing
per-platform archives (a `docker save` tar, an OCI layout tar), joining them
into one index written as an OCI layout, which outputs a split target may
have, and BuilderDriver's placement and failure handling against a fake
``docker`` CLI on two "nodes" (the real engines are in
tests/integration/test_builder_nodes.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from typing import Any, Dict, List, Tuple

import pytest

from bakery.bakefile.buildflags import ExportEntry
from bakery.bakefile.model import Target
from bakery.drivers.builders import Builder, Node
from bakery.drivers.multinode import (
    BuilderDriver,
    check_split_outputs,
    import_archive,
    join_outputs,
)
from bakery.errors import BakeryError
from bakery.oci.image import add_layer, build_image
from bakery.oci.layout import open_layout, write_oci_layout
from bakery.oci.media import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor
from bakery.oci.registry import RegistryClient
from bakery.oci.store import BlobStore


def _layer_tar(files: Dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _docker_save(path: str, arch: str, files: Dict[str, bytes], diff_ok: bool = True) -> bytes:
    """A `docker save` (Docker 20.10) archive of a one-layer image; returns its config bytes."""
    layer = _layer_tar(files)
    diff = "sha256:" + hashlib.sha256(layer if diff_ok else b"other").hexdigest()
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Env": ["A=1"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": ["bakery-split/x:1"],
                            "Layers": ["abc/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as tf:
        for name, data in ((cfg_name, config), ("abc/layer.tar", layer), ("abc/VERSION", b"1.0"),
                           ("manifest.json", manifest), ("repositories", b"{}")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return config


def test_import_docker_save_archive(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    arc = os.path.join(tmp, "a.tar")
    config = _docker_save(arc, "arm64", {"hello": b"world\n"})
    store = BlobStore(os.path.join(tmp, "store"))
    desc = import_archive(store, arc, "linux/arm64", tmp)
    assert desc.media_type == DOCKER_MANIFEST
    assert desc.platform is not None and str(desc.platform) == "linux/arm64"
    man = store.read_json(desc.digest)
    # the image config is kept byte for byte: the image id stays what the engine said
    assert man["config"]["digest"] == "sha256:" + hashlib.sha256(config).hexdigest()
    assert store.read_bytes(man["config"]["digest"]) == config
    (layer,) = man["layers"]
    assert layer["mediaType"].endswith("diff.tar.gzip")
    assert store.has(layer["digest"])


def test_import_rejects_layers_that_do_not_match(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    arc = os.path.join(tmp, "a.tar")
    _docker_save(arc, "amd64", {"f": b"x"}, diff_ok=False)
    with pytest.raises(BakeryError, match="do not match the image config's diff_ids"):
        import_archive(BlobStore(os.path.join(tmp, "s")), arc, None, tmp)
    with open(os.path.join(tmp, "junk.tar"), "wb") as fh:
        fh.write(_layer_tar({"x": b"y"}))
    with pytest.raises(BakeryError, match="neither an OCI layout nor a `docker save` archive"):
        import_archive(BlobStore(os.path.join(tmp, "s")), os.path.join(tmp, "junk.tar"), None, tmp)


def _oci_archive(tmp: str, arch: str) -> str:
    src = BlobStore(os.path.join(tmp, f"src-{arch}"))
    lt = os.path.join(tmp, f"{arch}.layer")
    with open(lt, "wb") as fh:
        fh.write(_layer_tar({"arch": arch.encode()}))
    img = build_image(src, [add_layer(src, lt)], platform=f"linux/{arch}", created=0)
    out = os.path.join(tmp, f"{arch}.oci.tar")
    write_oci_layout(src, img.descriptor, out)
    return out


def test_join_docker_and_oci_archives_into_one_oci_layout(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    store = BlobStore(os.path.join(tmp, "store"))
    arm = os.path.join(tmp, "arm.tar")
    _docker_save(arm, "arm64", {"arch": b"arm64"})
    amd = import_archive(store, _oci_archive(tmp, "amd64"), "linux/amd64", tmp)
    arm_d = import_archive(store, arm, "linux/arm64", tmp)
    t = Target("m", tags=["r/m:1"], output=[ExportEntry.from_text("type=oci,dest=out/m.tar")])
    index = join_outputs(store, [amd, arm_d], t, tmp, RegistryClient())
    with open_layout(os.path.join(tmp, "out", "m.tar")) as lay:
        root = lay.resolve("r/m:1")
        assert root.digest == index.digest
        children = [Descriptor.from_json(m) for m in lay.store.read_json(root.digest)["manifests"]]
        assert [str(c.platform) for c in children] == ["linux/amd64", "linux/arm64"]
        for c in children:
            man = lay.store.read_json(c.digest)
            assert all(lay.store.has(la["digest"]) for la in man["layers"])


def test_join_of_docker_manifests_is_a_manifest_list(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    store = BlobStore(os.path.join(tmp, "store"))
    descs = []
    for arch in ("amd64", "arm64"):
        arc = os.path.join(tmp, f"{arch}.tar")
        _docker_save(arc, arch, {"arch": arch.encode()})
        descs.append(import_archive(store, arc, None, tmp))
    t = Target("m", output=[ExportEntry.from_text("type=oci,dest=m,tar=false")])
    index = join_outputs(store, descs, t, tmp, RegistryClient())
    assert index.media_type == DOCKER_MANIFEST_LIST
    assert os.path.isfile(os.path.join(tmp, "m", "index.json"))  # tar=false: a directory


@pytest.mark.parametrize(("outs", "tags", "ok"), [
    (["type=registry"], ["r/a:1"], True),
    (["type=image,push=true,name=r/a:1"], [], True),
    (["type=oci,dest=a.tar"], [], True),
    (["type=registry"], [], False),
    (["type=docker"], ["r/a:1"], False),
    (["type=docker,dest=a.tar"], ["r/a:1"], False),
    (["type=local,dest=out"], [], False),
    (["type=oci,dest=-"], [], False),
    ([], ["r/a:1"], False),
])
def test_split_outputs(outs: List[str], tags: List[str], ok: bool) -> None:
    t = Target("m", tags=tags, platforms=["linux/amd64", "linux/arm64"],
               output=[ExportEntry.from_text(o) for o in outs])
    if ok:
        check_split_outputs(t)
    else:
        with pytest.raises(BakeryError, match="target m: "):
            check_split_outputs(t)


# ------------------------------------------------ BuilderDriver against a fake docker CLI

FAKE = r'''#!{python}
import json, os, sys, time
args = sys.argv[1:]
host = args[args.index("-H") + 1]
ctx = args[-1]
name = os.path.basename(ctx)
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps({{"host": host, "name": name, "args": args}}) + "\n")
conf = os.path.join(ctx, "conf")
sleep, rc = json.load(open(conf)) if os.path.exists(conf) else (0.0, 0)
time.sleep(sleep)
print("building " + name + " on " + host, flush=True)
if rc:
    sys.exit(rc)
if "--iidfile" in args:
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

    def driver(self, builder: Builder) -> BuilderDriver:
        return BuilderDriver(builder, cwd=self.tmp, docker=self.docker, env={"FAKE_LOG": self.log},
                             host="linux/amd64")

    def hosts(self) -> Dict[str, str]:
        with open(self.log) as fh:
            return {e["name"]: e["host"] for e in map(json.loads, fh)}


TWO = Builder("two", (Node("n0", "docker", "unix:///n0.sock", ("linux/amd64",)),
                      Node("n1", "docker", "unix:///n1.sock", ("linux/amd64", "linux/arm64"))))


def test_driver_spreads_and_logs_the_node(tmp_path: Any) -> None:
    f = Fake(str(tmp_path))
    targets = {n: f.target(n, sleep=0.3) for n in ("a", "b", "c", "d")}
    targets["arm"] = f.target("arm", platforms=["linux/arm64"])
    lines: List[Tuple[str, str]] = []
    d = f.driver(TWO)
    ids = d.run(targets, ["a", "b", "c", "d", "arm"], 1, lambda t, line: lines.append((t, line)))
    assert ids == {n: f"sha256:{n}" for n in targets}
    hosts = f.hosts()
    assert hosts["arm"] == "unix:///n1.sock"  # only n1 serves arm64
    assert sorted(hosts[n] for n in "abcd").count("unix:///n0.sock") >= 1
    assert sorted(hosts[n] for n in "abcd").count("unix:///n1.sock") >= 1
    assert ("a", "building on node n0 (its default platform)") in lines
    assert ("b", "building on node n1 (its default platform)") in lines
    assert ("arm", "building on node n1 (linux/arm64)") in lines
    assert {(t, n) for t, _, n in d.assignments} == {
        (t, {"unix:///n0.sock": "n0", "unix:///n1.sock": "n1"}[h]) for t, h in hosts.items()}


def test_driver_failure_stops_the_rest(tmp_path: Any) -> None:
    f = Fake(str(tmp_path))
    targets = {"bad": f.target("bad", rc=3), "slow": f.target("slow", sleep=5),
               "later": f.target("later", depends_on=["bad"])}
    with pytest.raises(BakeryError) as ei:
        f.driver(TWO).run(targets, ["bad", "slow", "later"], 1, None)
    assert ei.value.message.startswith("target bad (node n0): docker build exited 3"), ei.value.message
    assert "later" not in f.hosts()  # its dependency failed: never started


def test_driver_checks_everything_before_building(tmp_path: Any) -> None:
    f = Fake(str(tmp_path))
    targets = {"ok": f.target("ok"),
               "multi": f.target("multi", platforms=["linux/amd64", "linux/arm64"],
                                 output=[ExportEntry.from_text("type=docker")])}
    with pytest.raises(BakeryError, match="target multi: output type=docker cannot take a "
                       "multi-platform image"):
        f.driver(TWO).run(targets, ["ok", "multi"], 1, None)
    assert not os.path.exists(f.log)  # nothing ran
    with pytest.raises(BakeryError, match="no node of builder two serves linux/s390x"):
        f.driver(TWO).run({"z": f.target("z", platforms=["linux/s390x"])}, ["z"], 1, None)


def test_buildkit_driver_without_buildctl_is_a_clear_error(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    with open(os.path.join(tmp, "docker-bake.hcl"), "w") as fh:
        fh.write('target "default" {\n  dockerfile-inline = "FROM scratch"\n}\n')
    env = dict(os.environ, PATH=tmp + os.pathsep + "/usr/bin:/bin")
    env.pop("BAKERY_BUILDCTL", None)
    if any(os.access(os.path.join(p, "buildctl"), os.X_OK) for p in env["PATH"].split(os.pathsep)):
        pytest.skip("a buildctl is installed here")
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--driver", "buildkit",
                        "--buildkit-addr", "tcp://127.0.0.1:1"], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "error: the buildkit driver needs buildctl, which is not installed" in r.stderr
    assert "Debian 12 does not package it" in r.stderr
    assert "Traceback" not in r.stderr


FAKE_BUILDCTL = r'''#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps({{"buildctl": args}}) + "\n")
opts = [args[i + 1] for i, a in enumerate(args) if a == "--opt"]
plat = next((o.split("=", 1)[1] for o in opts if o.startswith("platform=")), "")
print("buildctl building " + plat, flush=True)
for i, a in enumerate(args):
    if a == "--output" and args[i + 1].startswith("type=oci,dest="):
        dest = next(x[5:] for x in args[i + 1].split(",") if x.startswith("dest="))
        shutil.copy(os.environ["FAKE_OCI_" + plat.replace("/", "_")], dest)
    if a == "--metadata-file":
        with open(args[i + 1], "w") as fh:
            json.dump({{"containerimage.digest": "sha256:bk-" + plat.replace("/", "-")}}, fh)
'''


def test_split_across_a_docker_and_a_buildkit_node(tmp_path: Any) -> None:
    """linux/arm64 goes to the buildkit node (an OCI tar back from buildctl),
    linux/amd64 to the docker node (a `docker save` tar); one index results."""
    f = Fake(str(tmp_path))
    bctl = os.path.join(f.tmp, "buildctl")
    with open(bctl, "w") as fh:
        fh.write(FAKE_BUILDCTL.format(python=sys.executable))
    os.chmod(bctl, 0o755)
    arm_oci = _oci_archive(f.tmp, "arm64")
    amd_save = os.path.join(f.tmp, "amd.save.tar")
    _docker_save(amd_save, "amd64", {"arch": b"amd64"})
    fake_docker = os.path.join(f.tmp, "docker")  # answers `save` and `rmi`, builds as FAKE
    with open(fake_docker, "w") as fh:
        fh.write(f"""#!{sys.executable}
import os, shutil, subprocess, sys
args = sys.argv[1:]
if "save" in args:
    shutil.copy({amd_save!r}, args[args.index("-o") + 1])
    sys.exit(0)
if "rmi" in args:
    sys.exit(0)
sys.exit(subprocess.call([{sys.executable!r}, {f.docker + ".build"!r}, *args]))
""")
    with open(f.docker + ".build", "w") as fh:
        fh.write(FAKE.format(python=sys.executable))
    f.docker = fake_docker
    os.chmod(fake_docker, 0o755)
    builder = Builder("mix", (Node("dk", "docker", "unix:///dk.sock", ("linux/amd64",)),
                              Node("bk", "buildkit", "tcp://127.0.0.1:1", ("linux/arm64",))))
    t = f.target("m", platforms=["linux/amd64", "linux/arm64"], tags=["r/m:1"],
                 output=[ExportEntry.from_text("type=oci,dest=out/m.tar")])
    arm = f.target("armonly", platforms=["linux/arm64"], tags=["r/a:1"],
                   output=[ExportEntry.from_text("type=oci,dest=out/a.tar")])
    lines: List[Tuple[str, str]] = []
    d = BuilderDriver(builder, cwd=f.tmp, docker=fake_docker, buildctl=bctl, host="linux/amd64",
                      env={"FAKE_LOG": f.log, "FAKE_OCI_linux_arm64": arm_oci})
    res = d.run({"m": t, "armonly": arm}, ["m", "armonly"], 1, lambda a, b: lines.append((a, b)))
    assert res["armonly"] == "sha256:bk-linux-arm64"
    assert sorted((tg, p, n) for tg, p, n in d.assignments) == [
        ("armonly", "linux/arm64", "bk"), ("m", "linux/amd64", "dk"), ("m", "linux/arm64", "bk")]
    with open_layout(os.path.join(f.tmp, "out", "m.tar")) as lay:
        root = lay.resolve("r/m:1")
        assert root.digest == res["m"]
        children = lay.store.read_json(root.digest)["manifests"]
        assert [c["platform"]["architecture"] for c in children] == ["amd64", "arm64"]
    joined = [line for tg, line in lines if tg == "m" and line.startswith("joined ")]
    assert joined == [f"joined linux/amd64 (dk), linux/arm64 (bk) into {res['m']}"]
    with open(f.log) as fh:
        calls = [json.loads(x) for x in fh if '"buildctl"' in x]
    split_call = next(c["buildctl"] for c in calls if "platform=linux/arm64" in c["buildctl"]
                      and any(a.startswith("type=oci,dest=") and a.endswith(".tar") and "out/" not in a
                              for a in c["buildctl"]))
    assert split_call[:3] == ["--addr", "tcp://127.0.0.1:1", "build"]


# ------------------------------------------------ named contexts on a builder's nodes


def test_driver_named_contexts_rewrite_and_tags(tmp_path: Any) -> None:
    f = Fake(str(tmp_path))
    targets = {"base": f.target("base"),
               "app": f.target("app", dockerfile_inline="FROM base\n",
                               contexts={"base": "target:base"})}
    d = f.driver(TWO)
    ids = d.run(targets, ["app"], 1, None)
    assert ids == {"base": "sha256:base", "app": "sha256:app"}
    with open(f.log) as fh:
        log = [json.loads(x) for x in fh]
    builds = {e["name"]: e for e in log if "build" in e["args"]}
    base_args = builds["base"]["args"]
    assert base_args.count("-t") == 1  # only a context: its temporary tag alone
    tag = base_args[base_args.index("-t") + 1]
    assert tag.startswith("bakery-ctx/base-default:")
    assert builds["app"]["host"] == builds["base"]["host"]  # kept next to its context
    rmi = [e for e in log if "rmi" in e["args"]]
    assert [e["args"][-1] for e in rmi] == [tag] and rmi[0]["host"] == builds["base"]["host"]


def test_driver_named_context_errors_before_building(tmp_path: Any) -> None:
    f = Fake(str(tmp_path))
    mixed = Builder("mixed", (Node("d", "docker", "unix:///d.sock", ("linux/amd64",)),
                              Node("k", "buildkit", "tcp://127.0.0.1:1", ("linux/arm64",))))
    targets = {"base": f.target("base", platforms=["linux/arm64"]),
               "app": f.target("app", dockerfile_inline="FROM base\n", platforms=["linux/amd64"],
                               contexts={"base": "target:base"})}
    d = BuilderDriver(mixed, cwd=f.tmp, docker=f.docker, env={"FAKE_LOG": f.log},
                      host="linux/amd64", buildctl="/bin/true")
    with pytest.raises(BakeryError, match=r"target base \(a named context of app\): node k .* "
                       "buildkitd"):
        d.run(targets, ["app"], 1, None)
    # a context target built for other platforms than its user
    targets = {"base": f.target("base", platforms=["linux/amd64", "linux/arm64"]),
               "app": f.target("app", dockerfile_inline="FROM base\n", platforms=["linux/s390x"],
                               contexts={"base": "target:base"})}
    s390 = Builder("s", (Node("n", "docker", "unix:///n.sock"),))
    with pytest.raises(BakeryError, match="target app: its named context target:base is not "
                       "built for linux/s390x"):
        f.driver(s390).run(targets, ["app"], 1, None)
    assert not os.path.exists(f.log)  # nothing ran
