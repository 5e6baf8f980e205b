"""File actions on a root filesystem: COPY/ADD, mkdir, mkfile, rm, symlink.

These execute :mod:`bakery.graph.ops` file actions with BuildKit's copy
semantics, directly on directories (the writable rootfs of a step and the
directory holding the source files):

* a source directory's *contents* are copied (``dir_contents_only``);
* a single file source goes to ``dest/basename`` when ``dest`` ends with
  ``/`` or is an existing directory, else to ``dest`` itself;
* several sources (or a wildcard matching several) need a directory
  destination ending in ``/``;
* wildcards (``*``, ``?``, ``[...]``) match per path segment; no match is
  an error unless ``allow_empty_wildcard``;
* missing parents of ``dest`` are created (0755, owned by the chown user or
  root); modes and mtimes of copied files are kept; ownership is the
  ``chown`` uid:gid, else 0:0 for local context files and kept for files
  from another stage or image (``keep_owner``); user and group names are
  looked up in the destination's /etc/passwd and /etc/group
  (:func:`parse_chown`);
* ``--chmod`` (octal or symbolic) applies to everything copied;
* ``unpack`` (ADD of a local file): a tar archive, plain or compressed,
  is extracted into ``dest`` instead (:func:`_unpack`);
* ``include``/``exclude`` patterns (``--exclude``, ``.dockerignore``) filter
  what a directory copy takes.

Paths inside the root are resolved *within* it: a symlink in the target
filesystem pointing at ``/etc`` means the root's ``/etc``, never the host's.

Example::

    copy(Copy(source=ctx, src=("app/",), dest="/srv/"), src_root="/ctx", root="/rootfs",
         keep_owner=False)
"""

from __future__ import annotations

import contextlib
import fnmatch
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zlib
from typing import IO, Dict, Iterator, List, Optional, Sequence, Tuple

from bakery.dockerfile.dockerignore import IgnoreMatcher
from bakery.engine import layers
from bakery.engine.sandbox.common import secure_join
from bakery.errors import BakeryError
from bakery.graph.ops import Copy, FileAction, Mkdir, Mkfile, Rm, Symlink

__all__ = ["apply_actions", "copy", "parse_chown", "resolve_in_root"]



def resolve_in_root(root: str, path: str, follow_last: bool = True) -> str:
    """The host path of ``path`` inside ``root``, following symlinks as the
    container would see them (absolute links are relative to ``root``); with
    ``follow_last`` False the last component itself is not followed."""
    if follow_last:
        return secure_join(root, path)
    parent, base = posixpath.split(posixpath.normpath("/" + path))
    return os.path.join(secure_join(root, parent), base) if base else secure_join(root, parent)


