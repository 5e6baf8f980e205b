"""Read back what an OCI layout tar (``output type=oci``) holds.

Example::

    layers = image_layers("out/app.tar")       # bottom first
    ti, data = layers[-1]["etc/hello"]          # (TarInfo, content)
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Dict, List, Optional, Tuple

Layer = Dict[str, Tuple[tarfile.TarInfo, bytes]]


def image_layers(path: str, arch: Optional[str] = None) -> List[Layer]:
    """The layers (bottom first) of the image in an OCI layout tar (of
    ``arch`` when it holds an index): name (without ``./``) -> (header,
    content)."""
    with tarfile.open(path) as outer:

        def blob(digest: str) -> bytes:
            f = outer.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert f is not None
            return f.read()

        f = outer.extractfile("index.json")
        assert f is not None
        doc = json.loads(blob(json.loads(f.read())["manifests"][0]["digest"]))
        while "manifests" in doc:
            wanted = [m for m in doc["manifests"]
                      if arch is None or (m.get("platform") or {}).get("architecture") == arch]
            assert wanted, f"no {arch} image in {path}"
            doc = json.loads(blob(wanted[0]["digest"]))
        out: List[Layer] = []
        for desc in doc["layers"]:
            layer: Layer = {}
            with tarfile.open(fileobj=io.BytesIO(blob(desc["digest"])), mode="r:*") as lt:
                for ti in lt.getmembers():
                    data = b""
                    if ti.isreg():
                        g = lt.extractfile(ti)
                        data = g.read() if g is not None else b""
                    name = ti.name[2:] if ti.name.startswith("./") else ti.name
                    layer[name.strip("/")] = (ti, data)
            out.append(layer)
        return out
