"""Generate a large bake file for the plan benchmark.

``python benchmarks/gen_bake.py OUT.hcl [--targets 1000]`` writes a
docker-bake.hcl with variables, a function, inherits chains, matrix targets
and groups: about 213 KB for 1,000 targets, every one printed by
``bake --print``.  The same generator feeds the HCL parser speed check.
"""

from __future__ import annotations

import argparse
from typing import List


def generate(n_targets: int = 1000) -> str:
    out: List[str] = []
    w = out.append
    for i in range(20):
        w(f'variable "VAR_{i}" {{\n  description = "variable number {i}"\n  default = "value-{i}"\n}}\n')
    w('variable "REGISTRY" {\n  default = "registry.example.com/org"\n}\n')
    w('variable "VERSION" {\n  default = "1.2.3"\n}\n')
    w('variable "PLATFORMS" {\n  type = list(string)\n  default = ["linux/amd64", "linux/arm64"]\n}\n')
    w('function "tag" {\n  params = [name, suffix]\n  result = "${REGISTRY}/${name}:${VERSION}-${suffix}"\n}\n')
    n_bases = 10
    for b in range(n_bases):
        w(
            f'target "_base{b}" {{\n'
            f'  context = "services/base{b}"\n'
            f'  args = {{\n    BASE_VERSION = "${{VERSION}}"\n    VAR = VAR_{b}\n  }}\n'
            f'  labels = {{\n    "org.opencontainers.image.vendor" = "bench"\n  }}\n'
            f"  platforms = PLATFORMS\n}}\n"
        )
    n_matrix = 5
    per_matrix = 12
    n_plain = n_targets - n_matrix * per_matrix
    names: List[str] = []
    for i in range(n_plain):
        name = f"svc{i}"
        names.append(name)
        b = i % n_bases
        w(
            f'target "{name}" {{\n'
            f'  inherits = ["_base{b}"]\n'
            f'  dockerfile = "Dockerfile.{i % 7}"\n'
            f'  args = {{\n    SERVICE = "{name}"\n    INDEX = {i}\n    FLAG = VAR_{i % 20}\n  }}\n'
            f'  tags = [tag("{name}", "a"), "${{REGISTRY}}/{name}:latest"]\n'
            f"}}\n"
        )
    for m in range(n_matrix):
        w(
            f'target "mx{m}" {{\n'
            f'  name = "mx{m}-${{os}}-${{ver}}"\n'
            f'  matrix = {{\n    os = ["alpine", "debian", "ubuntu"]\n    ver = ["1", "2", "3", "4"]\n  }}\n'
            f'  inherits = ["_base{m}"]\n'
            f'  args = {{\n    OS = os\n    VER = ver\n  }}\n'
            f'  tags = ["${{REGISTRY}}/mx{m}:${{os}}-${{ver}}"]\n'
            f"}}\n"
        )
        names.append(f"mx{m}")
    w('group "default" {\n  targets = [\n')
    for name in names:
        w(f'    "{name}",\n')
    w("  ]\n}\n")
    return "".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--targets", type=int, default=1000)
    a = p.parse_args()
    text = generate(a.targets)
    with open(a.out, "w") as fh:
        fh.write(text)
    print(f"{a.out}: {len(text)} bytes, {a.targets} targets")


if __name__ == "__main__":
    main()
