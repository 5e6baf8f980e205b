"""Build drivers: run resolved targets on an external builder.

* :mod:`bakery.drivers.docker`: a Docker engine's BuildKit through the
  ``docker build`` CLI (Docker 20.10, no buildx).
"""

from __future__ import annotations

from bakery.drivers.docker import BuildCommand, DockerDriver, check_target, docker_build_args

__all__ = ["BuildCommand", "DockerDriver", "check_target", "docker_build_args"]
