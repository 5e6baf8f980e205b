"""bakery.export: output entries parsed and checked, metadata, history (pure parts)."""

from __future__ import annotations

import json
import os
from typing import Any, List

import pytest

from bakery.bakefile.buildflags import ExportEntry
from bakery.bakefile.model import Target
from bakery.errors import BakeryError
from bakery.export.cacheonly import cache_only
from bakery.export.image import BuiltImage, image_history
from bakery.export.local import platform_dir
from bakery.export.metadata import image_metadata, render_metadata, write_metadata_file
from bakery.export.spec import (
    Annotation,
    annotations_for,
    apply_shorthands,
    parse_output,
    parse_outputs,
    parse_target_annotations,
)
from bakery.oci.media import OCI_INDEX, OCI_MANIFEST, Descriptor, parse_platform


def out(text: str, tags: List[str] = (), platforms: int = 1, anns: List[Annotation] = ()):  # type: ignore[assignment]
    return parse_output("app", ExportEntry.from_text(text), tuple(tags), platforms, anns)


def err(text: str, **kw: Any) -> BakeryError:
    with pytest.raises(BakeryError) as e:
        out(text, **kw)
    return e.value


# -- types and destinations -------------------------------------------------------------


def test_registry_pushes_with_the_target_tags() -> None:
    s = out("type=registry", tags=["r.example/app:1", "r.example/app:latest"])
    assert (s.type, s.push, s.names) == ("registry", True, ("r.example/app:1", "r.example/app:latest"))
    assert s.image.compression == "gzip" and s.image.oci and not s.image.force


def test_name_attribute_wins_over_tags() -> None:
    s = out('type=image,"name=a/b:1,a/b:2",push=true', tags=["x/y:z"])
    assert s.names == ("a/b:1", "a/b:2") and s.push


def test_unknown_type_is_an_error_listing_the_types() -> None:
    e = err("type=ocii,dest=x")
    assert "unknown output type 'ocii'" in e.message and "target app" in e.message
    assert e.hint is not None and "oci" in e.hint and "cacheonly" in e.hint


@pytest.mark.parametrize("typ", ["local", "tar", "oci"])
def test_missing_dest(typ: str) -> None:
    e = err(f"type={typ}")
    assert f"type={typ} needs dest=PATH" in e.message


def test_dest_stdout_is_refused_clearly() -> None:
    assert "standard output" in err("-").message


def test_docker_several_platforms_is_the_docker_error() -> None:
    e = err("type=docker,dest=x.tar", platforms=2)
    assert "docker exporter does not currently support exporting manifest lists" in e.message
    assert e.hint is not None and "type=oci" in e.hint
    assert out("type=docker,dest=x.tar", platforms=1).type == "docker"


def test_image_output_needs_a_name() -> None:
    assert "needs a name" in err("type=image,push=true").message
    assert "needs a name" in err("type=registry").message
    assert out("type=image").names == ()  # kept in the store, unnamed


def test_image_names_are_checked() -> None:
    e = err("type=registry,name=Bad/UPPER:case")
    assert "invalid image name 'Bad/UPPER:case'" in e.message
    assert "invalid image name" in err("type=oci,dest=x.tar", tags=["a b"]).message


def test_registry_cannot_be_told_not_to_push() -> None:
    assert "always pushes" in err("type=registry,name=a/b,push=false").message


def test_unknown_attribute_names_the_accepted_ones() -> None:
    e = err("type=oci,dest=x.tar,compresion=zstd")
    assert "unknown attribute 'compresion' for type=oci" in e.message
    assert e.hint is not None and "compression" in e.hint
    assert "takes no attributes" in (err("type=cacheonly,mode=max").hint or "")


def test_buildkit_only_attributes_are_accepted() -> None:
    s = out("type=image,name=a/b,store=false,unpack=true,rewrite-timestamp=true")
    assert s.type == "image" and not s.push


@pytest.mark.parametrize("attr", ["push=yes", "tar=maybe", "force-compression=2", "oci-mediatypes=on"])
def test_booleans_are_go_booleans(attr: str) -> None:
    e = err(f"type=oci,dest=x.tar,name=a/b,{attr}")
    assert "is not a boolean" in e.message
    assert out(f"type=oci,dest=x.tar,{attr.split('=')[0]}=TRUE").type == "oci"


