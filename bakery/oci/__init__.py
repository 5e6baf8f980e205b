"""OCI images in and out: build, write (OCI layout, Docker archive), push, pull.

* :mod:`bakery.oci.media` - media types, descriptors, platforms, canonical JSON
* :mod:`bakery.oci.store` - the content-addressed blob store everything shares
* :mod:`bakery.oci.image` - layers, image configs, manifests and indexes
* :mod:`bakery.oci.layout` - OCI image layouts (dir or tar) and Docker archives
* :mod:`bakery.oci.reference` - image references (docker.io normalisation)
* :mod:`bakery.oci.registry` - the registry client (pull, push, auth)
* :mod:`bakery.oci.auth` - ``bakery login``/``logout``: Docker's config.json

Example (a two-platform image, pushed and written as an OCI layout tar)::

    store = BlobStore(os.path.join(cache, "blobs"))
    layer = add_layer(store, "rootfs.tar")
    index = build_index(store, [build_image(store, [layer], platform=p)
                                for p in ("linux/amd64", "linux/arm64")])
    RegistryClient().push(store, index, "127.0.0.1:5000/app:v1")
    write_oci_layout(store, index, "app.tar", names=["app:v1"])
"""

from __future__ import annotations

from bakery.oci.image import (
    ContainerConfig,
    Healthcheck,
    History,
    Image,
    Layer,
    add_layer,
    build_image,
    build_index,
)
from bakery.oci.layout import open_layout, write_docker_archive, write_oci_layout
from bakery.oci.media import (
    Descriptor,
    Platform,
    canonical_json,
    normalize_platform,
    parse_platform,
)
from bakery.oci.reference import Reference, parse_reference
from bakery.oci.registry import Credentials, RegistryClient, RegistryOptions
from bakery.oci.store import BlobStore

__all__ = [
    "BlobStore",
    "ContainerConfig",
    "Credentials",
    "Descriptor",
    "Healthcheck",
    "History",
    "Image",
    "Layer",
    "Platform",
    "Reference",
    "RegistryClient",
    "RegistryOptions",
    "add_layer",
    "build_image",
    "build_index",
    "canonical_json",
    "normalize_platform",
    "open_layout",
    "parse_platform",
    "parse_reference",
    "write_docker_archive",
    "write_oci_layout",
]
