"""Named contexts through the docker driver, against a real engine (a private
dockerd 20.10 from tests/integration/dockerd.py; the busybox base image in a
local registry, tests/integration/registry.py).  Docker 20.10 has no
``--build-context``: the driver builds each context into an image under a
temporary tag and rewrites the dependent's Dockerfile to name it
(bakery.drivers.rewrite).

* examples/monorepo through ``bakery run --driver docker`` (linux/amd64,
  outputs into the engine): api and worker carry the files of the ``base``
  target (its named context), their own files, labels and entrypoints; web
  (no contexts) is built too; no temporary ``bakery-ctx/`` tag is left.
* DockerDriver with a ``target:`` context used by FROM, COPY --from and
  RUN --mount from=, a local-directory context and a ``docker-image://``
  context; a failing build reports the user's Dockerfile line and still
  removes the temporary tags.

Skipped (with the reason) without root, docker.io, docker-registry or
busybox-static.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from bakery.bakefile.model import Target
from bakery.drivers.docker import DockerDriver
from bakery.errors import BakeryError
from tests.integration.dockerd import (
    DOCKER_BIN,
    HOST_ARCH,
    Dockerd,
    dockerd_with_base,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.integration

TIMEOUT = 600


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Dockerd, str]]:
    with dockerd_with_base(str(tmp_path_factory.mktemp("docker-contexts"))) as pair:
        yield pair


def _inspect(d: Dockerd, image: str) -> Dict[str, Any]:
    return dict(json.loads(d.docker("image", "inspect", image).stdout)[0])


def _temp_tags(d: Dockerd) -> List[str]:
    out = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return [t for t in out if t.startswith("bakery-ctx/")]


def test_monorepo_through_the_docker_driver(engine: Tuple[Dockerd, str], tmp_path: Any) -> None:
    d, base_ref = engine
    proj = os.path.join(str(tmp_path), "monorepo")
    shutil.copytree(os.path.join(ROOT, "examples", "monorepo"), proj,
                    ignore=shutil.ignore_patterns("out"))  # what run-example.sh wrote
    env = dict(os.environ, BAKERY_DOCKER=DOCKER_BIN or "docker", BASE_IMAGE=base_ref,
               VERSION="1.2", DOCKER_CONFIG=os.path.join(d.root, "client"),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--driver", "docker",
                        "--docker-host", d.host, "--set", f"*.platform=linux/{HOST_ARCH}",
                        "--set", "*.output=type=docker"],
                       cwd=proj, env=env, text=True, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-4000:]
    reg = "127.0.0.1:5000/bakery-example"
    for name in ("api", "worker", "web-plain", "web-debug"):
        assert f"{name}: sha256:" in r.stdout, r.stdout
    # base was built (as the context of api and worker), before them
    log = r.stderr.splitlines()
    first = {t: next(i for i, line in enumerate(log) if line.startswith(f"[{t}] "))
             for t in ("base", "api", "worker")}
    last_base = max(i for i, line in enumerate(log) if line.startswith("[base] "))
    assert last_base < first["api"] and last_base < first["worker"], r.stderr[-4000:]

    for svc in ("api", "worker"):
        img = f"{reg}/{svc}:1.2"
        info = _inspect(d, img)
        assert set(info["RepoTags"]) == {img, f"{reg}/{svc}:latest"}
        assert info["Config"]["Labels"]["org.opencontainers.image.version"] == "1.2"
        assert info["Config"]["Entrypoint"] == [f"/app/{svc}/run.sh"]
        assert info["Architecture"] == HOST_ARCH
        # from the base target: its RUN and its COPY
        assert d.read_file(img, "/etc/example/layer") == "base\n"
        with open(os.path.join(proj, "base", "motd")) as fh:
            assert d.read_file(img, "/etc/motd") == fh.read()
        # its own steps
        assert d.read_file(img, f"/app/{svc}/VERSION") == f"{svc} 1.2\n"
        with open(os.path.join(proj, "services", svc, "run.sh")) as fh:
            assert d.read_file(img, f"/app/{svc}/run.sh") == fh.read()
    api = _inspect(d, f"{reg}/api:1.2")
    worker = _inspect(d, f"{reg}/worker:1.2")
    # one base image under both: all but their own two layers (COPY, RUN) are shared
    la, lw = api["RootFS"]["Layers"], worker["RootFS"]["Layers"]
    assert len(la) == len(lw) >= 4 and la[:-2] == lw[:-2] and la[-2:] != lw[-2:]
    for flavor in ("plain", "debug"):
        html = d.read_file(f"{reg}/web-{flavor}:1.2", "/www/index.html")
        assert flavor in html
    assert _temp_tags(d) == []


BASE = """\
ARG BASE
FROM ${BASE}
RUN echo from-base > /base.txt
"""

APP = """\
# a comment, so that lines count
FROM base AS build
RUN cat /base.txt > /seen.txt
COPY --from=assets /hello.txt /hello.txt
FROM bb
COPY --from=build /seen.txt /hello.txt /
COPY --from=base /base.txt /copied.txt
RUN --mount=type=bind,from=base,target=/m cat /m/base.txt > /mounted.txt
"""


def test_target_local_and_image_contexts(engine: Tuple[Dockerd, str], tmp_path: Any) -> None:
    d, base_ref = engine
    proj = str(tmp_path)
    os.makedirs(os.path.join(proj, "assets"))
    with open(os.path.join(proj, "assets", "hello.txt"), "w") as fh:
        fh.write("hello from a directory\n")
    os.makedirs(os.path.join(proj, "app"))
    with open(os.path.join(proj, "app", "Dockerfile"), "w") as fh:
        fh.write(APP)
    targets = {
        "base": Target("base", dockerfile_inline=BASE, args={"BASE": base_ref}),
        "app": Target("app", context="app", tags=["bakery-it/ctx-app:1"],
                      contexts={"base": "target:base", "assets": "assets",
                                "bb": f"docker-image://{base_ref}"}),
    }
    assert DOCKER_BIN is not None
    drv = DockerDriver(d.host, docker=DOCKER_BIN, cwd=proj, timeout=TIMEOUT,
                       env={"DOCKER_CONFIG": os.path.join(d.root, "client")})
    lines: List[Tuple[str, str]] = []
    ids = drv.run(targets, ["app"], 2, lambda t, line: lines.append((t, line)))
    assert set(ids) == {"base", "app"}
    assert {t for t, _ in lines} == {"base", "app", "app:context:assets"}
    img = "bakery-it/ctx-app:1"
    assert d.read_file(img, "/seen.txt") == "from-base\n"
    assert d.read_file(img, "/hello.txt") == "hello from a directory\n"
    assert d.read_file(img, "/copied.txt") == "from-base\n"
    assert d.read_file(img, "/mounted.txt") == "from-base\n"
    assert _temp_tags(d) == []

    # a failing build: the engine's error names the user's Dockerfile line (the rewrite keeps
    # line numbers), the temporary tags still go
    with open(os.path.join(proj, "app", "Dockerfile"), "a") as fh:
        fh.write("BADSTEP echo bad-step\n")
    with pytest.raises(BakeryError) as ei:
        drv.run(targets, ["app"], 2, None)
    msg = str(ei.value)
    assert msg.startswith("target app: docker build exited 1"), msg
    assert "line 9" in msg, msg
    assert "badstep" in msg.lower(), msg
    assert _temp_tags(d) == []