def _lookup(root: str, etc_file: str, name: str, chown: str) -> Optional[List[str]]:
    """The fields of ``name``'s line in the root's /etc/passwd or /etc/group
    (resolved inside ``root``), None when absent; an error when the file is
    missing (BuildKit: "invalid user index" / "invalid missing user mount"
    when the destination is scratch)."""
    try:
        with open(resolve_in_root(root, etc_file), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.rstrip("\n").split(":")
                if fields and fields[0] == name and not line.startswith("#"):
                    return fields
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        kind = "user" if etc_file == "/etc/passwd" else "group"
        raise BakeryError(
            f"cannot resolve {kind} {name!r} of chown {chown!r}: the destination has no {etc_file}",
            hint="use numeric ids (--chown=1000:1000), or copy onto a stage that has the "
                 f"{kind} (COPY --link and FROM scratch have no {etc_file})",
        ) from None
    return None


def _id(value: str) -> Optional[int]:
    return int(value) if value.isdigit() and int(value) < 2**32 else None


def parse_chown(chown: str, root: Optional[str] = None) -> Optional[Tuple[int, int]]:
    """``--chown`` / a USER as the owner of copied files: ``user[:group]``,
    each a number or a name looked up in ``root``'s /etc/passwd and
    /etc/group, as BuildKit's file op does:

    * a numeric user alone gives gid = uid; a user name alone gives the
      user's primary group from /etc/passwd;
    * a name that is not in the file counts as 0 for a user and leaves the
      gid unchanged for a group, silently, exactly as BuildKit (checked
      against Docker 20.10's: ``--chown=nosuch`` makes files owned by 0:0);
    * a name when the destination has no /etc/passwd (or /etc/group) at all
      is an error, as in BuildKit for a scratch destination;
    * an entry with a non-numeric uid or gid is an error.
    """
    if not chown:
        return None
    user, _, group = chown.partition(":")
    uid = _id(user)
    gid = uid if uid is not None else 0
    if uid is None:
        if root is None:
            raise BakeryError(f"invalid chown {chown!r}: user and group must be resolved to numbers first")
        uid = 0
        entry = _lookup(root, "/etc/passwd", user, chown)
        if entry is not None:
            if len(entry) < 4 or _id(entry[2]) is None or _id(entry[3]) is None:
                raise BakeryError(f"invalid /etc/passwd entry for user {user!r}: {':'.join(entry)}")
            uid, gid = int(entry[2]), int(entry[3])
    if group:
        g = _id(group)
        if g is None:
            if root is None:
                raise BakeryError(f"invalid chown {chown!r}: user and group must be resolved to numbers first")
            entry = _lookup(root, "/etc/group", group, chown)
            if entry is not None:
                if len(entry) < 3 or _id(entry[2]) is None:
                    raise BakeryError(f"invalid /etc/group entry for group {group!r}: {':'.join(entry)}")
                g = int(entry[2])
        if g is not None:
            gid = g
    return uid, gid


_SYMBOLIC = re.compile(r"^([ugoa]*)([+=-])([rwxXst]*)$")


def apply_chmod(mode: int, spec: str, is_dir: bool) -> int:
    """Octal ("755") or symbolic ("u+x,go-w") chmod, as BuildKit applies it."""
    if re.fullmatch(r"[0-7]{1,4}", spec):
        return (mode & ~0o7777) | int(spec, 8)
    perm = mode & 0o7777
    for clause in spec.split(","):
        m = _SYMBOLIC.match(clause)
        if not m:
            raise BakeryError(f"invalid chmod {spec!r}", hint="use octal (0755) or symbolic (u+x,go-w)")
        who, op, what = m.groups()
        who = who or "a"
        bits = 0
        for w in who.replace("a", "ugo"):
            shift = {"u": 6, "g": 3, "o": 0}[w]
            for c in what:
                if c == "r":
                    bits |= 4 << shift
                elif c == "w":
                    bits |= 2 << shift
                elif c == "x" or (c == "X" and (is_dir or perm & 0o111)):
                    bits |= 1 << shift
                elif c == "s" and w in "ug":
                    bits |= 0o4000 if w == "u" else 0o2000
                elif c == "t":
                    bits |= 0o1000
        if op == "+":
            perm |= bits
        elif op == "-":
            perm &= ~bits
        else:
            mask = 0
            for w in who.replace("a", "ugo"):
                mask |= 0o7 << {"u": 6, "g": 3, "o": 0}[w]
            perm = (perm & ~mask) | bits
    return (mode & ~0o7777) | perm


def _has_wildcard(p: str) -> bool:
    return any(c in p for c in "*?[")


def _glob(src_root: str, pattern: str) -> List[str]:
    """Paths (relative, '/'-separated) under src_root matching pattern per segment."""
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    matches = [""]
    for part in parts:
        nxt: List[str] = []
        for m in matches:
            base = os.path.join(src_root, m) if m else src_root
            if _has_wildcard(part):
                try:
                    names = sorted(os.listdir(base))
                except (NotADirectoryError, FileNotFoundError):
                    continue
                nxt.extend(posixpath.join(m, n) if m else n for n in names if fnmatch.fnmatchcase(n, part))
            elif os.path.lexists(os.path.join(base, part)):
                nxt.append(posixpath.join(m, part) if m else part)
        matches = nxt
    return matches


def copy(action: Copy, src_root: str, root: str, keep_owner: bool,
         ignore: Optional[IgnoreMatcher] = None) -> None:
    """Execute one Copy from the directory ``src_root`` into the rootfs ``root``."""
    owner = parse_chown(action.chown, root)
    sources: List[str] = []
    for s in action.src:
        if action.allow_wildcard and _has_wildcard(s):
            found = _glob(src_root, s)
            if ignore is not None:  # .dockerignore'd files are not in the context
                found = [f for f in found if not _ignored(ignore, f, src_root)]
            if not found and not action.allow_empty_wildcard:
                raise BakeryError(f'failed to compute cache key: "{s}": no source files were specified')
            sources.extend(found)
        else:
            rel = posixpath.normpath("/" + s).lstrip("/")
            if rel and (not os.path.lexists(os.path.join(src_root, rel))
                        or (ignore is not None and _ignored(ignore, rel, src_root))):
                raise BakeryError(f'failed to compute cache key: failed to calculate checksum: "/{rel}": not found')
            sources.append(rel)
    dest = action.dest
    dest_is_dir = dest.endswith("/") or dest in ("", ".")
    if len(sources) > 1 and not dest_is_dir:
        existing = resolve_in_root(root, dest)
        if not os.path.isdir(existing):
            raise BakeryError(
                "When using COPY with more than one source file, the destination must be a "
                "directory and end with a /"
            )
        dest_is_dir = True
    for rel in sources:
        src_path = os.path.join(src_root, rel) if rel else src_root
        if action.follow_symlinks and os.path.islink(src_path):
            src_path = resolve_in_root(src_root, rel)
        st = os.lstat(src_path)
        if action.unpack and stat.S_ISREG(st.st_mode) and _unpack(src_path, root, dest, owner):
            continue
        if stat.S_ISDIR(st.st_mode) and action.dir_contents_only:
            target_dir = posixpath.join(dest, rel) if action.parents and rel else dest
            tdir = _ensure_dir(root, target_dir, owner)
            _copy_tree(src_path, tdir, rel, action, owner, keep_owner, ignore)
            continue
        if action.parents and rel:
            target = posixpath.join(dest, rel)
        else:
            existing = resolve_in_root(root, dest)
            if dest_is_dir or os.path.isdir(existing):
                target = posixpath.join(dest, posixpath.basename(rel) or "")
            else:
                target = dest
        parent = _ensure_dir(root, posixpath.dirname(target) or "/", owner)
        out = os.path.join(parent, posixpath.basename(target))
        _copy_one(src_path, out, st, action, owner, keep_owner)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@contextlib.contextmanager
def _archive_stream(path: str) -> Iterator[Optional[IO[bytes]]]:
    """The uncompressed stream of ``path`` when it is a tar archive (plain,
    gzip, bzip2, xz, or zstd when the zstandard module is there), else None:
    BuildKit's isArchivePath (a first tar header must read)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        stream: Optional[IO[bytes]] = None
        if head == _ZSTD_MAGIC:
            try:
                import zstandard  # type: ignore[import-not-found,unused-ignore]
            except ImportError:
                yield None
                return
            stream = zstandard.ZstdDecompressor().stream_reader(fh)
        try:
            with tarfile.open(fileobj=stream or fh, mode="r|*" if stream else "r:*") as tf:
                ok = tf.next() is not None
        except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
            ok = False
        if not ok:
            yield None
            return
        fh.seek(0)
        if head == _ZSTD_MAGIC:
            import zstandard  # type: ignore[import-not-found,unused-ignore]

            with zstandard.ZstdDecompressor().stream_reader(fh) as z:
                yield z
        else:
            yield fh


def _unpack(src_path: str, root: str, dest: str, owner: Optional[Tuple[int, int]]) -> bool:
    """ADD's auto-extraction: a local tar archive (compressed or not) is
    extracted into the directory ``dest`` (made, as BuildKit's mkdirp, with
    the chown owner); the members keep the archive's modes, owners and
    times (``--chown`` does not apply to them, as in BuildKit).  False when
    ``src_path`` is not an archive: it is then copied as a file."""
    with _archive_stream(src_path) as stream:
        if stream is None:
            return False
        tdir = _ensure_dir(root, dest, owner)
        try:
            layers.apply_layer(stream, tdir)
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
            raise BakeryError(f"failed to extract {posixpath.basename(src_path)}: {e}") from None
    return True


def _ignored(ignore: IgnoreMatcher, rel: str, src_root: str) -> bool:
    """An ignored path; a directory counts as ignored only when nothing
    inside it can be brought back by an exception pattern."""
    if not ignore.matches(rel):
        return False
    if os.path.isdir(os.path.join(src_root, rel)):
        return ignore.can_skip_dir(rel)
    return True


def _ensure_dir(root: str, path: str, owner: Optional[Tuple[int, int]]) -> str:
    """Create ``path`` (and parents) inside root; return its host path."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    cur = "/"
    for p in parts:
        cur = posixpath.join(cur, p)
        host = resolve_in_root(root, cur)
        if not os.path.lexists(host):
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)
            uid, gid = owner if owner else (0, 0)
            with contextlib.suppress(PermissionError):
                os.lchown(host, uid, gid)
        elif not os.path.isdir(host):
            raise BakeryError(f"cannot copy to {path}: {cur} is not a directory")
    return resolve_in_root(root, "/".join(parts))


