"""Build drivers: run resolved targets on an external builder.

* :mod:`bakery.drivers.docker`: a Docker engine's BuildKit through the
  ``docker build`` CLI (Docker 20.10, no buildx).
* :mod:`bakery.drivers.buildkit`: a remote ``buildkitd`` through ``buildctl``.
* :mod:`bakery.drivers.builders`: named builders (nodes, endpoints, platforms)
  in the user's ``builders.toml``.
* :mod:`bakery.drivers.schedule`: which node builds what, when (pure).
* :mod:`bakery.drivers.multinode`: :class:`BuilderDriver`, a builder's nodes
  at work, multi-platform targets split per platform and joined into one index.
"""

from __future__ import annotations

from bakery.drivers.docker import BuildCommand, DockerDriver, check_target, docker_build_args

__all__ = ["BuildCommand", "DockerDriver", "check_target", "docker_build_args"]
