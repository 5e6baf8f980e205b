"""Build a busybox base image from local busybox-static binaries and push it.

    python3 examples/tools/busybox_image.py [--version V] REF [PLATFORM=BUSYBOX_PATH ...]

e.g. ``127.0.0.1:5000/bakery/busybox:latest linux/amd64=/usr/bin/busybox
linux/arm64=/tmp/arm64/bin/busybox``.  Tests and the example use it: no
image is ever pulled from the internet.  Several platforms give an index.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile

from bakery.oci.image import ContainerConfig, add_layer, build_image, build_index
from bakery.oci.registry import RegistryClient
from bakery.oci.store import BlobStore

ETC = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
}


def applets(busybox: str) -> list:
    try:
        out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
        return [a for a in out.split() if a and a != "busybox"]
    except (OSError, subprocess.CalledProcessError):
        # a foreign-architecture binary cannot run here: the common applets
        return ["sh", "ls", "cat", "echo", "mkdir", "chmod", "sed", "uname", "env", "rm", "cp",
                "mv", "touch", "id", "sleep", "true", "false", "grep", "test", "[", "httpd", "printf"]


def rootfs_tar(busybox: str, path: str, version: str = "1") -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        def add_dir(name: str, mode: int = 0o755) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, 0
            tf.addfile(ti)
        for d in ("bin", "etc", "root", "usr", "usr/bin"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        with open(busybox, "rb") as fh:
            data = fh.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode, ti.mtime = len(data), 0o755, 0
        tf.addfile(ti, io.BytesIO(data))
        for a in applets(busybox):
            ti = tarfile.TarInfo(f"bin/{a}")
            ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, "busybox", 0o777, 0
            tf.addfile(ti)
        for name, content in {**ETC, "etc/base-version": version.encode() + b"\n"}.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(content), 0o644, 0
            tf.addfile(ti, io.BytesIO(content))


def main() -> None:
    args = sys.argv[1:]
    version = "1"
    if args[:1] == ["--version"]:
        version, args = args[1], args[2:]
    ref, specs = args[0], args[1:] or ["linux/amd64=/usr/bin/busybox"]
    with tempfile.TemporaryDirectory() as tmp:
        store = BlobStore(os.path.join(tmp, "blobs"))
        images = []
        for spec in specs:
            plat, _, path = spec.partition("=")
            tar = os.path.join(tmp, plat.replace("/", "_") + ".tar")
            rootfs_tar(path, tar, version)
            layer = add_layer(store, tar, created_by="busybox-static from Debian")
            cfg = ContainerConfig(env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                  cmd=["sh"])
            images.append(build_image(store, [layer], cfg, plat, created=0).descriptor)
        root = images[0] if len(images) == 1 else build_index(store, images)
        RegistryClient().push(store, root, ref)
        print(f"pushed {ref} ({', '.join(s.partition('=')[0] for s in specs)})")


if __name__ == "__main__":
    main()
