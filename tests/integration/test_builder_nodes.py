"""A builder with TWO real Docker engines as nodes (two private dockerd 20.10
from tests/integration/dockerd.py, the busybox base pulled from a local
registry), driven through `bakery run --builder`:

* a small monorepo of independent targets (plus one depends_on pair) on
  builder "pair" (both nodes serve linux/amd64): the log shows targets on
  both nodes, every image is in the engine the log names, with its content;
  the dependent target was built next to (FROM the tag of) its dependency.
* a multi-platform target on builder "split" (one node declares
  linux/amd64, the other linux/arm64 only, building through qemu binfmt):
  each platform is built on its own node and the two images are joined into
  ONE index pushed to the registry (checked with skopeo: two platforms,
  RUN uname -m gave x86_64 / aarch64) and written as an OCI layout tar.
* the docker driver's push after build (type=registry) checked with skopeo.
* named contexts: examples/monorepo as it is (two platforms, api/worker on
  target:base) on the amd/arm builder and through --driver docker on one
  engine, its OCI tars checked for base's files in every platform; two
  context targets on two engines, one copied to the other (docker save/load).

Skipped (with the reason) without root, docker.io, docker-registry,
skopeo or busybox-static; the arm64 part needs an arm64 busybox
(/opt/bakery-test/arm64/bin/busybox, installed by .ci/run) and qemu binfmt.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from tests.integration.dockerd import DOCKER_BIN, HOST_ARCH, Dockerd, running_dockerd, skip_reason
from tests.integration.registry import Registry, push_busybox_image, running_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARM64_BUSYBOX = "/opt/bakery-test/arm64/bin/busybox"

pytestmark = pytest.mark.integration

TIMEOUT = 900

SERVICE = """\
ARG BASE
FROM ${BASE}
ARG NAME
RUN echo "service ${NAME}" > /name && uname -m > /arch
"""

APP = """\
FROM bakery-it/lib:1
RUN cat /name > /from-lib
"""


def _arm64_ok() -> str:
    if HOST_ARCH != "amd64":
        return "the split test assumes an amd64 host"
    if not os.access(ARM64_BUSYBOX, os.X_OK):
        return f"no arm64 busybox at {ARM64_BUSYBOX} (.ci/run installs it)"
    if not any(n.startswith("qemu-aarch64") for n in os.listdir("/proc/sys/fs/binfmt_misc")):
        return "qemu-aarch64 binfmt is not registered (qemu-user-static)"
    return ""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Registry, str, Dockerd, Dockerd]]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    for tool in ("skopeo",):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (Debian package busybox-static)")
    tmp = str(tmp_path_factory.mktemp("builder-nodes"))
    try:
        with running_registry(os.path.join(tmp, "registry")) as reg:
            base = f"{reg.host}/bakery/busybox:latest"
            plats = [f"linux/{HOST_ARCH}={busybox}"]
            if not _arm64_ok():
                plats.append(f"linux/arm64={ARM64_BUSYBOX}")
            push_busybox_image(base, *plats)
            with running_dockerd(insecure_registries=[reg.host]) as d1, \
                    running_dockerd(insecure_registries=[reg.host]) as d2:
                yield reg, base, d1, d2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bakery(cwd: str, cfg: str, *args: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, BAKERY_CONFIG_DIR=cfg, BAKERY_DOCKER=DOCKER_BIN or "docker",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "bakery", *args], cwd=cwd, env=e, text=True,
                          capture_output=True, timeout=TIMEOUT)


def _add(cfg: str, builder: str, node: str, d: Dockerd, plats: str) -> None:
    r = _bakery(cfg, cfg, "builder", "add", builder, "--driver", "docker", "--endpoint", d.host,
                "--platform", plats, "--node", node)
    assert r.returncode == 0, r.stderr


def _nodes_in_log(stderr: str) -> Dict[str, List[str]]:
    """target -> the nodes its "building on node N" lines name."""
    out: Dict[str, List[str]] = {}
    for line in stderr.splitlines():
        if "] building on node " in line:
            target = line[1:line.index("]")]
            node = line.split("building on node ", 1)[1].split()[0]
            out.setdefault(target, []).append(node)
    return out


def test_targets_spread_across_two_engines(env: Tuple[Registry, str, Dockerd, Dockerd],
                                           tmp_path: Any) -> None:
    _reg, base, d1, d2 = env
    proj, cfg = str(tmp_path / "proj"), str(tmp_path / "cfg")
    os.makedirs(os.path.join(proj, "svc"))
    os.makedirs(cfg)
    with open(os.path.join(proj, "svc", "Dockerfile"), "w") as fh:
        fh.write(SERVICE)
    services = ["alpha", "beta", "gamma", "delta"]
    bake = [f'variable "BASE" {{ default = "{base}" }}',
            'group "default" { targets = ["alpha", "beta", "gamma", "delta", "lib", "app"] }']
    for s in services:
        bake.append(f'target "{s}" {{\n  context = "svc"\n  args = {{ BASE = BASE, NAME = "{s}" }}\n'
                    f'  tags = ["bakery-it/{s}:1"]\n}}')
    bake.append('target "lib" {\n  context = "svc"\n  args = { BASE = BASE, NAME = "lib" }\n'
                '  tags = ["bakery-it/lib:1"]\n}')
    bake.append('target "app" {\n  context = "svc"\n  dockerfile-inline = <<EOT\n' + APP +
                'EOT\n  depends_on = ["lib"]\n  tags = ["bakery-it/app:1"]\n}')
    with open(os.path.join(proj, "docker-bake.hcl"), "w") as fh:
        fh.write("\n".join(bake) + "\n")
    _add(cfg, "pair", "left", d1, "linux/amd64")
    _add(cfg, "pair", "right", d2, "linux/amd64")

    r = _bakery(proj, cfg, "run", "--builder", "pair", "-j", "1")
    assert r.returncode == 0, r.stderr[-4000:]
    where = _nodes_in_log(r.stderr)
    assert set(where) == {*services, "lib", "app"}, where
    assert all(len(v) == 1 for v in where.values()), where
    used = {v[0] for v in where.values()}
    assert used == {"left", "right"}, where  # both engines built something
    # the first two builds started went to different (idle) nodes
    starts = [ln.split("building on node ", 1)[1].split()[0] for ln in r.stderr.splitlines()
              if "] building on node " in ln]
    assert starts[0] != starts[1], starts
    # the dependent target was kept next to its dependency (its tag is only there)
    assert where["app"] == where["lib"]
    # the summary on stdout names the node of every target
    for t, (node,) in where.items():
        assert any(line.startswith(f"{t}: sha256:") and f"builder pair: {node}" in line
                   for line in r.stdout.splitlines()), r.stdout

    engines = {"left": d1, "right": d2}
    for t, (node,) in where.items():
        d, other = engines[node], engines["right" if node == "left" else "left"]
        assert d.docker("image", "inspect", f"bakery-it/{t}:1", check=False).returncode == 0
        assert other.docker("image", "inspect", f"bakery-it/{t}:1", check=False).returncode != 0
        if t != "app":
            assert d.read_file(f"bakery-it/{t}:1", "/name") == f"service {t}\n"
            assert d.read_file(f"bakery-it/{t}:1", "/arch") == "x86_64\n"
    assert engines[where["app"][0]].read_file("bakery-it/app:1", "/from-lib") == "service lib\n"


def _oci_file(layout_dir: str, manifest_digest: str, path: str) -> str:
    """A file's content from an image manifest in an OCI layout directory
    (the last layer that has it wins)."""
    def blob(d: str) -> bytes:
        algo, hexd = d.split(":", 1)
        with open(os.path.join(layout_dir, "blobs", algo, hexd), "rb") as fh:
            return fh.read()
    man = json.loads(blob(manifest_digest))
    found = None
    for la in man["layers"]:
        data = blob(la["digest"])
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            for m in tf.getmembers():
                if m.name.lstrip("./") == path.lstrip("/") and m.isfile():
                    fh = tf.extractfile(m)
                    assert fh is not None
                    found = fh.read().decode()
    assert found is not None, f"{path} not in {manifest_digest}"
    return found


def test_multi_platform_split_across_nodes_joined_into_one_index(
        env: Tuple[Registry, str, Dockerd, Dockerd], tmp_path: Any) -> None:
    why = _arm64_ok()
    if why:
        pytest.skip(why)
    reg, base, d1, d2 = env
    proj, cfg = str(tmp_path / "proj"), str(tmp_path / "cfg")
    os.makedirs(os.path.join(proj, "svc"))
    os.makedirs(cfg)
    with open(os.path.join(proj, "svc", "Dockerfile"), "w") as fh:
        fh.write(SERVICE)
    ref = f"{reg.host}/bakery-it/multi:1"
    with open(os.path.join(proj, "docker-bake.hcl"), "w") as fh:
        fh.write(f'''
target "multi" {{
  context = "svc"
  args = {{ BASE = "{base}", NAME = "multi" }}
  platforms = ["linux/amd64", "linux/arm64"]
  tags = ["{ref}"]
  output = ["type=registry"]
}}
target "multi-oci" {{
  inherits = ["multi"]
  args = {{ NAME = "oci" }}
  tags = ["bakery-it/multi-oci:2"]
  output = ["type=oci,dest=out/multi.tar"]
}}
group "default" {{ targets = ["multi", "multi-oci"] }}
''')
    _add(cfg, "split", "amd", d1, "linux/amd64")
    _add(cfg, "split", "arm", d2, "linux/arm64")

    r = _bakery(proj, cfg, "run", "--builder", "split")
    assert r.returncode == 0, r.stderr[-4000:]
    lines = r.stderr.splitlines()
    assert "[multi] building on node amd (linux/amd64)" in lines
    assert "[multi] building on node arm (linux/arm64)" in lines
    assert "[multi-oci] building on node arm (linux/arm64)" in lines
    joined = [ln for ln in lines if ln.startswith("[multi] joined ")]
    assert joined and "linux/amd64 (amd)" in joined[0] and "linux/arm64 (arm)" in joined[0]

    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, text=True, timeout=120)
    assert raw.returncode == 0, raw.stderr
    index = json.loads(raw.stdout)
    assert index["mediaType"].endswith(("manifest.list.v2+json", "image.index.v1+json"))
    plats = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"])
    assert plats == ["linux/amd64", "linux/arm64"]
    digest = next(ln for ln in r.stdout.splitlines() if ln.startswith("multi: ")).split()[1]
    assert digest.startswith("sha256:")
    # the pushed images ran their RUN steps on their own architectures
    for arch, uname in (("amd64", "x86_64"), ("arm64", "aarch64")):
        lay = str(tmp_path / f"copy-{arch}")
        c = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--override-arch", arch,
                            f"docker://{ref}", f"oci:{lay}:x"], capture_output=True, text=True,
                           timeout=300)
        assert c.returncode == 0, c.stderr
        with open(os.path.join(lay, "index.json")) as fh:
            mdigest = json.load(fh)["manifests"][0]["digest"]
        assert _oci_file(lay, mdigest, "arch") == f"{uname}\n"
        assert _oci_file(lay, mdigest, "name") == "service multi\n"
        cfg_raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--override-arch", arch,
                                  f"docker://{ref}"], capture_output=True, text=True, timeout=120)
        assert json.loads(cfg_raw.stdout)["Architecture"] == arch

    # the OCI layout tar holds the same kind of index, named by the tag
    out = os.path.join(proj, "out", "multi.tar")
    lay = str(tmp_path / "oci-dir")
    os.makedirs(lay)
    with tarfile.open(out) as tf:
        tf.extractall(lay)
    with open(os.path.join(lay, "index.json")) as fh:
        top = json.load(fh)["manifests"]
    assert len(top) == 1
    assert top[0]["annotations"]["org.opencontainers.image.ref.name"] == "2"
    with open(os.path.join(lay, "blobs", *top[0]["digest"].split(":"))) as fh:
        children = json.load(fh)["manifests"]
    by_arch = {m["platform"]["architecture"]: m["digest"] for m in children}
    assert set(by_arch) == {"amd64", "arm64"}
    assert _oci_file(lay, by_arch["arm64"], "arch") == "aarch64\n"
    assert _oci_file(lay, by_arch["amd64"], "name") == "service oci\n"
    # nothing temporary was left in the engines
    for d in (d1, d2):
        assert "bakery-split" not in d.docker("images", "--format", "{{.Repository}}").stdout


def test_docker_driver_pushes_after_build(env: Tuple[Registry, str, Dockerd, Dockerd],
                                          tmp_path: Any) -> None:
    reg, base, d1, _ = env
    proj = str(tmp_path)
    os.makedirs(os.path.join(proj, "svc"))
    with open(os.path.join(proj, "svc", "Dockerfile"), "w") as fh:
        fh.write(SERVICE)
    ref = f"{reg.host}/bakery-it/pushed:1"
    with open(os.path.join(proj, "docker-bake.hcl"), "w") as fh:
        fh.write(f'''
target "pushed" {{
  context = "svc"
  args = {{ BASE = "{base}", NAME = "pushed" }}
  tags = ["{ref}", "{reg.host}/bakery-it/pushed:latest"]
}}
target "exported" {{
  context = "svc"
  args = {{ BASE = "{base}", NAME = "exported" }}
  tags = ["bakery-it/exported:1"]
  output = ["type=local,dest=out/exported"]
}}
group "default" {{ targets = ["pushed", "exported"] }}
''')
    r = _bakery(proj, proj, "run", "--driver", "docker", "--docker-host", d1.host, "--push",
                "pushed")
    assert r.returncode == 0, r.stderr[-4000:]
    assert f"[pushed] pushing {ref}" in r.stderr.splitlines()
    for tag in ("1", "latest"):
        ins = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                              f"docker://{reg.host}/bakery-it/pushed:{tag}"],
                             capture_output=True, text=True, timeout=120)
        assert ins.returncode == 0, ins.stderr
        assert json.loads(ins.stdout)["Architecture"] == HOST_ARCH
    # tags with a local output: accepted (as buildx), not applied, files exported
    r = _bakery(proj, proj, "run", "--driver", "docker", "--docker-host", d1.host, "exported")
    assert r.returncode == 0, r.stderr[-4000:]
    with open(os.path.join(proj, "out", "exported", "name")) as fh:
        assert fh.read() == "service exported\n"
    assert d1.docker("image", "inspect", "bakery-it/exported:1", check=False).returncode != 0


def test_docker_driver_multi_platform_on_one_engine(env: Tuple[Registry, str, Dockerd, Dockerd],
                                                    tmp_path: Any) -> None:
    """`--driver docker` with two platforms: one engine builds both (arm64
    through qemu binfmt) and the images are joined into one index."""
    why = _arm64_ok()
    if why:
        pytest.skip(why)
    _reg, base, d1, _ = env
    proj = str(tmp_path / "proj")
    os.makedirs(os.path.join(proj, "svc"))
    with open(os.path.join(proj, "svc", "Dockerfile"), "w") as fh:
        fh.write(SERVICE)
    with open(os.path.join(proj, "docker-bake.hcl"), "w") as fh:
        fh.write(f'''
target "default" {{
  context = "svc"
  args = {{ BASE = "{base}", NAME = "one" }}
  platforms = ["linux/arm64", "linux/amd64"]
  output = ["type=oci,dest=out/one.tar"]
}}
''')
    r = _bakery(proj, proj, "run", "--driver", "docker", "--docker-host", d1.host)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "[default] building on node docker0 (linux/arm64)" in r.stderr.splitlines()
    lay = str(tmp_path / "lay")
    os.makedirs(lay)
    with tarfile.open(os.path.join(proj, "out", "one.tar")) as tf:
        tf.extractall(lay)
    with open(os.path.join(lay, "index.json")) as fh:
        (top,) = json.load(fh)["manifests"]
    with open(os.path.join(lay, "blobs", *top["digest"].split(":"))) as fh:
        children = json.load(fh)["manifests"]
    # the index keeps the target's platform order
    assert [m["platform"]["architecture"] for m in children] == ["arm64", "amd64"]
    assert _oci_file(lay, children[0]["digest"], "arch") == "aarch64\n"
    assert _oci_file(lay, children[1]["digest"], "arch") == "x86_64\n"


@pytest.mark.parametrize("how", ["builder", "one-engine"])
def test_monorepo_named_contexts_split_across_two_engines(
        env: Tuple[Registry, str, Dockerd, Dockerd], tmp_path: Any, how: str) -> None:
    """examples/monorepo as it is (two platforms, OCI tar outputs, api and
    worker on ``contexts = { base = "target:base" }``) on a builder whose
    node amd serves linux/amd64 and node arm linux/arm64: base is built per
    platform under a temporary tag on each node, api and worker next to it
    with their Dockerfiles rewritten to name it, each joined into one index.
    ``one-engine``: the same through ``--driver docker`` (one engine builds
    both platforms, arm64 through qemu binfmt)."""
    why = _arm64_ok()
    if why:
        pytest.skip(why)
    _reg, base, d1, d2 = env
    proj, cfg = str(tmp_path / "monorepo"), str(tmp_path / "cfg")
    shutil.copytree(os.path.join(ROOT, "examples", "monorepo"), proj,
                    ignore=shutil.ignore_patterns("out"))  # what run-example.sh wrote
    os.makedirs(cfg)
    _add(cfg, "mono", "amd", d1, "linux/amd64")
    _add(cfg, "mono", "arm", d2, "linux/arm64")
    e = dict(os.environ, BAKERY_CONFIG_DIR=cfg, BAKERY_DOCKER=DOCKER_BIN or "docker",
             BASE_IMAGE=base, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = ["--builder", "mono"] if how == "builder" else ["--driver", "docker", "--docker-host",
                                                             d1.host]
    r = subprocess.run([sys.executable, "-m", "bakery", "run", *args], cwd=proj,
                       env=e, text=True, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-4000:]
    lines = r.stderr.splitlines()
    amd, arm = ("amd", "arm") if how == "builder" else ("docker0", "docker0")
    for t in ("base", "api", "worker"):
        assert f"[{t}] building on node {amd} (linux/amd64)" in lines, r.stderr[-4000:]
        assert f"[{t}] building on node {arm} (linux/arm64)" in lines
    assert not any("copying bakery-ctx/" in ln for ln in lines)  # each built next to its base
    with open(os.path.join(proj, "base", "motd")) as fh:
        motd = fh.read()
    for svc in ("api", "worker"):
        lay = str(tmp_path / f"lay-{svc}")
        os.makedirs(lay)
        with tarfile.open(os.path.join(proj, "out", f"{svc}.tar")) as tf:
            tf.extractall(lay)
        with open(os.path.join(lay, "index.json")) as fh:
            tops = json.load(fh)["manifests"]  # one per tag (dev, latest), the same index
        assert len({m["digest"] for m in tops}) == 1 and len(tops) == 2
        with open(os.path.join(lay, "blobs", *tops[0]["digest"].split(":"))) as fh:
            children = json.load(fh)["manifests"]
        assert [m["platform"]["architecture"] for m in children] == ["amd64", "arm64"]
        for m in children:
            assert _oci_file(lay, m["digest"], "etc/example/layer") == "base\n"
            assert _oci_file(lay, m["digest"], "etc/motd") == motd
            assert _oci_file(lay, m["digest"], f"app/{svc}/VERSION") == f"{svc} dev\n"
    for flavor in ("plain", "debug"):
        assert os.path.isfile(os.path.join(proj, "out", f"web-{flavor}.tar"))
    for d in (d1, d2):
        assert "bakery-ctx" not in d.docker("images", "--format", "{{.Repository}}").stdout


def test_named_contexts_from_two_engines_are_copied_to_the_one_that_builds(
        env: Tuple[Registry, str, Dockerd, Dockerd], tmp_path: Any) -> None:
    """Two context targets spread across both nodes; the target that uses
    both runs on one of them, and the other's image is copied there (docker
    save | docker load) before its build."""
    _reg, base, d1, d2 = env
    proj, cfg = str(tmp_path / "proj"), str(tmp_path / "cfg")
    os.makedirs(proj)
    os.makedirs(cfg)
    _add(cfg, "two", "n1", d1, f"linux/{HOST_ARCH}")
    _add(cfg, "two", "n2", d2, f"linux/{HOST_ARCH}")
    with open(os.path.join(proj, "docker-bake.hcl"), "w") as fh:
        fh.write(f'''
target "one" {{
  dockerfile-inline = "ARG BASE\\nFROM $${{BASE}}\\nRUN sleep 2 && echo one > /one.txt\\n"
  args = {{ BASE = "{base}" }}
}}
target "two" {{
  inherits = ["one"]
  dockerfile-inline = "ARG BASE\\nFROM $${{BASE}}\\nRUN sleep 2 && echo two > /two.txt\\n"
}}
target "both" {{
  dockerfile-inline = "FROM first\\nCOPY --from=second /two.txt /two.txt\\n"
  contexts = {{ first = "target:one", second = "target:two" }}
  tags = ["bakery-it/both:1"]
}}
''')
    r = _bakery(proj, cfg, "run", "--builder", "two", "both")
    assert r.returncode == 0, r.stderr[-4000:]
    where = _nodes_in_log(r.stderr)
    assert sorted(where["one"] + where["two"]) == ["n1", "n2"], r.stderr[-3000:]
    (node,) = where["both"]
    other = "two" if where["one"] == [node] else "one"
    lines = r.stderr.splitlines()
    assert any(ln.startswith("[both] copying bakery-ctx/") and f"(target {other})" in ln
               and ln.endswith(f"to node {node}") for ln in lines), r.stderr[-3000:]
    d = {"n1": d1, "n2": d2}[node]
    assert d.read_file("bakery-it/both:1", "/one.txt") == "one\n"
    assert d.read_file("bakery-it/both:1", "/two.txt") == "two\n"
    for e in (d1, d2):
        assert "bakery-ctx" not in e.docker("images", "--format", "{{.Repository}}").stdout
