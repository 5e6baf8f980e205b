"""The docker driver against a real engine: a private dockerd 20.10
(tests/integration/dockerd.py) building a two-target bake set through
DockerDriver, its busybox base pulled from a local registry
(tests/integration/registry.py) as in test_buildkit_compat.

Checked with ``docker image inspect`` and ``docker cp``: tags, labels and
build args took effect, the dependent target was built FROM the other's tag
(so after it), a file secret and an env secret reached their RUN steps, and
a failing build is a BakeryError carrying the build's tail.  Skipped (with
the reason) without root, docker.io, docker-registry or busybox-static.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from bakery.bakefile.buildflags import Secret
from bakery.bakefile.model import Target
from bakery.drivers.docker import LIMITS_MIN_ENGINE, DockerDriver
from bakery.errors import BakeryError
from tests.integration.dockerd import (
    DOCKER_BIN,
    Dockerd,
    dockerd_with_base,
)

pytestmark = pytest.mark.integration

BUILD_TIMEOUT = 300.0

BASE_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ARG FLAVOR=plain
ENV FLAVOR=${FLAVOR}
RUN --mount=type=secret,id=tok,required=true cp /run/secrets/tok /tok.copy
"""

APP_DOCKERFILE = """\
FROM bakery-it/base:1
ARG GREETING=unset
RUN --mount=type=secret,id=envtok,required=true cat /run/secrets/envtok > /envtok.copy \\
 && echo "$GREETING" > /greeting
LABEL from.dockerfile=yes
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Dockerd, str]]:
    with dockerd_with_base(str(tmp_path_factory.mktemp("driver-docker"))) as pair:
        yield pair


def _driver(d: Dockerd, cwd: str, **env: str) -> DockerDriver:
    assert DOCKER_BIN is not None
    return DockerDriver(d.host, docker=DOCKER_BIN, cwd=cwd, timeout=BUILD_TIMEOUT,
                        env={"DOCKER_CONFIG": os.path.join(d.root, "client"), **env})


def test_two_targets_with_args_labels_tags_secrets(engine: Tuple[Dockerd, str], tmp_path: Any) -> None:
    d, base_ref = engine
    proj = str(tmp_path)
    os.makedirs(os.path.join(proj, "base"))
    os.makedirs(os.path.join(proj, "app"))
    with open(os.path.join(proj, "base", "Dockerfile"), "w") as fh:
        fh.write(BASE_DOCKERFILE)
    with open(os.path.join(proj, "tok.txt"), "w") as fh:
        fh.write("file-secret-value\n")
    targets: Dict[str, Target] = {
        "base": Target("base", context="base", args={"BASE": base_ref, "FLAVOR": "fancy", "NOPE": None},
                       labels={"org.example.role": "base"}, tags=["bakery-it/base:1"],
                       secret=[Secret("tok", src="tok.txt")]),
        "app": Target("app", context="app", dockerfile_inline=APP_DOCKERFILE, depends_on=["base"],
                      args={"GREETING": "hello bake"},
                      labels={"org.example.role": "app", "org.example.version": "2"},
                      tags=["bakery-it/app:1", "bakery-it/app:latest"],
                      secret=[Secret("envtok", env="BAKERY_IT_TOKEN")]),
    }
    lines: List[Tuple[str, str]] = []
    ids = _driver(d, proj, BAKERY_IT_TOKEN="env-secret-value").run(
        targets, ["app"], 2, lambda t, line: lines.append((t, line)))

    assert set(ids) == {"base", "app"}
    assert all(v.startswith("sha256:") for v in ids.values()), ids
    assert {t for t, _ in lines} == {"base", "app"}

    info = {name: json.loads(d.docker("image", "inspect", name).stdout)[0]
            for name in ("bakery-it/base:1", "bakery-it/app:1")}
    base, app = info["bakery-it/base:1"], info["bakery-it/app:1"]
    assert base["Id"] == ids["base"] and app["Id"] == ids["app"]
    assert set(app["RepoTags"]) == {"bakery-it/app:1", "bakery-it/app:latest"}
    assert base["Config"]["Labels"]["org.example.role"] == "base"
    assert app["Config"]["Labels"] == {**(base["Config"]["Labels"] or {}), "org.example.role": "app",
                                       "org.example.version": "2", "from.dockerfile": "yes"}
    # FLAVOR came from base's build args; app is FROM base's tag, so built after it
    assert "FLAVOR=fancy" in base["Config"]["Env"]
    assert "FLAVOR=fancy" in app["Config"]["Env"]
    assert app["RootFS"]["Layers"][:len(base["RootFS"]["Layers"])] == base["RootFS"]["Layers"]

    assert d.read_file("bakery-it/app:1", "/greeting") == "hello bake\n"
    assert d.read_file("bakery-it/base:1", "/tok.copy") == "file-secret-value\n"
    assert d.read_file("bakery-it/app:1", "/envtok.copy") == "env-secret-value"


def test_failed_build_is_an_error_with_its_tail(engine: Tuple[Dockerd, str], tmp_path: Any) -> None:
    d, base_ref = engine
    proj = str(tmp_path)
    t = Target("broken", context=".", args={"BASE": base_ref},
               dockerfile_inline="ARG BASE\nFROM ${BASE}\nRUN echo about-to-fail && exit 7\n")
    with pytest.raises(BakeryError) as ei:
        _driver(d, proj).run({"broken": t}, ["broken"], 1, None)
    msg = str(ei.value)
    assert msg.startswith("target broken: docker build exited 1"), msg
    assert "about-to-fail" in msg
    assert "exit code: 7" in msg or "exit 7" in msg



def test_shm_size_and_ulimits_need_an_engine_that_applies_them(engine: Tuple[Dockerd, str],
                                                                 tmp_path: Any) -> None:
    d, base_ref = engine
    t = Target("limits", context=".", args={"BASE": base_ref}, tags=["bakery-it/limits:1"],
               shm_size="128m", ulimits=["nofile=1024:2048"],
               dockerfile_inline='ARG BASE\nFROM ${BASE}\nRUN echo "$(ulimit -Sn):$(ulimit -Hn)" > /limits '
                                 '&& grep " /dev/shm " /proc/mounts > /shm\n')
    driver = _driver(d, str(tmp_path))
    version = driver._server_version()
    assert version, "docker version gave no server version"
    if int(version.split(".")[0]) < LIMITS_MIN_ENGINE:
        # Engine 20.10's BuildKit builder drops both flags silently (measured: the
        # step saw nofile 20000:20000 and a 64 MiB /dev/shm): refused, not ignored
        with pytest.raises(BakeryError, match=f"target limits: shm-size and ulimits are ignored by "
                                              f"Docker Engine {re.escape(version)}"):
            driver.run({"limits": t}, ["limits"], 1, None)
        # without them the same target builds
        plain = dataclasses.replace(t, shm_size=None, ulimits=None)
        driver.run({"limits": plain}, ["limits"], 1, None)
        assert "size=65536k" in d.read_file("bakery-it/limits:1", "/shm")
        return
    driver.run({"limits": t}, ["limits"], 1, None)
    assert d.read_file("bakery-it/limits:1", "/limits") == "1024:2048\n"
    assert "size=131072k" in d.read_file("bakery-it/limits:1", "/shm")
