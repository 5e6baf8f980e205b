"""The buildkit driver's command construction (pure), checked against
buildctl's documented flags (moby/buildkit docs/reference/buildctl.md:
global --addr/--tlscacert/--tlscert/--tlskey; build --frontend, --local,
--opt, --output, --export-cache/--import-cache, --secret, --ssh, --allow,
--no-cache), and the clear error when buildctl is missing."""

from __future__ import annotations

import os
from typing import Any, List

import pytest

from bakery.bakefile.buildflags import SSH, Attest, CacheOptionsEntry, ExportEntry, Secret
from bakery.bakefile.model import Target
from bakery.drivers.builders import Node
from bakery.drivers.buildkit import buildctl_args, find_buildctl, target_outputs
from bakery.errors import BakeryError

UNIX = Node("bk", "buildkit", "unix:///run/buildkit/buildkitd.sock")
TLS = Node("bk", "buildkit", "tcp://10.0.0.1:1234", (), "/c/ca.pem", "/c/cert.pem", "/c/key.pem")
POD = Node("bk", "buildkit", "kube-pod://buildkitd-0?namespace=ci")
CWD = "/src"
BUILD = ["build", "--progress", "plain", "--frontend", "dockerfile.v0"]


def test_minimal_unix() -> None:
    assert buildctl_args(Target("a"), None, UNIX, CWD) == [
        "buildctl", "--addr", "unix:///run/buildkit/buildkitd.sock", *BUILD,
        "--local", "context=/src", "--local", "dockerfile=/src", "--opt", "filename=Dockerfile"]


def test_tcp_mtls_and_kube_pod_endpoints() -> None:
    argv = buildctl_args(Target("a"), None, TLS, CWD, buildctl="/opt/bin/buildctl")
    assert argv[:9] == ["/opt/bin/buildctl", "--addr", "tcp://10.0.0.1:1234",
                        "--tlscacert", "/c/ca.pem", "--tlscert", "/c/cert.pem", "--tlskey", "/c/key.pem"]
    assert argv[9:14] == BUILD
    assert buildctl_args(Target("a"), None, POD, CWD)[:3] == [
        "buildctl", "--addr", "kube-pod://buildkitd-0?namespace=ci"]


