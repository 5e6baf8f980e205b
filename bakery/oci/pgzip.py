"""Parallel gzip (pigz-style): one gzip member made of independently
compressed deflate blocks, compressed in threads.

The input is cut into fixed-size blocks (:data:`BLOCK`, 1 MiB).  Each block
is compressed as raw deflate with the last 32 KiB of the block before it as
the preset dictionary (so matches across the cut are not lost, as pigz does),
and ended with a sync flush (an empty stored block, byte-aligned), except the
last, which ends the deflate stream.  The blocks are joined in order behind a
gzip header (no mtime, no file name) and followed by the CRC32 and the size
mod 2**32 of the whole input: ONE valid gzip member, readable by any gunzip.

The output depends only on the input, the level and :data:`BLOCK`, never on
the number of threads or on timing: every block is compressed from the same
bytes with the same dictionary whichever thread runs it, and results are
written in input order.  zlib releases the GIL while it deflates, so blocks
really run on several cores.

Example::

    >>> import io
    >>> out = io.BytesIO()
    >>> n, crc = gzip_stream(io.BytesIO(b"hello " * 1000), out.write, level=6, threads=2)
    >>> import gzip; gzip.decompress(out.getvalue()) == b"hello " * 1000
    True
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import IO, Callable, Deque, Optional, Tuple

__all__ = ["BLOCK", "compress_threads", "gzip_bytes", "gzip_header", "gzip_stream"]

#: the size of the independently compressed blocks (part of the output format:
#: changing it changes the bytes of every gzip layer)
BLOCK = 1 << 20
_DICT = 32 * 1024  # deflate's window

_pool_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None


def compress_threads() -> int:
    """The number of threads compression uses by default: the CPUs this
    process may run on (``BAKERY_COMPRESS_THREADS`` overrides it)."""
    env = os.environ.get("BAKERY_COMPRESS_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _shared_pool() -> ThreadPoolExecutor:
    """One pool of block compressors for the whole process, one thread per
    CPU: concurrent layers share it, so they never run more deflate threads
    than there are cores.  Its tasks never wait on each other (no deadlock)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=compress_threads(),
                                       thread_name_prefix="bakery-gzip")
        return _pool


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: make a new one."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def gzip_header(level: int) -> bytes:
    """The 10-byte gzip header Python's gzip module writes with mtime 0 and
    no name: XFL 2 for level 9, 4 for level 1, OS 255 (unknown)."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + bytes([xfl, 255])


def _deflate_block(data: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8,
                             zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8,
                             zlib.Z_DEFAULT_STRATEGY)
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _read_block(src: IO[bytes]) -> bytes:
    """Exactly BLOCK bytes (fewer only at the end): block boundaries must
    not depend on how a pipe or socket splits its reads."""
    data = src.read(BLOCK)
    if not data or len(data) == BLOCK:
        return data
    parts = [data]
    got = len(data)
    while got < BLOCK:
        more = src.read(BLOCK - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def gzip_stream(src: IO[bytes], write: Callable[[bytes], object], level: int = 6,
                threads: Optional[int] = None, on_input: Optional[Callable[[bytes], object]] = None,
                ) -> Tuple[int, int]:
    """Compress everything ``src`` gives into one gzip member passed to
    ``write``; (input size, CRC32).  ``on_input`` sees every input chunk (to
    hash it).  ``threads``: None shares the process's pool (one thread per
    CPU), 1 compresses in this thread, N uses N threads of its own; the bytes
    are the same in every case."""
    if not 0 <= level <= 9:
        raise ValueError(f"gzip level {level} is out of range 0-9")
    own: Optional[Executor] = None
    pool: Optional[Executor]
    if threads is None:
        pool = _shared_pool()
        width = compress_threads()
    elif threads <= 1:
        pool, width = None, 1
    else:
        own = pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bakery-gzip")
        width = threads
    write(gzip_header(level))
    crc = 0
    size = 0
    pending: Deque[Future] = Deque()
    try:
        prev_tail = b""
        block = _read_block(src)
        while True:
            nxt = _read_block(src) if block else b""
            last = not nxt
            if on_input is not None and block:
                on_input(block)
            crc = zlib.crc32(block, crc)
            size += len(block)
            if pool is None:
                write(_deflate_block(block, prev_tail, level, last))
            else:
                pending.append(pool.submit(_deflate_block, block, prev_tail, level, last))
                # a bounded window: memory stays at ~2 blocks per thread
                while pending and (len(pending) > 2 * width or pending[0].done()):
                    write(pending.popleft().result())
            if last:
                break
            prev_tail = block[-_DICT:]
            block = nxt
        while pending:
            write(pending.popleft().result())
    finally:
        for f in pending:
            f.cancel()
        if own is not None:
            own.shutdown(wait=True)
    write(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
    return size, crc


def gzip_bytes(data: bytes, level: int = 6, threads: Optional[int] = 1) -> bytes:
    """:func:`gzip_stream` of a bytes object."""
    import io

    out: list = []
    gzip_stream(io.BytesIO(data), out.append, level, threads)
    return b"".join(out)
