"""Small file-system helpers shared by the layers that write user-visible files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Optional, Union

__all__ = ["atomic_write"]


def atomic_write(path: str, data: Union[bytes, str], mode: Optional[int] = None, sync: bool = False) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the
    new one, never a part: a temporary file in the same directory, then a
    rename.  ``mode`` sets the permissions (else mkstemp's 0600); ``sync``
    flushes the data to disk before the rename.  Errors (OSError) reach
    the caller; the temporary file never survives them."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
