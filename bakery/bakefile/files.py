"""Finding, reading and parsing bake files (HCL, JSON, TOML, compose).

Default discovery is buildx's: every one of :data:`DEFAULT_FILES` that exists
in the working directory, in that order (plus bakery's TOML names).  ``-f``
names files explicitly (``-`` is standard input).

Parsed HCL/JSON/TOML bodies are cached on disk, keyed by a digest of the
file's name and content, so an unchanged file is not parsed again (see
:func:`parse_cached`).  The cache is an optimisation only: an unreadable or
corrupt entry is ignored and rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import platform
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from bakery import __version__
from bakery.errors import BakeryError, register_source

__all__ = [
    "DEFAULT_FILES",
    "BakeFile",
    "builtin_variables",
    "cache_dir",
    "local_platform",
    "read_files",
]

DEFAULT_FILES: Tuple[str, ...] = (
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "docker-bake.json",
    "docker-bake.hcl",
    "bakery.toml",
    "docker-bake.override.json",
    "docker-bake.override.hcl",
    "bakery.override.toml",
)


@dataclass(frozen=True)
class BakeFile:
    name: str
    text: str


def read_files(names: Sequence[str], cwd: str = ".", stdin: Optional[Any] = None) -> List[BakeFile]:
    """Read the named files (or the default ones that exist)."""
    default = not names
    out: List[BakeFile] = []
    for name in names or DEFAULT_FILES:
        if name == "-":
            src = stdin if stdin is not None else sys.stdin
            out.append(BakeFile("-", src.read()))
            continue
        path = name if os.path.isabs(name) else os.path.join(cwd, name)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            if default:
                continue
            raise BakeryError(
                f"failed to read {name}: no such file",
                hint="check the -f/--file path (relative to the current directory)",
            ) from None
        except IsADirectoryError:
            raise BakeryError(f"failed to read {name}: it is a directory") from None
        except OSError as e:
            raise BakeryError(f"failed to read {name}: {e.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BakeryError(f"{name}: not UTF-8 text (byte {e.start})") from None
        out.append(BakeFile(name, text))
    if not out:
        raise BakeryError(
            "no bake file found",
            hint="create docker-bake.hcl (or bakery.toml), or name a file with -f",
        )
    for f in out:
        register_source(f.name, f.text)
    return out


def cache_dir() -> str:
    """bakery's cache directory: $BAKERY_CACHE_DIR, else XDG's cache home."""
    d = os.environ.get("BAKERY_CACHE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bakery")


_CODE: List[str] = []


def _code_fingerprint() -> str:
    """bakery's version plus the size and mtime of its bake-layer sources, so
    a changed bakery (even at the same version) never reads stale entries."""
    if not _CODE:
        here = os.path.dirname(os.path.abspath(__file__))
        parts = [__version__, sys.version]
        for d in (here, os.path.join(here, "hcl"), os.path.dirname(here)):
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for n in names:
                if n.endswith(".py"):
                    try:
                        st = os.stat(os.path.join(d, n))
                    except OSError:
                        continue
                    parts.append(f"{n}:{st.st_size}:{st.st_mtime_ns}")
        _CODE.append("|".join(parts))
    return _CODE[0]


def digest(*parts: str) -> str:
    """A cache key over bakery's code (see above) and ``parts``."""
    h = hashlib.sha256()
    for part in (_code_fingerprint(), *parts):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _cache_path(kind: str, key: str) -> str:
    return os.path.join(cache_dir(), kind, key[:2], key + ".pickle")


def cache_get(kind: str, key: str) -> Any:
    """A cached object, or None (a missing or unreadable entry is a miss)."""
    if os.environ.get("BAKERY_NO_PARSE_CACHE"):
        return None
    try:
        with open(_cache_path(kind, key), "rb") as fh:
            return pickle.load(fh)
    except Exception:
        return None


def cache_put(kind: str, key: str, obj: Any) -> None:
    """Store ``obj`` atomically (temp file + rename); never fails the caller."""
    if os.environ.get("BAKERY_NO_PARSE_CACHE"):
        return
    path = _cache_path(kind, key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except (OSError, pickle.PicklingError, RecursionError):
        pass  # a read-only or full cache never fails a plan


def parse_cached(kind: str, f: BakeFile, parse: Callable[[str, str], Any]) -> Any:
    """``parse(text, name)``, memoised on disk by content digest."""
    key = digest(kind, f.name, f.text)
    body = cache_get("parse", key)
    if body is None:
        body = parse(f.text, f.name)
        cache_put("parse", key, body)
    return body


_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm/v7",
    "armv6l": "arm/v6",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def local_platform() -> str:
    """The local platform as containerd's DefaultSpec formats it."""
    osname = sys.platform
    osname = "linux" if osname.startswith("linux") else ("darwin" if osname == "darwin" else osname)
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    if arch == "arm64":
        arch = "arm64/v8"
    return f"{osname}/{arch}"


def builtin_variables() -> Mapping[str, str]:
    return {"BAKE_CMD_CONTEXT": "cwd://", "BAKE_LOCAL_PLATFORM": local_platform()}
