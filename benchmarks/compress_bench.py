"""Layer compression benchmark: one big layer of mixed data, gzip and zstd,
single-threaded vs parallel, MB/s (of input) and ratio (output / input).

The layer (``--mb``, default 256) is deterministic: a third real files from
/usr (binaries, libraries, text, already-compressed data, sorted by path),
a third text-like lines, a third random bytes with runs of zeros between.

Each case runs ``--runs`` times, round-robin with the others (so load from
other jobs on a shared machine spreads over all of them); median and best.

Rows:

* ``python gzip module``: what add_layer did before (``gzip.GzipFile``,
  one thread), the reference for bytes and speed;
* ``pgzip threads=1`` / ``threads=N``: :mod:`bakery.oci.pgzip` (the same
  bytes for every N, checked here);
* ``add_layer gzip``: the whole path into a blob store (reading, sha256 of
  the tar and of the blob, fsync) with the default (parallel) threads;
* ``8 layers, jobs=1`` / ``jobs=N``: the layer cut in 8, put in an engine
  store and compressed by ``ImageBuilder.compress_all`` one layer at a time
  or N at once (the timing leaves out the store setup); the same with 512
  small layers (~0.5 MB, one block each: only layer concurrency helps);
* ``zstd threads=0`` (no worker thread) / ``threads=1`` / ``threads=N``
  (python ``zstandard``; 1 and N give the same bytes, checked here);
* ``gzip -6`` and ``pigz -6`` command lines when installed (reference only).

    python3 benchmarks/compress_bench.py [--mb 256] [--runs 1] [--level 6]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bakery.oci.image import add_layer  # noqa: E402
from bakery.oci.pgzip import compress_threads, gzip_stream  # noqa: E402
from bakery.oci.store import BlobStore  # noqa: E402


def make_layer(path: str, size: int) -> None:
    rnd = random.Random(42)
    third = size // 3
    with open(path, "wb") as out:
        got = 0
        for d, dirs, files in os.walk("/usr"):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(d, f)
                if got >= third or os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    with open(p, "rb") as fh:
                        data = fh.read(third - got)
                except OSError:
                    continue
                out.write(data)
                got += len(data)
            if got >= third:
                break
        words = [b"RUN", b"apt-get", b"install", b"-y", b"--no-install-recommends", b"COPY",
                 b"/usr/local/bin", b"sha256", b"layer", b"&&", b"\\", b"python3", b"0644"]
        written = 0
        while written < third:
            line = b" ".join(rnd.choice(words) for _ in range(rnd.randrange(3, 14))) + b"\n"
            out.write(line)
            written += len(line)
        written = 0
        rest = size - 2 * third
        while written < rest:
            k = min(rest - written, rnd.randrange(4096, 1 << 20))
            chunk = rnd.randbytes(k) if rnd.random() < 0.7 else bytes(k)
            out.write(chunk)
            written += k


class Count:
    def __init__(self) -> None:
        self.n = 0
        self.h = hashlib.sha256()

    def write(self, b: bytes) -> int:
        self.n += len(b)
        self.h.update(b)
        return len(b)

    def flush(self) -> None:
        pass


def py_gzip(src: str, level: int) -> Tuple[int, str]:
    c = Count()
    with open(src, "rb") as f:
        g = gzip.GzipFile(filename="", mode="wb", fileobj=c, compresslevel=level, mtime=0)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            g.write(chunk)
        g.close()
    return c.n, c.h.hexdigest()


def pgz(src: str, level: int, threads: int) -> Tuple[int, str]:
    c = Count()
    with open(src, "rb") as f:
        gzip_stream(f, c.write, level, threads)
    return c.n, c.h.hexdigest()


def zstd(src: str, level: int, threads: int) -> Tuple[int, str]:
    import zstandard  # type: ignore[import-not-found,unused-ignore]

    c = Count()
    w = zstandard.ZstdCompressor(level=level, threads=threads).stream_writer(c, closefd=False)
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            w.write(chunk)
    w.flush(zstandard.FLUSH_FRAME)
    return c.n, c.h.hexdigest()


def layer(src: str, tmp: str) -> Tuple[int, str]:
    store = BlobStore(tempfile.mkdtemp(dir=tmp))
    la = add_layer(store, src)
    shutil.rmtree(store.root)
    return la.size, la.digest


def many_layers(src: str, tmp: str, jobs: int, count: int = 8) -> Tuple[int, str]:
    """The layer cut into ``count`` layers, compressed by
    ImageBuilder.compress_all with ``jobs`` layers at once (1: one after
    the other)."""
    from types import SimpleNamespace

    from bakery.engine.store import Store
    from bakery.export.image import ExportContext, ImageBuilder
    from bakery.export.spec import ImageOptions

    work = tempfile.mkdtemp(dir=tmp)
    store = Store(os.path.join(work, "store"))
    ids = []
    part = os.path.getsize(src) // count + 1
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(part), b""):
            ids.append(store.put_bytes(chunk))
    blobs = BlobStore(os.path.join(work, "blobs"))
    b = ImageBuilder(ExportContext(blobs, store, None, None, work, jobs=jobs))
    t0 = time.perf_counter()
    b.compress_all([([(None, SimpleNamespace(layers=ids))], ImageOptions())])
    dt = time.perf_counter() - t0
    total = sum(b.layer(d, ImageOptions()).size for d in ids)
    shutil.rmtree(work)
    return total, f"{dt}"


def cli(args: List[str], src: str, tmp: str) -> Tuple[int, str]:
    out = os.path.join(tmp, "cli.out")
    with open(src, "rb") as i, open(out, "wb") as o:
        subprocess.run(args, stdin=i, stdout=o, check=True)
    size = os.path.getsize(out)
    os.unlink(out)
    return size, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--level", type=int, default=6, help="gzip level (zstd uses 3)")
    a = ap.parse_args()
    n = compress_threads()
    tmp = tempfile.mkdtemp(prefix="compress-bench-")
    try:
        src = os.path.join(tmp, "layer.tar")
        make_layer(src, a.mb << 20)
        size = os.path.getsize(src)
        load = f"{os.getloadavg()[0]:.2f}"
        print(f"layer: {size / 1e6:.0f} MB of mixed data, {n} CPUs, {a.runs} run(s) of each, interleaved")
        cases: List[Tuple[str, Callable[[], Tuple[int, str]]]] = [
            ("python gzip module (before)", lambda: py_gzip(src, a.level)),
            ("pgzip threads=1", lambda: pgz(src, a.level, 1)),
            (f"pgzip threads={n}", lambda: pgz(src, a.level, n)),
            ("add_layer gzip (default threads)", lambda: layer(src, tmp)),
            ("8 layers, jobs=1 (one at a time)", lambda: many_layers(src, tmp, 1)),
            (f"8 layers, jobs={n} (compress_all)", lambda: many_layers(src, tmp, n)),
            ("512 small layers, jobs=1", lambda: many_layers(src, tmp, 1, 512)),
            (f"512 small layers, jobs={n}", lambda: many_layers(src, tmp, n, 512)),
        ]
        try:
            import zstandard  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

            cases += [("zstd -3 threads=0 (no worker)", lambda: zstd(src, 3, 0)),
                      ("zstd -3 threads=1", lambda: zstd(src, 3, 1)),
                      (f"zstd -3 threads={n}", lambda: zstd(src, 3, n))]
        except ImportError:
            print("(python zstandard not installed: no zstd rows)")
        for tool in ("gzip", "pigz"):
            if shutil.which(tool):
                cases.append((f"{tool} -{a.level} (CLI)",
                              lambda tool=tool: cli([tool, f"-{a.level}", "-c"], src, tmp)))  # type: ignore[misc]
            else:
                print(f"({tool} not installed: skipped)")
        # round-robin over the cases, so that load from other jobs on the
        # machine spreads over all of them; median and best of the runs
        times: Dict[str, List[float]] = {name: [] for name, _ in cases}
        digests: Dict[str, str] = {}
        sizes: Dict[str, int] = {}
        for _ in range(a.runs):
            for name, fn in cases:
                t0 = time.perf_counter()
                sizes[name], digests[name] = fn()
                dt = time.perf_counter() - t0
                if "layers," in name:  # timed inside: not the store setup
                    dt = float(digests[name])
                times[name].append(dt)
        print(f"load average before: {load}, after: {os.getloadavg()[0]:.2f}")
        print(f"| {'what':<34} | {'MB/s median':>11} | {'MB/s best':>9} | {'ratio':>6} |")
        print(f"| {'-' * 34} | {'-' * 11} | {'-' * 9} | {'-' * 6} |")
        for name, _ in cases:
            med = size / 1e6 / statistics.median(times[name])
            best = size / 1e6 / min(times[name])
            print(f"| {name:<34} | {med:11.1f} | {best:9.1f} | {sizes[name] / size:6.3f} |")
        if digests.get("pgzip threads=1") != digests.get(f"pgzip threads={n}"):
            raise SystemExit("pgzip output differs between thread counts!")
        if "zstd -3 threads=1" in digests and digests["zstd -3 threads=1"] != digests[f"zstd -3 threads={n}"]:
            raise SystemExit("zstd output differs between thread counts!")
        print("pgzip and zstd (threads>=1) bytes are the same for 1 and", n, "threads")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
