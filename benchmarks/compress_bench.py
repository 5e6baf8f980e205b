"""Layer compression benchmark: one big layer of mixed data, gzip and zstd,
single-threaded vs parallel, MB/s (of input) and ratio (output / input).

The layer (``--mb``, default 256) is deterministic: a third real files from
/usr (binaries, libraries, text, already-compressed data, sorted by path),
a third text-like lines, a third random bytes with runs of zeros between.

Rows:

* ``python gzip module``: what add_layer did before (``gzip.GzipFile``,
  one thread), the reference for bytes and speed;
* ``pgzip threads=1`` / ``threads=N``: :mod:`bakery.oci.pgzip` (the same
  bytes for every N, checked here);
* ``add_layer gzip``: the whole path into a blob store (reading, sha256 of
  the tar and of the blob, fsync) with the default (parallel) threads;
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
from typing import Callable, List, Tuple

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
        print(f"layer: {size / 1e6:.0f} MB of mixed data, {n} CPUs, median of {a.runs} run(s)")
        cases: List[Tuple[str, Callable[[], Tuple[int, str]]]] = [
            ("python gzip module (before)", lambda: py_gzip(src, a.level)),
            ("pgzip threads=1", lambda: pgz(src, a.level, 1)),
            (f"pgzip threads={n}", lambda: pgz(src, a.level, n)),
            ("add_layer gzip (default threads)", lambda: layer(src, tmp)),
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
        print(f"| {'what':<34} | {'MB/s':>7} | {'ratio':>6} | {'seconds':>7} |")
        print(f"| {'-' * 34} | {'-' * 7} | {'-' * 6} | {'-' * 7} |")
        digests = {}
        for name, fn in cases:
            times = []
            out = (0, "")
            for _ in range(a.runs):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            digests[name] = out[1]
            print(f"| {name:<34} | {size / 1e6 / t:7.1f} | {out[0] / size:6.3f} | {t:7.2f} |", flush=True)
        if digests.get("pgzip threads=1") != digests.get(f"pgzip threads={n}"):
            raise SystemExit("pgzip output differs between thread counts!")
        if "zstd -3 threads=1" in digests and digests["zstd -3 threads=1"] != digests[f"zstd -3 threads={n}"]:
            raise SystemExit("zstd output differs between thread counts!")
        print("pgzip and zstd (threads>=1) bytes are the same for 1 and", n, "threads")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