def _opts(argv: List[str], flag: str = "--opt") -> List[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_every_attribute() -> None:
    t = Target(
        "app", context="app", dockerfile="build/Dockerfile.prod", target="final",
        args={"B": "2", "A": "1", "UNSET": None}, labels={"l": "v"},
        platforms=["linux/amd64", "linux/arm64"], tags=["r/app:1", "r/app:latest"],
        secret=[Secret("tok", src="tok.txt"), Secret("env", env="TOKEN")],
        ssh=[SSH("default"), SSH("key", ["id_rsa"])], network="host", no_cache=True, pull=True,
        extra_hosts={"db": "10.0.0.5"}, shm_size="128m", ulimits=["nofile=1024:2048"],
        cache_from=[CacheOptionsEntry("registry", {"ref": "r/cache"}),
                    CacheOptionsEntry("local", {"src": "cache"})],
        cache_to=[CacheOptionsEntry("registry", {"ref": "r/cache", "mode": "max"})],
        output=[ExportEntry.from_text("type=registry")], contexts={
            "base": "docker-image://r/base:1", "assets": "assets"},
        no_cache_filter=["build"], entitlements=["network.host"],
        attest=[Attest("sbom"), Attest("provenance", {"mode": "max"})])
    argv = buildctl_args(t, None, UNIX, CWD)
    assert _opts(argv, "--local") == ["context=/src/app", "dockerfile=/src/app/build",
                                      "ctx-assets=/src/assets"]
    assert _opts(argv) == [
        "filename=Dockerfile.prod", "context:assets=local:ctx-assets",
        "context:base=docker-image://r/base:1", "target=final", "platform=linux/amd64,linux/arm64",
        "build-arg:A=1", "build-arg:B=2", "label:l=v", "add-hosts=db=10.0.0.5", "shm-size=128m",
        "ulimit=nofile=1024:2048", "image-resolve-mode=pull", "no-cache=build",
        "force-network-mode=host", "attest:sbom=", "attest:provenance=mode=max"]
    assert _opts(argv, "--allow") == ["network.host"]
    assert "--no-cache" in argv
    assert _opts(argv, "--secret") == ["id=tok,src=/src/tok.txt", "id=env,env=TOKEN"]
    assert _opts(argv, "--ssh") == ["default", "key=/src/id_rsa"]
    assert _opts(argv, "--import-cache") == ["type=registry,ref=r/cache", "type=local,src=/src/cache"]
    assert _opts(argv, "--export-cache") == ["type=registry,mode=max,ref=r/cache"]
    assert _opts(argv, "--output") == ['type=image,"name=r/app:1,r/app:latest",push=true']


def test_one_platform_of_a_split_and_its_oci_output() -> None:
    t = Target("m", platforms=["linux/amd64", "linux/arm64"], output=[ExportEntry.from_text("type=registry")],
               tags=["r/m:1"])
    argv = buildctl_args(t, "linux/arm64", UNIX, CWD, outputs=["type=oci,dest=/tmp/m.tar"])
    assert _opts(argv) == ["filename=Dockerfile", "platform=linux/arm64"]
    assert _opts(argv, "--output") == ["type=oci,dest=/tmp/m.tar"]


def test_inline_and_remote_contexts() -> None:
    t = Target("a", dockerfile_inline="FROM scratch\n")
    argv = buildctl_args(t, None, UNIX, CWD, inline_dir="/tmp/inl")
    assert _opts(argv, "--local") == ["context=/src", "dockerfile=/tmp/inl"]
    assert _opts(argv) == ["filename=Dockerfile"]
    with pytest.raises(BakeryError, match="needs a directory"):
        buildctl_args(t, None, UNIX, CWD)
    git = Target("g", context="https://github.com/o/r.git#main", dockerfile="sub/Dockerfile")
    argv = buildctl_args(git, None, UNIX, CWD)
    assert _opts(argv, "--local") == []
    assert _opts(argv) == ["context=https://github.com/o/r.git#main", "filename=sub/Dockerfile"]


@pytest.mark.parametrize(("spec", "want"), [
    ("type=oci,dest=out/a.tar", "type=oci,dest=/src/out/a.tar,name=r/a:1"),
    ("type=docker,dest=a.tar", "type=docker,dest=/src/a.tar,name=r/a:1"),
    ("type=local,dest=out", "type=local,dest=/src/out"),
    ("type=tar,dest=-", "type=tar,dest=-"),
    ("type=image,name=r/b:2,push=true", "type=image,name=r/b:2,push=true"),
])
def test_outputs(spec: str, want: str) -> None:
    assert target_outputs(Target("a", tags=["r/a:1"], output=[ExportEntry.from_text(spec)]), CWD) == [want]


# (id, target, words)
REJECTS: List[Any] = [
    ("target-context", Target("t", contexts={"base": "target:base"}), ["contexts", "target:base"]),
    ("call", Target("t", call="outline"), ["call"]),
    ("network", Target("t", network="bridge0"), ["network", "bridge0"]),
    ("entitlement", Target("t", entitlements=["device"]), ["entitlements", "device"]),
    ("docker-load", Target("t", output=[ExportEntry.from_text("type=docker")]), ["type=docker"]),
    ("push-no-name", Target("t", output=[ExportEntry.from_text("type=registry")]), ["no image name"]),
]


@pytest.mark.parametrize(("t", "words"), [pytest.param(*c[1:], id=c[0]) for c in REJECTS])
def test_rejects(t: Target, words: List[str]) -> None:
    with pytest.raises(BakeryError) as ei:
        buildctl_args(t, None, UNIX, CWD)
    assert ei.value.message.startswith("target t: ")
    for w in words:
        assert w in ei.value.message


def test_missing_buildctl_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(BakeryError) as ei:
        find_buildctl({"PATH": str(tmp_path)})
    assert "needs buildctl, which is not installed" in ei.value.message
    assert "Debian 12 does not package it" in (ei.value.hint or "")
    fake = os.path.join(str(tmp_path), "buildctl")
    with open(fake, "w") as fh:
        fh.write("#!/bin/sh\n")
    os.chmod(fake, 0o755)
    assert find_buildctl({"BAKERY_BUILDCTL": fake}) == fake