def _copy_tree(src: str, dst: str, rel: str, action: Copy, owner: Optional[Tuple[int, int]],
               keep_owner: bool, ignore: Optional[IgnoreMatcher]) -> None:
    excl = IgnoreMatcher(list(action.exclude)) if action.exclude else None
    for name in sorted(os.listdir(src)):
        sp = os.path.join(src, name)
        rp = posixpath.join(rel, name) if rel else name
        if ignore is not None and ignore.matches(rp):
            if os.path.isdir(sp) and not os.path.islink(sp) and not ignore.can_skip_dir(rp):
                pass  # an exception inside may bring files back
            else:
                continue
        if excl is not None and excl.matches(posixpath.relpath(rp, rel) if rel else rp):
            continue
        if action.include and not any(
            fnmatch.fnmatchcase(rp, pat) or rp.startswith(pat.rstrip("/") + "/") or pat.startswith(rp + "/")
            for pat in action.include
        ):
            continue
        st = os.lstat(sp)
        dp = os.path.join(dst, name)
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(dp) and not os.path.isdir(dp):
                os.unlink(dp)
            if not os.path.isdir(dp):
                os.mkdir(dp, 0o700)
            _copy_tree(sp, dp, rp, action, owner, keep_owner, ignore)
            _set_meta(dp, st, action, owner, keep_owner, is_dir=True)
        else:
            _copy_one(sp, dp, st, action, owner, keep_owner)


