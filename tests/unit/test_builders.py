"""Builders config (bakery/drivers/builders.py): parse, errors with
file:line, the TOML emitter round trip, add/remove, the config path; and
the `bakery builder` commands on a temporary config directory."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest

from bakery.drivers.builders import (
    Builder,
    Node,
    add_node,
    config_path,
    format_builders,
    load_builders,
    next_node_name,
    parse_builders,
    remove,
    save_builders,
)
from bakery.errors import BakeryError

GOOD = """\
# two builders
[builder.fleet]

[[builder.fleet.node]]
name = "amd"
driver = "docker"
endpoint = "unix:///run/docker.sock"
platforms = ["linux/amd64", "linux/x86_64"]

[[builder.fleet.node]]
driver = "buildkit"
endpoint = "tcp://10.0.0.2:1234"
platforms = ["linux/aarch64"]
tlscacert = "/etc/ca.pem"
tlscert = "/etc/cert.pem"
tlskey = "/etc/key.pem"

[builder.k8s]
[[builder.k8s.node]]
name = "pod"
driver = "buildkit"
endpoint = "kube-pod://buildkitd-0?namespace=ci"
"""


def test_parse_normalises_and_names_nodes() -> None:
    b = parse_builders(GOOD, "b.toml")
    assert list(b) == ["fleet", "k8s"]
    fleet = b["fleet"]
    assert fleet.nodes[0] == Node("amd", "docker", "unix:///run/docker.sock", ("linux/amd64",))
    # an unnamed node is BUILDER<index>, like buildx; aarch64 normalises to arm64
    assert fleet.nodes[1] == Node("fleet1", "buildkit", "tcp://10.0.0.2:1234", ("linux/arm64",),
                                  "/etc/ca.pem", "/etc/cert.pem", "/etc/key.pem")
    assert b["k8s"].nodes == (Node("pod", "buildkit", "kube-pod://buildkitd-0?namespace=ci"),)


def test_format_round_trips() -> None:
    b = parse_builders(GOOD, "b.toml")
    text = format_builders(b)
    assert parse_builders(text, "again.toml") == b
    odd = {"x": Builder("x", (Node("n", "docker", 'unix:///tmp/we"ird\\path\n', ()),))}
    assert parse_builders(format_builders(odd), "odd.toml") == odd


# (id, text, line, words)
BAD: List[Any] = [
    ("toml-syntax", "[builder.a\n", 1, ["invalid TOML"]),
    ("unknown-top", "[builder.a]\n[[builder.a.node]]\ndriver='docker'\nendpoint='unix:///x'\n"
     "[other]\n", 5, ["unknown key 'other'"]),
    ("no-nodes", "[builder.a]\n", 1, ["builder a has no nodes"]),
    ("no-endpoint", "[builder.a]\n\n[[builder.a.node]]\ndriver = 'docker'\n", 3,
     ["node 1 has no endpoint"]),
    ("bad-driver", "[builder.a]\n[[builder.a.node]]\ndriver='docker'\nendpoint='unix:///x'\n"
     "[[builder.a.node]]\nname='b'\nendpoint='unix:///y'\ndriver='podman'\n", 8,
     ["unknown driver 'podman'"]),
    ("bad-endpoint", "[builder.a]\n[[builder.a.node]]\ndriver='docker'\n\nendpoint='kube-pod://p'\n",
     5, ["endpoint 'kube-pod://p'", "docker driver"]),
    ("bad-platform", "[builder.a]\n[[builder.a.node]]\ndriver='docker'\nendpoint='unix:///x'\n"
     "platforms=['linux/amd64', 'windows/']\n", 5, ["invalid platform"]),
    ("platforms-type", "[builder.a]\n[[builder.a.node]]\ndriver='docker'\nendpoint='unix:///x'\n"
     "platforms=3\n", 5, ["platforms must be a list"]),
    ("unknown-node-key", "[builder.a]\n[[builder.a.node]]\ndriver='docker'\nendpoint='unix:///x'\n"
     "platform='linux/amd64'\n", 5, ["unknown node key 'platform'"]),
    ("tls-on-docker", "[builder.a]\n[[builder.a.node]]\ndriver='docker'\nendpoint='tcp://h:1'\n"
     "tlscert='c'\n", 2, ["tlscert", "buildkit node at a tcp:// endpoint"]),
    ("dup-node", "[builder.a]\n[[builder.a.node]]\nname='n'\ndriver='docker'\nendpoint='unix:///x'\n"
     "[builder.b]\n[[builder.b.node]]\nname='n'\ndriver='docker'\nendpoint='unix:///y'\n", 8,
     ["node name n is already used (by builder a)"]),
    ("builder-name", "[builder.'a b']\n[[builder.'a b'.node]]\ndriver='docker'\nendpoint='unix:///x'\n",
     1, ["invalid builder name 'a b'"]),
    ("implicit-builder-table", "# no [builder.a] header\n[[builder.'a b'.node]]\ndriver='docker'\n"
     "endpoint='unix:///x'\n", 2, ["invalid builder name 'a b'"]),
    ("string-key", "[builder.a]\n[[builder.a.node]]\ndriver='docker'\nendpoint=5\n", 4,
     ["node key endpoint must be a string"]),
]


@pytest.mark.parametrize(("text", "line", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_errors_point_at_the_line(text: str, line: int, words: List[str]) -> None:
    with pytest.raises(BakeryError) as ei:
        parse_builders(text, "cfg/builders.toml")
    e = ei.value
    assert e.pos is not None and e.pos.file == "cfg/builders.toml"
    assert e.pos.line == line, (e.pos, e.message)
    for w in words:
        assert w in e.message


def test_add_appends_and_rejects_duplicates() -> None:
    b: Dict[str, Builder] = {}
    b = add_node(b, "f", Node(next_node_name(b, "f"), "docker", "unix:///a", ("linux/amd64",)))
    b = add_node(b, "f", Node(next_node_name(b, "f"), "docker", "tcp://h:2375", ("linux/arm64",)))
    assert [n.name for n in b["f"].nodes] == ["f0", "f1"]
    with pytest.raises(BakeryError, match="already has a node f0"):
        add_node(b, "g", Node("f0", "docker", "unix:///c"))
    with pytest.raises(BakeryError, match="unknown driver"):
        add_node(b, "f", Node("z", "podman", "unix:///c"))
    with pytest.raises(BakeryError, match="invalid builder name"):
        add_node(b, "a.b", Node("z", "docker", "unix:///c"))


def test_remove_node_then_builder() -> None:
    b = parse_builders(GOOD, "b.toml")
    b2 = remove(b, "fleet", "amd")
    assert [n.name for n in b2["fleet"].nodes] == ["fleet1"]
    assert "fleet" not in remove(b2, "fleet", "fleet1")  # its last node: the builder goes
    assert list(remove(b, "k8s")) == ["fleet"]
    with pytest.raises(BakeryError, match="no builder named nope"):
        remove(b, "nope")
    with pytest.raises(BakeryError, match="has no node nope"):
        remove(b, "fleet", "nope")


def test_config_path() -> None:
    assert config_path({"BAKERY_CONFIG_DIR": "/c", "XDG_CONFIG_HOME": "/x"}) == "/c/builders.toml"
    assert config_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == "/x/bakery/builders.toml"
    assert config_path({"HOME": "/h"}) == "/h/.config/bakery/builders.toml"


def test_save_and_load(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "sub", "builders.toml")
    assert load_builders(path) == {}
    b = parse_builders(GOOD, "b.toml")
    save_builders(path, b)
    assert load_builders(path) == b
    assert [f for f in os.listdir(os.path.dirname(path))] == ["builders.toml"]  # no temp left


def _bakery(tmp: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BAKERY_CONFIG_DIR=tmp)
    return subprocess.run([sys.executable, "-m", "bakery", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp)


def test_builder_commands(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    r = _bakery(tmp, "builder", "add", "fleet", "--driver", "docker", "--endpoint",
                "unix:///run/a.sock", "--platform", "linux/amd64")
    assert r.returncode == 0, r.stderr
    assert "created builder fleet with node fleet0" in r.stdout
    r = _bakery(tmp, "builder", "add", "fleet", "--driver", "buildkit", "--endpoint",
                "tcp://10.1.1.1:1234", "--platform", "linux/arm64,linux/arm/v7",
                "--node", "arm", "--tlscacert", "ca.pem")
    assert r.returncode == 0, r.stderr
    assert "appended node arm" in r.stdout
    r = _bakery(tmp, "builder", "ls")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[1].strip() == "fleet"
    assert lines[2].split() == ["\\_", "fleet0", "docker", "unix:///run/a.sock", "linux/amd64"]
    assert lines[3].split() == ["\\_", "arm", "buildkit", "tcp://10.1.1.1:1234", "linux/arm64,",
                                "linux/arm/v7"]
    r = _bakery(tmp, "builder", "inspect", "fleet")
    assert f"tlscacert: {os.path.join(tmp, 'ca.pem')}" in r.stdout
    assert load_builders(os.path.join(tmp, "builders.toml"))["fleet"].nodes[1].platforms == (
        "linux/arm64", "linux/arm/v7")

    r = _bakery(tmp, "builder", "add", "fleet", "--driver", "docker", "--endpoint", "http://x")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "endpoint 'http://x' is not one the docker driver can reach" in r.stderr
    r = _bakery(tmp, "builder", "rm", "fleet", "--node", "arm")
    assert r.returncode == 0, r.stderr
    r = _bakery(tmp, "builder", "inspect", "nope")
    assert r.returncode == 1 and "no builder named nope" in r.stderr and "builders: fleet" in r.stderr
    r = _bakery(tmp, "builder", "rm", "fleet")
    assert r.returncode == 0
    assert load_builders(os.path.join(tmp, "builders.toml")) == {}

    with open(os.path.join(tmp, "builders.toml"), "w") as fh:
        fh.write("[builder.x]\n[[builder.x.node]]\ndriver = 'docker'\nendpoint = 'kube-pod://p'\n")
    r = _bakery(tmp, "builder", "ls")
    assert r.returncode == 1
    assert f"{os.path.join(tmp, 'builders.toml')}:4:1: error:" in r.stderr
    assert "endpoint = 'kube-pod://p'" in r.stderr  # the source line is shown
    with open(os.path.join(tmp, "docker-bake.hcl"), "w") as fh:
        fh.write('target "default" {\n  dockerfile-inline = "FROM scratch"\n}\n')
    r = _bakery(tmp, "run", "--builder", "x")
    assert r.returncode == 1 and "builders.toml:4:1" in r.stderr, r.stderr
    r = _bakery(tmp, "run", "--builder", "x", "--driver", "docker")
    assert r.returncode == 1 and "--builder x and --driver docker both say who builds" in r.stderr