# -- compression and media types --------------------------------------------------------


def test_zstd_without_the_module_fails_before_the_build(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import builtins

    real = builtins.__import__

    def fake(name, *a, **kw):  # type: ignore[no-untyped-def]
        if name == "zstandard":
            raise ImportError("no zstandard")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    e = err("type=oci,dest=x.tar,compression=zstd")
    assert "target app" in e.message and "zstandard" in e.message and "gzip" in (e.hint or "")


def test_compression_attributes() -> None:
    pytest.importorskip("zstandard")
    s = out("type=oci,dest=x.tar,compression=zstd,compression-level=19,force-compression=true")
    assert (s.image.compression, s.image.level, s.image.force) == ("zstd", 19, True)
    assert out("type=oci,dest=x,compression=uncompressed,compression-level=5").image.level is None


@pytest.mark.parametrize("attrs,msg", [
    ("compression=brotli", "unknown compression 'brotli'"),
    ("compression=gzip,compression-level=10", "out of range for gzip"),
    ("compression=zstd,compression-level=23", "out of range for zstd"),
    ("compression-level=high", "is not an integer"),
])
def test_bad_compression(attrs: str, msg: str) -> None:
    if "zstd" in attrs:
        pytest.importorskip("zstandard")
    assert msg in err(f"type=oci,dest=x.tar,{attrs}").message


def test_media_type_defaults_follow_buildkit() -> None:
    assert out("type=oci,dest=x").image.oci
    assert not out("type=docker,dest=x").image.oci
    assert not out("type=image,name=a/b,oci-mediatypes=false").image.oci
    assert out("type=docker,dest=x,oci-mediatypes=true").image.oci


def test_options_are_hashable_and_equal_outputs_share_them() -> None:
    a = out("type=oci,dest=x.tar,compression=gzip,compression-level=9")
    b = out("type=registry,name=a/b,compression-level=9")
    assert a.image == b.image and hash(a.image) == hash(b.image)


# -- annotations ------------------------------------------------------------------------


def test_annotation_attributes_as_buildkit_reads_them() -> None:
    s = out("type=oci,dest=x,annotation.a=1,annotation-manifest[linux/arm64].b=2,"
            "annotation-index.c=3,annotation-index-descriptor.d=4,annotation-manifest-descriptor.e=5",
            platforms=2)
    amd, arm = parse_platform("linux/amd64"), parse_platform("linux/arm64")
    assert annotations_for(s.image, "manifest", amd) == {"a": "1"}
    assert annotations_for(s.image, "manifest", arm) == {"a": "1", "b": "2"}
    assert annotations_for(s.image, "index") == {"c": "3"}
    assert annotations_for(s.image, "index-descriptor") == {"d": "4"}
    assert annotations_for(s.image, "manifest-descriptor", amd) == {"e": "5"}


def test_bad_annotation_attributes() -> None:
    assert "unknown annotation type 'layer'" in err("type=oci,dest=x,annotation-layer.k=v").message
    assert "single platform" in err("type=oci,dest=x,annotation-index.k=v").message
    e = err("type=docker,dest=x,annotation.k=v")
    assert "annotations need OCI media types" in e.message and "oci-mediatypes=true" in (e.hint or "")


def test_target_annotations_in_buildx_syntax() -> None:
    anns = parse_target_annotations("app", [
        "org.opencontainers.image.title=app",
        "index,manifest:org.opencontainers.image.description=An app",
        "manifest[linux/arm64]:arch=arm",
        "",
    ])
    assert [(a.type, str(a.platform) if a.platform else None, a.key) for a in anns] == [
        ("manifest", None, "org.opencontainers.image.title"),
        ("index", None, "org.opencontainers.image.description"),
        ("manifest", None, "org.opencontainers.image.description"),
        ("manifest", "linux/arm64", "arch"),
    ]
    assert anns[3].attr() == "annotation-manifest[linux/arm64].arch"
    assert anns[0].attr() == "annotation.org.opencontainers.image.title"
    assert anns[1].attr() == "annotation-index.org.opencontainers.image.description"


@pytest.mark.parametrize("text,msg", [
    ("novalue", "expected key=value"),
    ("layer:k=v", "unknown annotation type 'layer'"),
    ("manifest[linux/amd64:k=v", "invalid annotation type"),
])
def test_bad_target_annotations(text: str, msg: str) -> None:
    with pytest.raises(BakeryError) as e:
        parse_target_annotations("app", [text])
    assert msg in e.value.message


def test_target_annotations_reach_image_outputs_and_win() -> None:
    t = Target("app", tags=["a/b:1"], annotations=["manifest:k=target"],
               output=[ExportEntry.from_text("type=oci,dest=x,annotation.k=output"),
                       ExportEntry.from_text("type=local,dest=d")])
    oci, local = parse_outputs(t, 1)
    assert annotations_for(oci.image, "manifest") == {"k": "target"}
    assert local.image.annotations == ()


# -- --push / --load --------------------------------------------------------------------


def test_push_shorthand() -> None:
    entries = apply_shorthands([ExportEntry.from_text("type=image,name=a/b"),
                                ExportEntry.from_text("type=oci,dest=x")], push=True)
    assert [(e.type, e.attrs.get("push")) for e in entries] == [("image", "true"), ("oci", None)]
    added = apply_shorthands([ExportEntry.from_text("type=oci,dest=x")], push=True)
    assert [(e.type, e.attrs.get("push")) for e in added] == [("oci", None), ("image", "true")]
    assert [e.type for e in apply_shorthands([], load=True)] == ["docker"]
    assert len(apply_shorthands([ExportEntry("docker", {})], load=True)) == 1


def test_shorthands_skip_linked_targets() -> None:
    t = Target("base", output=[ExportEntry.from_text("type=cacheonly")], linked=True)
    assert [s.type for s in parse_outputs(t, 1, push=True, load=True)] == ["cacheonly"]


def test_push_false_keeps_registry_outputs_local() -> None:
    t = Target("app", tags=["a/b:1"], output=[ExportEntry.from_text("type=registry")])
    (s,) = parse_outputs(t, 1, push=False)
    assert (s.type, s.push) == ("image", False)


def test_cache_only_and_platform_dirs() -> None:
    assert cache_only([out("type=cacheonly")]) and not cache_only([])
    assert not cache_only([out("type=cacheonly"), out("type=local,dest=d")])
    assert platform_dir(parse_platform("linux/arm/v7")) == "linux_arm_v7"
    assert out("type=local,dest=d,platform-split=false").platform_split is False


# -- history ----------------------------------------------------------------------------


BASE = {"history": [{"created": "2030-01-01T00:00:00.123456789Z", "created_by": "ADD rootfs"},
                    {"created": "2001-01-01T00:00:00Z", "created_by": "CMD", "empty_layer": True}]}


def test_history_entries_get_created_times() -> None:
    h = image_history([("RUN make", False), ("ENV A=1", True)], BASE, 2, "2026-11-28T00:00:00Z", None)
    assert h is not None
    assert [x.created for x in h] == ["2030-01-01T00:00:00.123456789Z", "2001-01-01T00:00:00Z",
                                      "2026-11-28T00:00:00Z", "2026-11-28T00:00:00Z"]
    assert h[2].comment == "buildkit.dockerfile.v0" and h[3].empty_layer


def test_history_clamped_to_source_date_epoch() -> None:
    h = image_history([("RUN make", False)], BASE, 2, "2009-02-13T23:31:30Z", 1234567890)
    assert h is not None
    # later than the epoch: clamped; earlier: kept
    assert [x.created for x in h] == ["2009-02-13T23:31:30Z", "2001-01-01T00:00:00Z", "2009-02-13T23:31:30Z"]


def test_history_that_does_not_match_the_layers_is_dropped() -> None:
    assert image_history([("RUN true", True)], None, 1, "2026-11-28T00:00:00Z", None) is None


# -- metadata ---------------------------------------------------------------------------

MAN = Descriptor(OCI_MANIFEST, "sha256:" + "a" * 64, 500, platform=parse_platform("linux/amd64"))


def test_metadata_of_a_single_platform_image() -> None:
    built = BuiltImage(MAN, (MAN,), "sha256:" + "c" * 64, "2026-11-28T00:00:00Z")
    m = image_metadata(built, ["r/app:1", "r/app:latest"])
    assert m == {
        "containerimage.config.digest": "sha256:" + "c" * 64,
        "containerimage.descriptor": {
            "annotations": {"config.digest": "sha256:" + "c" * 64,
                            "org.opencontainers.image.created": "2026-11-28T00:00:00Z"},
            "digest": MAN.digest, "mediaType": OCI_MANIFEST, "size": 500},
        "containerimage.digest": MAN.digest,
        "image.name": "r/app:1,r/app:latest",
    }


def test_metadata_of_an_index_and_of_no_image() -> None:
    idx = Descriptor(OCI_INDEX, "sha256:" + "b" * 64, 700)
    m = image_metadata(BuiltImage(idx, (MAN, MAN), "", "x"))
    assert m == {"containerimage.descriptor": {"digest": idx.digest, "mediaType": OCI_INDEX, "size": 700},
                 "containerimage.digest": idx.digest}
    assert image_metadata(None) == {}


def test_metadata_file_is_sorted_indented_and_atomic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = {"b": {"z": 1, "a": 2}, "a": {}}
    text = render_metadata(doc)
    assert text == '{\n  "a": {},\n  "b": {\n    "a": 2,\n    "z": 1\n  }\n}\n'
    path = tmp_path / "meta.json"
    path.write_text("old")
    write_metadata_file(str(path), doc)
    assert json.loads(path.read_text()) == doc
    assert os.listdir(tmp_path) == ["meta.json"]  # no temporary left behind
    with pytest.raises(BakeryError) as e:
        write_metadata_file(str(tmp_path / "missing" / "meta.json"), doc)
    assert "is not a directory" in e.value.message


# -- rewrite-timestamp ------------------------------------------------------------------


def _tar(path: str) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, mtime, data in (("old", 100, b"a"), ("new", 2_000_000_000.5, b"bb"), (".wh.gone", 3e9, b"")):
            ti = tarfile.TarInfo(name)
            ti.mtime = mtime  # type: ignore[assignment]
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        d = tarfile.TarInfo("dir")
        d.type, d.mtime = tarfile.DIRTYPE, 2_000_000_000
        tf.addfile(d)
        ln = tarfile.TarInfo("link")
        ln.type, ln.linkname, ln.mtime = tarfile.LNKTYPE, "new", 2_000_000_000
        tf.addfile(ln)


def test_clamp_layer_times(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tarfile

    from bakery.export.image import clamp_layer_times

    src, dest = str(tmp_path / "in.tar"), str(tmp_path / "out.tar")
    _tar(src)
    assert clamp_layer_times(src, dest, 1_000_000_000)
    with tarfile.open(dest) as tf:
        got = {m.name: (m.mtime, m.type, m.linkname) for m in tf.getmembers()}
        assert tf.extractfile("new").read() == b"bb"  # type: ignore[union-attr]
        assert all("mtime" not in m.pax_headers for m in tf.getmembers() if m.name != "old")
    assert got == {"old": (100, tarfile.REGTYPE, ""), "new": (1_000_000_000, tarfile.REGTYPE, ""),
                   ".wh.gone": (1_000_000_000, tarfile.REGTYPE, ""), "dir": (1_000_000_000, tarfile.DIRTYPE, ""),
                   "link": (1_000_000_000, tarfile.LNKTYPE, "new")}
    # nothing later than the epoch: nothing written
    assert not clamp_layer_times(src, str(tmp_path / "none.tar"), 4_000_000_000)
    assert not (tmp_path / "none.tar").exists()


def test_rewrite_timestamp_attribute() -> None:
    assert out("type=oci,dest=x,rewrite-timestamp=true").image.rewrite_timestamp
    assert not out("type=oci,dest=x").image.rewrite_timestamp
    assert "is not a boolean" in err("type=oci,dest=x,rewrite-timestamp=yes").message


def test_local_output_merges_into_an_existing_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.export.local import _merge_into

    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x").write_text("new x")
    (src / "b").write_text("file b")
    os.symlink("a", src / "c")
    (dst / "a").mkdir(parents=True)
    (dst / "a" / "old").write_text("kept")
    (dst / "a" / "x").write_text("old x")
    (dst / "b").mkdir()
    (dst / "b" / "inside").write_text("replaced")
    (dst / "c").mkdir()
    (dst / "keep").write_text("kept")
    _merge_into(str(src), str(dst))
    assert (dst / "a" / "x").read_text() == "new x" and (dst / "a" / "old").read_text() == "kept"
    assert (dst / "b").read_text() == "file b"
    assert os.readlink(dst / "c") == "a"
    assert (dst / "keep").read_text() == "kept"