def _copy_one(src: str, dst: str, st: os.stat_result, action: Copy,
              owner: Optional[Tuple[int, int]], keep_owner: bool) -> None:
    if os.path.lexists(dst):
        if os.path.isdir(dst) and not os.path.islink(dst):
            if stat.S_ISDIR(st.st_mode):
                _set_meta(dst, st, action, owner, keep_owner, is_dir=True)
                return
            shutil.rmtree(dst)
        else:
            os.unlink(dst)
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    elif stat.S_ISDIR(mode):
        os.mkdir(dst, 0o700)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        os.mknod(dst, mode, st.st_rdev)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(dst)
    else:
        return
    _set_meta(dst, st, action, owner, keep_owner, is_dir=stat.S_ISDIR(mode))


def _set_meta(path: str, st: os.stat_result, action: Copy, owner: Optional[Tuple[int, int]],
              keep_owner: bool, is_dir: bool) -> None:
    if owner is not None:
        uid, gid = owner
    elif keep_owner:
        uid, gid = st.st_uid, st.st_gid
    else:
        uid, gid = 0, 0
    with contextlib.suppress(PermissionError):
        os.lchown(path, uid, gid)
    if not stat.S_ISLNK(st.st_mode):
        mode = st.st_mode
        if action.chmod:
            mode = apply_chmod(mode, action.chmod, is_dir)
        os.chmod(path, stat.S_IMODE(mode))
    with contextlib.suppress(OSError, NotImplementedError):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def apply_actions(actions: Sequence[FileAction], root: str,
                  sources: Dict[int, Tuple[str, bool, Optional[IgnoreMatcher]]]) -> None:
    """Run file actions on ``root``.  ``sources`` maps ``id(action)`` of each
    Copy to (the directory holding its source files, keep_owner, the
    .dockerignore matcher of a local context or None)."""
    for a in actions:
        if isinstance(a, Copy):
            src_root, keep_owner, ignore = sources[id(a)]
            copy(a, src_root, root, keep_owner, ignore)
        elif isinstance(a, Mkdir):
            owner = parse_chown(a.chown, root)
            parent = posixpath.dirname(a.path.rstrip("/")) or "/"
            if not a.make_parents and not os.path.isdir(resolve_in_root(root, parent)):
                raise BakeryError(f"mkdir {a.path}: parent directory does not exist")
            host = _ensure_dir(root, a.path, owner)
            os.chmod(host, a.mode)
        elif isinstance(a, Mkfile):
            owner = parse_chown(a.chown, root)
            parent = _ensure_dir(root, posixpath.dirname(a.path) or "/", None)
            out = os.path.join(parent, posixpath.basename(a.path))
            if os.path.lexists(out):
                os.unlink(out)
            with open(out, "wb") as fh:
                fh.write(a.data)
            os.chmod(out, a.mode)
            uid, gid = owner if owner else (0, 0)
            with contextlib.suppress(PermissionError):
                os.lchown(out, uid, gid)
        elif isinstance(a, Rm):
            host = resolve_in_root(root, a.path, follow_last=False)
            if not os.path.lexists(host):
                if not a.allow_not_found:
                    raise BakeryError(f"rm {a.path}: no such file or directory")
                continue
            if os.path.isdir(host) and not os.path.islink(host):
                shutil.rmtree(host)
            else:
                os.unlink(host)
        elif isinstance(a, Symlink):
            parent = _ensure_dir(root, posixpath.dirname(a.path) or "/", None)
            out = os.path.join(parent, posixpath.basename(a.path))
            if os.path.lexists(out):
                os.unlink(out)
            os.symlink(a.target, out)
        else:  # pragma: no cover - the op types are closed
            raise TypeError(f"unknown file action {a!r}")
