"""The composable target attributes of bake, as buildx's ``util/buildflags``
package parses, merges, normalises and prints them.

=============  ====================  =====================================
bake key       entry class           one entry, as bake writes it
=============  ====================  =====================================
``output``     :class:`ExportEntry`  ``"type=local,dest=out"``, ``"out"``
``cache-from`` :class:`CacheEntry`   ``"type=gha"``, ``"user/app:cache"``
``cache-to``   :class:`CacheEntry`   ``{type = "inline"}``
``secret``     :class:`Secret`       ``"id=tok,env=TOKEN"``
``ssh``        :class:`SSH`          ``"default"``, ``"key=/a,/b"``
``attest``     :class:`Attest`       ``"type=sbom,disabled=true"``
``policy``     :class:`PolicyConfig` ``"filename=p.rego,strict=true"``
=============  ====================  =====================================

Each entry may be written as a string (CSV fields of ``key=value``, parsed
like Go's ``encoding/csv``, so a field holding a comma is quoted:
``"type=image,\\"name=a,b\\""``) or as an object of attributes; both forms may
be mixed in one list.  Entries are immutable values; ``to_json()`` is the
object ``docker buildx bake --print`` shows for the entry.

Merging follows buildx: ``cache-from``, ``secret``, ``ssh`` and ``attest``
lists merge (appended, then deduplicated; a later ``attest`` of a type
replaces the earlier one in place), while a target's ``output`` and
``cache-to`` replace the inherited ones (the resolver decides that;
:func:`merge` is the type's own ``Merge``).

buildx turns every target into build options before ``--print`` prints, so
some inputs fail even there: :func:`validate_secrets` (a secret's file must
exist), :func:`validate_exports` and :func:`parse_annotations` repeat those
checks.

Example::

    >>> [e.to_json() for e in parse_list("output", ["out", "type=docker"])]
    [{'dest': 'out', 'type': 'local'}, {'type': 'docker'}]
    >>> [e.to_json() for e in parse_list("cache-from", ["user/app:cache"])]
    [{'ref': 'user/app:cache', 'type': 'registry'}]
    >>> Secret.from_value("id=tok,env=TOKEN").to_json()
    {'id': 'tok', 'env': 'TOKEN'}
"""

from __future__ import annotations

import abc
import json
import os
import re
import stat as stat_mod
from collections.abc import Mapping
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Type, TypeVar

from bakery.bakefile.values import format_number, is_number
from bakery.errors import BakeryError

__all__ = [
    "KINDS",
    "SSH",
    "Attest",
    "BuildflagsError",
    "CacheEntry",
    "CacheOptionsEntry",
    "ExportEntry",
    "PolicyConfig",
    "Secret",
    "canonicalize_attest",
    "csv_fields",
    "merge",
    "normalize",
    "parse_annotations",
    "parse_bool",
    "parse_list",
    "set_load",
    "set_push",
    "validate_exports",
    "validate_secrets",
]


class BuildflagsError(ValueError):
    """A malformed entry; the message is buildx's, without a position (the
    caller knows which attribute and where)."""


# --------------------------------------------------------------------------
# Go helpers: encoding/csv (as tonistiigi/go-csvvalue), strconv, %q, JSON


_ERR_BARE_QUOTE = 'bare " in non-quoted-field'
_ERR_QUOTE = 'extraneous or missing " in quoted-field'


def _csv_error(pos: int, err: str) -> BuildflagsError:
    return BuildflagsError(f"parse error on line 1, column {pos + 1}: {err}")


def csv_fields(line: str) -> List[str]:
    """One CSV record, exactly as go-csvvalue's ``Fields`` reads it (Go's
    ``encoding/csv`` with default settings): fields split on commas, a field
    that starts with ``"`` is quoted (``""`` is a literal quote inside), a
    quote elsewhere is an error, one trailing newline is dropped, and an
    empty line is the error ``EOF``.  Error columns count bytes, from 1.

    >>> csv_fields('a,"b,c","x""y"')
    ['a', 'b,c', 'x"y']
    >>> try:
    ...     csv_fields('a"b')
    ... except ValueError as e:
    ...     print(e)
    parse error on line 1, column 2: bare " in non-quoted-field
    """
    data = line.encode("utf-8", "surrogateescape")
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise BuildflagsError("EOF")

    def dec(b: bytes) -> str:
        return b.decode("utf-8", "surrogateescape")

    out: List[str] = []
    pos = 0
    rest = data
    while True:
        if not rest or rest[0:1] != b'"':
            i = rest.find(b",")
            field = rest if i < 0 else rest[:i]
            j = field.find(b'"')
            if j >= 0:
                raise _csv_error(pos + j, _ERR_BARE_QUOTE)
            out.append(dec(field))
            if i >= 0:
                rest = rest[i + 1:]
                pos += i + 1
                continue
            return out
        # quoted field
        rest = rest[1:]
        pos += 1
        buf = bytearray()
        while True:
            i = rest.find(b'"')
            if i < 0:
                raise _csv_error(pos, _ERR_QUOTE)
            buf += rest[:i]
            rest = rest[i + 1:]
            pos += i + 1
            nxt = rest[0:1]
            if nxt == b'"':
                buf += b'"'
                rest = rest[1:]
                pos += 1
                continue
            if nxt == b",":
                out.append(dec(bytes(buf)))
                rest = rest[1:]
                pos += 1
                break
            if not rest:
                out.append(dec(bytes(buf)))
                return out
            raise _csv_error(pos - 1, _ERR_QUOTE)


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_bool(s: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise BuildflagsError(f"strconv.ParseBool: parsing {go_quote(s)}: invalid syntax")


_QUOTE_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
    "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"',
}


def go_quote(s: str) -> str:
    """Go's ``%q`` of a string (``strconv.Quote``)."""
    out = ['"']
    for ch in s:
        if ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _go_json(v: Any) -> str:
    """A value as Go's encoding/json (and cty's JSON) writes it, compact,
    object keys sorted, ``<``, ``>`` and ``&`` escaped."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if is_number(v):
        return format_number(v)
    if isinstance(v, str):
        s = json.dumps(v, ensure_ascii=False)
        return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{_go_json(str(k))}:{_go_json(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_go_json(x) for x in v) + "]"
    return _go_json(str(v))


# --------------------------------------------------------------------------
# cty conversions of an object entry


def _cty_type(v: Any) -> str:
    """A value's type as cty's mismatch messages name it."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if is_number(v):
        return "number"
    if isinstance(v, (list, tuple)):
        return "tuple"
    if isinstance(v, Mapping):
        return "object"
    return "dynamic"


def _as_str(v: Any) -> Optional[str]:
    """A primitive as cty converts it to a string; None if it cannot."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if is_number(v):
        return format_number(v)
    return None


def _to_string_map(v: Any) -> Dict[str, str]:
    """``convert.Convert(v, cty.Map(cty.String))`` for an object entry;
    null attributes are left out."""
    if not isinstance(v, Mapping):
        raise BuildflagsError("map of string required")
    out: Dict[str, str] = {}
    for k, x in v.items():
        if x is None:
            continue
        s = _as_str(x)
        if s is None:
            raise BuildflagsError(f"element {go_quote(str(k))}: string required")
        out[str(k)] = s
    return out


def _to_object(v: Any, attrs: Mapping[str, str]) -> Dict[str, Any]:
    """``convert.Convert`` to an object type whose attributes are all
    optional (``attrs`` maps a name to ``"string"`` or ``"list"``)."""
    if not isinstance(v, Mapping):
        raise BuildflagsError("object required")
    for k in v:
        if k not in attrs:
            raise BuildflagsError(f"unsupported attribute {go_quote(str(k))}")
    out: Dict[str, Any] = {}
    for k, want in attrs.items():
        x = v.get(k)
        if x is None:
            continue
        if want == "string":
            s = _as_str(x)
            if s is None:
                raise BuildflagsError(f"attribute {go_quote(k)}: string required")
            out[k] = s
        else:
            if not isinstance(x, (list, tuple)):
                raise BuildflagsError(f"attribute {go_quote(k)}: list of string required")
            items = []
            for y in x:
                s = _as_str(y)
                if s is None:
                    raise BuildflagsError(f"attribute {go_quote(k)}: list of string required")
                items.append(s)
            out[k] = items
    return out


def _attrs_key(attrs: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    return tuple(sorted(attrs.items()))


# --------------------------------------------------------------------------
# Entries


class _Entry(abc.ABC):
    """Shared equality, hashing and repr; subclasses define the two below."""

    __slots__ = ()

    @abc.abstractmethod
    def _key(self) -> Tuple[Any, ...]:
        """The fields buildx compares."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()!r})"

    @abc.abstractmethod
    def to_json(self) -> Dict[str, Any]:
        """The object buildx prints."""


class ExportEntry(_Entry):
    """One ``output``: buildx's ``ExportEntry``.

    A string that is a single CSV field, not starting with ``type=``, is a
    destination: ``"-"`` means ``type=tar,dest=-``, anything else
    ``type=local,dest=<string>``.  Otherwise keys are lowercased and trimmed;
    ``type`` and ``dest`` are taken out, the rest are attributes.
    """

    __slots__ = ("attrs", "dest", "type")

    def __init__(self, type: str, attrs: Optional[Mapping[str, str]] = None, dest: str = ""):
        self.type = type
        self.attrs: Dict[str, str] = dict(attrs or {})
        self.dest = dest

    def _key(self) -> Tuple[Any, ...]:
        return (self.type, self.dest, _attrs_key(self.attrs))

    def with_attrs(self, **changes: str) -> ExportEntry:
        return ExportEntry(self.type, {**self.attrs, **changes}, self.dest)

    @classmethod
    def from_value(cls, v: Any) -> ExportEntry:
        if isinstance(v, str):
            return cls.from_text(v)
        m = _to_string_map(v)
        typ = m.pop("type", "")
        dest = m.pop("dest", "")
        return cls(typ, m, dest)._validated()

    @classmethod
    def from_text(cls, s: str) -> ExportEntry:
        fields = csv_fields(s)
        if len(fields) == 1 and fields[0] == s and not s.startswith("type="):
            return cls("tar" if s == "-" else "local", {}, s)
        typ, dest = "", ""
        attrs: Dict[str, str] = {}
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep:
                raise BuildflagsError(f"invalid value {field}")
            key = key.lower().strip()
            if key == "type":
                typ = value
            elif key == "dest":
                dest = value
            else:
                attrs[key] = value
        return cls(typ, attrs, dest)._validated()

    def _validated(self) -> ExportEntry:
        if self.type == "":
            raise BuildflagsError("type is required for output")
        return self

    def to_json(self) -> Dict[str, Any]:
        m: Dict[str, Any] = dict(self.attrs)
        m["type"] = self.type
        if self.dest:
            m["dest"] = self.dest
        return {k: m[k] for k in sorted(m)}


class CacheOptionsEntry(_Entry):
    """One ``cache-from`` or ``cache-to`` entry: buildx's ``CacheOptionsEntry``.

    A string with no ``=`` is a registry reference (``{"type": "registry",
    "ref": ...}``); in a list, such a string may hold several comma-separated
    references.  Keys are lowercased (not trimmed).  Attributes buildx adds at
    build time (``gha`` tokens, ``s3`` credentials) are not part of the entry.
    """

    __slots__ = ("attrs", "type")

    def __init__(self, type: str, attrs: Optional[Mapping[str, str]] = None):
        self.type = type
        self.attrs: Dict[str, str] = dict(attrs or {})

    def _key(self) -> Tuple[Any, ...]:
        return (self.type, _attrs_key(self.attrs))

    @classmethod
    def from_value(cls, v: Any) -> CacheOptionsEntry:
        if isinstance(v, str):
            return cls.from_text(v)
        m = _to_string_map(v)
        typ = m.pop("type", "")
        if typ == "":
            raise BuildflagsError(f"type required form> {go_quote(_go_json(v))}")
        return cls(typ, m)

    @classmethod
    def from_text(cls, s: str) -> CacheOptionsEntry:
        fields = csv_fields(s)
        if len(fields) == 1 and "=" not in fields[0]:
            return cls("registry", {"ref": fields[0]})
        typ = ""
        attrs: Dict[str, str] = {}
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep:
                raise BuildflagsError(f"invalid value {field}")
            key = key.lower()
            if key == "type":
                typ = value
            else:
                attrs[key] = value
        if typ == "":
            raise BuildflagsError(f"type required form> {go_quote(s)}")
        return cls(typ, attrs)

    @classmethod
    def parse_strings(cls, values: Iterable[str]) -> List[CacheOptionsEntry]:
        """buildx's ``ParseCacheEntry``: empty strings are skipped, and a
        string with no ``=`` is a CSV list of references, one entry each."""
        out: List[CacheOptionsEntry] = []
        for s in values:
            if s == "":
                continue
            if "=" not in s:
                out.extend(cls.from_text(f) for f in csv_fields(s))
                continue
            out.append(cls.from_text(s))
        return out

    def to_json(self) -> Dict[str, Any]:
        m: Dict[str, Any] = dict(self.attrs)
        m["type"] = self.type
        return {k: m[k] for k in sorted(m)}


CacheEntry = CacheOptionsEntry


class Secret(_Entry):
    """One ``secret``: buildx's ``Secret`` (``id``, ``src``, ``env``).

    String keys: ``id``, ``src`` or ``source``, ``env``, and ``type`` (``file``
    or ``env``; ``type=env`` with ``src`` and no ``env`` means ``env=<src>``).
    """

    __slots__ = ("env", "id", "src")

    def __init__(self, id: str = "", src: str = "", env: str = ""):
        self.id = id
        self.src = src
        self.env = env

    def _key(self) -> Tuple[Any, ...]:
        return (self.id, self.src, self.env)

    @classmethod
    def from_value(cls, v: Any) -> Secret:
        if isinstance(v, str):
            return cls.from_text(v)
        o = _to_object(v, {"id": "string", "src": "string", "env": "string"})
        return cls(o.get("id", ""), o.get("src", ""), o.get("env", ""))

    @classmethod
    def from_text(cls, s: str) -> Secret:
        try:
            fields = csv_fields(s)
        except BuildflagsError as e:
            raise BuildflagsError(f"failed to parse csv secret: {e}") from None
        id_, src, env, typ = "", "", "", ""
        for field in fields:
            key, sep, value = field.partition("=")
            key = key.lower()
            if not sep:
                raise BuildflagsError(f"invalid field '{field}' must be a key=value pair")
            if key == "type":
                if value not in ("file", "env"):
                    raise BuildflagsError(f"unsupported secret type {go_quote(value)}")
                typ = value
            elif key == "id":
                id_ = value
            elif key in ("source", "src"):
                src = value
            elif key == "env":
                env = value
            else:
                raise BuildflagsError(f"unexpected key '{key}' in '{field}'")
        if typ == "env" and env == "":
            env, src = src, ""
        return cls(id_, src, env)

    def to_json(self) -> Dict[str, Any]:
        m: Dict[str, Any] = {}
        if self.id:
            m["id"] = self.id
        if self.src:
            m["src"] = self.src
        if self.env:
            m["env"] = self.env
        return m


class SSH(_Entry):
    """One ``ssh`` entry: buildx's ``SSH`` (``id`` and ``paths``).

    The string form is not CSV: ``"default"`` is an id, ``"key=/a,/b"`` an id
    and its paths.
    """

    __slots__ = ("id", "paths")

    def __init__(self, id: str = "", paths: Optional[Sequence[str]] = None):
        self.id = id
        self.paths: Tuple[str, ...] = tuple(paths or ())

    def _key(self) -> Tuple[Any, ...]:
        return (self.id, self.paths)

    @classmethod
    def from_value(cls, v: Any) -> SSH:
        if isinstance(v, str):
            return cls.from_text(v)
        o = _to_object(v, {"id": "string", "paths": "list"})
        return cls(o.get("id", ""), o.get("paths"))

    @classmethod
    def from_text(cls, s: str) -> SSH:
        id_, sep, rest = s.partition("=")
        return cls(id_, rest.split(",") if sep else None)

    def to_json(self) -> Dict[str, Any]:
        m: Dict[str, Any] = {}
        if self.id:
            m["id"] = self.id
        if self.paths:
            m["paths"] = list(self.paths)
        return m


class Attest(_Entry):
    """One ``attest`` entry: buildx's ``Attest`` (``type``, ``disabled``,
    attributes).  ``disabled`` is read with Go's ``strconv.ParseBool``; a
    string needs a ``type`` (an object does not)."""

    __slots__ = ("attrs", "disabled", "type")

    def __init__(self, type: str, attrs: Optional[Mapping[str, str]] = None, disabled: bool = False):
        self.type = type
        self.attrs: Dict[str, str] = dict(attrs or {})
        self.disabled = disabled

    def _key(self) -> Tuple[Any, ...]:
        return (self.type, self.disabled, _attrs_key(self.attrs))

    @classmethod
    def from_value(cls, v: Any) -> Attest:
        if isinstance(v, str):
            return cls.from_text(v)
        m = _to_string_map(v)
        typ, disabled = "", False
        attrs: Dict[str, str] = {}
        for k, x in m.items():
            if k == "type":
                typ = x
            elif k == "disabled":
                disabled = parse_bool(x)
            else:
                attrs[k] = x
        return cls(typ, attrs, disabled)

    @classmethod
    def from_text(cls, s: str) -> Attest:
        fields = csv_fields(s)
        typ, disabled = "", False
        attrs: Dict[str, str] = {}
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep:
                raise BuildflagsError(f"invalid value {field}")
            norm = key.lower().strip()
            if norm == "type":
                typ = value
            elif norm == "disabled":
                try:
                    disabled = parse_bool(value)
                except BuildflagsError as e:
                    raise BuildflagsError(f"invalid value {field}: {e}") from None
            else:
                attrs[key] = value  # buildx keeps the key as written
        if typ == "":
            raise BuildflagsError("attestation type not specified")
        return cls(typ, attrs, disabled)

    def to_json(self) -> Dict[str, Any]:
        m: Dict[str, Any] = dict(self.attrs)
        m["type"] = self.type
        if self.disabled:
            m["disabled"] = True
        return {k: m[k] for k in sorted(m)}


def canonicalize_attest(attest_type: str, value: str) -> str:
    """buildx's ``CanonicalizeAttest`` for ``--provenance`` / ``--sbom``:
    a bool turns the attestation on or off, anything else is its options.

    >>> canonicalize_attest("sbom", "false"), canonicalize_attest("provenance", "mode=max")
    ('type=sbom,disabled=true', 'type=provenance,mode=max')
    """
    if value == "":
        return ""
    try:
        b = parse_bool(value)
    except BuildflagsError:
        return f"type={attest_type},{value}"
    return f"type={attest_type},disabled={'false' if b else 'true'}"


_LOG_LEVELS = {
    "panic": "panic", "fatal": "fatal", "error": "error", "warn": "warning",
    "warning": "warning", "info": "info", "debug": "debug", "trace": "trace",
}


class PolicyConfig(_Entry):
    """One ``policy`` entry: buildx's ``PolicyConfig``.

    Keys: ``filename`` (may repeat; the file is read when the entry is
    parsed), ``reset``, ``disabled``, ``strict`` (bools) and ``log-level``
    (a logrus level).  Any other key is an error.
    """

    __slots__ = ("disabled", "files", "log_level", "reset", "strict")

    def __init__(self, files: Sequence[str] = (), reset: bool = False, disabled: bool = False,
                 strict: Optional[bool] = None, log_level: Optional[str] = None):
        self.files: Tuple[str, ...] = tuple(files)
        self.reset = reset
        self.disabled = disabled
        self.strict = strict
        self.log_level = log_level

    def _key(self) -> Tuple[Any, ...]:
        return (self.files, self.reset, self.disabled, self.strict, self.log_level)

    @classmethod
    def from_value(cls, v: Any, cwd: Optional[str] = None) -> PolicyConfig:
        if isinstance(v, str):
            return cls.from_fields(csv_fields(v), cwd)
        if not isinstance(v, Mapping):
            raise BuildflagsError("map of string required")
        fields = []
        for k in sorted(v):
            x = v[k]
            if x is None or x == "":
                continue
            s = _as_str(x)
            if s is None:
                raise BuildflagsError("string required")
            fields.append(f"{k}={s}")
        return cls.from_fields(fields, cwd)

    @classmethod
    def from_fields(cls, fields: Iterable[str], cwd: Optional[str] = None) -> PolicyConfig:
        files: List[str] = []
        reset = disabled = False
        strict: Optional[bool] = None
        level: Optional[str] = None
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep:
                raise BuildflagsError(f"invalid value {field}")
            key = key.lower().strip()
            try:
                if key == "filename":
                    if value == "":
                        raise BuildflagsError(f"invalid value {field}")
                    _read_policy_file(value, cwd)
                    files.append(value)
                elif key == "reset":
                    reset = parse_bool(value)
                elif key == "disabled":
                    disabled = parse_bool(value)
                elif key == "strict":
                    strict = parse_bool(value)
                elif key == "log-level":
                    lvl = _LOG_LEVELS.get(value.lower())
                    if lvl is None:
                        raise BuildflagsError(f"not a valid logrus Level: {go_quote(value)}")
                    level = lvl
                else:
                    raise BuildflagsError(f"invalid value {field}")
            except BuildflagsError as e:
                msg = str(e)
                if key in ("reset", "disabled", "strict", "log-level"):
                    msg = f"invalid value {field}: {msg}"
                raise BuildflagsError(msg) from None
        return cls(files, reset, disabled, strict, level)

    def to_json(self) -> Dict[str, Any]:
        # buildx has no JSON form of its own for a policy; this is the map
        # its ToCtyValue builds (the first file only).
        m: Dict[str, Any] = {}
        if self.files:
            m["filename"] = self.files[0]
        if self.reset:
            m["reset"] = "true"
        if self.disabled:
            m["disabled"] = "true"
        if self.strict is not None:
            m["strict"] = "true" if self.strict else "false"
        if self.log_level is not None:
            m["log-level"] = self.log_level
        return {k: m[k] for k in sorted(m)}


def _read_policy_file(name: str, cwd: Optional[str]) -> None:
    path = name if cwd is None or os.path.isabs(name) else os.path.join(cwd, name)
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise BuildflagsError(
            f"failed to read policy file {name}: open {name}: {_go_strerror(e)}") from None


# --------------------------------------------------------------------------
# Lists

E = TypeVar("E", bound=_Entry)

KINDS: Dict[str, Type[_Entry]] = {
    "output": ExportEntry,
    "cache-from": CacheOptionsEntry,
    "cache-to": CacheOptionsEntry,
    "secret": Secret,
    "ssh": SSH,
    "attest": Attest,
    "policy": PolicyConfig,
}

# The element type buildx names when the attribute is not a list.
_LIST_OF = {
    "output": "list of map of string",
    "cache-from": "list of map of string",
    "cache-to": "list of map of string",
    "secret": "list of object",
    "ssh": "list of object",
    "attest": "list of map of string",
    "policy": "list of map of string",
}


def _kind(kind: str) -> Type[_Entry]:
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"not a buildflags kind: {kind}") from None


def parse_list(kind: str, value: Any, cwd: Optional[str] = None) -> List[Any]:
    """The entries of one attribute's value (an HCL list of strings and
    objects), as buildx's ``FromCtyValue`` reads it: empty strings and nulls
    are skipped; for ``cache-*`` a string without ``=`` may list several
    references.  ``cwd`` is where ``policy`` files are read from."""
    cls = _kind(kind)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise BuildflagsError(f"{_LIST_OF[kind]} required")
    out: List[Any] = []
    for v in value:
        if v is None or v == "":
            continue
        if cls is CacheOptionsEntry and isinstance(v, str):
            out.extend(CacheOptionsEntry.parse_strings([v]))
        elif cls is PolicyConfig:
            if not isinstance(v, (str, Mapping)):
                raise BuildflagsError("map of string required")
            out.append(PolicyConfig.from_value(v, cwd))
        else:
            out.append(cls.from_value(v))  # type: ignore[attr-defined]
    return out


def _remove_dupes(s: List[E]) -> List[E]:
    """buildx's ``removeDupes``, in place: walking back from the end, an
    element equal to a later one swaps that later one with the last element,
    which is then cut off.  Returns the shortened list; ``s`` keeps its
    length, permuted (as the Go slice's backing array does)."""
    n = len(s)
    for i in range(n - 2, -1, -1):
        elem = s[i]
        for j in range(i + 1, n):
            if elem == s[j]:
                s[j], s[n - 1] = s[n - 1], s[j]
                n -= 1
                break
    return s[:n]


def _remove_attest_dupes(s: Iterable[Attest]) -> List[Attest]:
    """One attestation per type: a later one replaces the earlier in place."""
    res: List[Attest] = []
    index: Dict[str, int] = {}
    for a in s:
        if a.type in index:
            res[index[a.type]] = a
        else:
            index[a.type] = len(res)
            res.append(a)
    return res


def normalize(kind: str, entries: Optional[Sequence[Any]]) -> List[Any]:
    """buildx's ``Normalize`` of a list: duplicates removed (one
    attestation per type); an empty list stays empty."""
    _kind(kind)
    if not entries:
        return []
    if kind == "attest":
        return _remove_attest_dupes(entries)
    if kind == "policy":
        return list(entries)
    return _remove_dupes(list(entries))


def merge(kind: str, a: Optional[Sequence[Any]], b: Optional[Sequence[Any]]) -> Optional[List[Any]]:
    """The type's ``Merge(other)`` with ``a`` the receiver and ``b`` the
    other (``None`` is Go's nil slice).

    ``cache-from``/``cache-to``: ``a + b`` normalised.  ``output``,
    ``secret``, ``ssh``: with both present ``a + b`` normalised, otherwise the
    present one with its duplicates moved to its end (Go normalises it in
    place and returns the full slice).  ``attest``: with both present
    ``a + b`` with one attestation per type, otherwise the present one as is.
    ``policy``: appended.  (In ``Target.Merge`` buildx replaces ``output`` and
    ``cache-to`` rather than merging them; that is the caller's choice.)
    """
    _kind(kind)
    if kind == "policy":
        if a is None and b is None:
            return None
        return [*(a or []), *(b or [])]
    if kind in ("cache-from", "cache-to"):
        if b is None:
            return normalize(kind, a) if a is not None else None
        if a is None:
            return normalize(kind, b)
        return normalize(kind, [*a, *b])
    if kind == "attest":
        if b is None:
            return list(a) if a is not None else None
        if a is None:
            return list(b)
        return _remove_attest_dupes([*a, *b])
    if b is None or a is None:
        present = b if a is None else a
        if present is None:
            return None
        whole = list(present)
        _remove_dupes(whole)
        return whole
    return _remove_dupes([*a, *b])


# --------------------------------------------------------------------------
# --push / --load


def set_push(outputs: Sequence[ExportEntry], push: bool) -> List[ExportEntry]:
    """buildx's ``setPushOverride`` (``--set *.push=...``)."""
    outs = list(outputs)
    if not push:
        i = 0
        while i < len(outs):
            o = outs[i]
            if o.type == "registry":
                outs[i], outs[-1] = outs[-1], outs[i]
                outs.pop()
                continue
            if o.type == "image":
                outs[i] = o.with_attrs(push="false")
            i += 1
        return outs
    add = True
    for i, o in enumerate(outs):
        if o.type != "docker":
            add = False
        if o.type == "image":
            outs[i] = o.with_attrs(push="true")
    if add:
        outs.append(ExportEntry("image", {"push": "true"}))
    return outs


def set_load(outputs: Sequence[ExportEntry], load: bool) -> List[ExportEntry]:
    """buildx's ``setLoadOverride`` (``--set *.load=...``)."""
    outs = list(outputs)
    if not load:
        return outs
    for o in outs:
        if o.type == "docker":
            if o.dest == "":
                return outs
        elif o.type in ("image", "registry", "oci"):
            pass
        else:
            return outs
    outs.append(ExportEntry("docker"))
    return outs


# --------------------------------------------------------------------------
# What buildx checks at --print time (toBuildOpt runs before printing)

_MAX_SECRET_SIZE = 500 * 1024


def _go_strerror(e: OSError) -> str:
    """An OS error's text as Go's syscall package spells it."""
    msg = os.strerror(e.errno) if e.errno else str(e)
    return msg[:1].lower() + msg[1:] if msg else msg


def _stat(path: str, cwd: str) -> os.stat_result:
    return os.stat(path if os.path.isabs(path) else os.path.join(cwd, path))


def validate_secrets(entries: Iterable[Secret], env: Mapping[str, str], cwd: str) -> None:
    """What buildkit's ``secretsprovider.NewStore`` checks when buildx sets up
    a target's secrets (before ``--print`` prints): every secret needs an id;
    a secret with neither ``env`` nor ``src`` reads the environment variable
    named by its id if that is set (even empty), else the file named by its
    id; a file must exist (``stat``, relative to ``cwd``) and be at most
    500KiB.  An ``env`` source is not checked.  Raises :class:`BakeryError`.
    """
    for s in entries:
        if s.id == "":
            raise BakeryError("secret missing ID")
        src = s.src
        if s.env == "" and src == "":
            if s.id in env:
                continue
            src = s.id
        if src == "":
            continue
        try:
            st = _stat(src, cwd)
        except OSError as e:
            raise BakeryError(f"failed to stat {src}: stat {src}: {_go_strerror(e)}",
                              hint=_secret_hint(s)) from None
        if st.st_size > _MAX_SECRET_SIZE:
            raise BakeryError(f"secret {s.id} too big. max size 500KiB")


def _secret_hint(s: Secret) -> str:
    if s.src:
        return f"create {s.src}, or point the secret elsewhere"
    return f"set the environment variable {s.id} or create a file named {s.id}"


def validate_exports(entries: Sequence[ExportEntry], cwd: str, stdout_is_console: bool = False) -> None:
    """What buildx's ``CreateExports`` checks before ``--print`` prints
    (buildx also creates a file output's destination; this does not)."""
    stdout_used = False
    for e in entries:
        if e.type == "":
            raise BakeryError("type is required for output")
        typ = "image" if e.type == "registry" else e.type
        support_file = support_dir = False
        if e.type == "local":
            support_dir = True
        elif e.type == "tar":
            support_file = True
        elif e.type in ("oci", "docker"):
            try:
                tar = parse_bool(e.attrs.get("tar", ""))
            except BuildflagsError:
                tar = True
            support_file, support_dir = tar, not tar
        dest = e.dest
        if support_dir:
            if dest == "":
                raise BakeryError(f"dest is required for {typ} exporter")
            if dest == "-":
                raise BakeryError(f"dest cannot be stdout for {typ} exporter")
            try:
                st = _stat(dest, cwd)
            except FileNotFoundError:
                st = None
            except OSError as err:
                raise BakeryError(f"invalid destination directory: {dest}: stat {dest}: "
                                  f"{_go_strerror(err)}") from None
            if st is not None and not stat_mod.S_ISDIR(st.st_mode):
                raise BakeryError(f"destination directory {dest} is a file")
        if support_file:
            if dest == "" and typ != "docker":
                dest = "-"
            if dest == "-":
                if stdout_used:
                    raise BakeryError("multiple outputs configured to write to stdout")
                if stdout_is_console:
                    raise BakeryError(f"dest file is required for {typ} exporter. "
                                      "refusing to write to console")
                stdout_used = True
            elif dest:
                try:
                    st = _stat(dest, cwd)
                except FileNotFoundError:
                    st = None
                except OSError as err:
                    raise BakeryError(f"invalid destination file: {dest}: stat {dest}: "
                                      f"{_go_strerror(err)}") from None
                if st is not None and stat_mod.S_ISDIR(st.st_mode):
                    raise BakeryError(f"destination file {dest} is a directory")


# --------------------------------------------------------------------------
# Annotations (checked by buildx's ParseAnnotations before --print prints)

_ANNOTATION_TYPE = re.compile(r"^([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?\Z")
_ANNOTATION_TYPES = ("index", "index-descriptor", "manifest", "manifest-descriptor")
_KNOWN_OS = {
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
}
_KNOWN_ARCH = {
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
    "aarch64", "armhf", "armel", "x86_64", "x86-64", "i386", "i486", "i586", "i686",
}
_SPECIFIER = re.compile(r"^[A-Za-z0-9_.-]+\Z")


def _check_platform(spec: str) -> None:
    """The errors of containerd's ``platforms.Parse`` (for the part an
    annotation type may name)."""
    def err(msg: str) -> BuildflagsError:
        return BuildflagsError(f"invalid platform {go_quote(spec)}: {msg}")

    parts = spec.split("/")
    for p in parts:
        if not _SPECIFIER.match(p):
            raise err(f"{go_quote(p)}: must match {go_quote(_SPECIFIER.pattern)}: invalid argument")
    if len(parts) == 1:
        p = parts[0].lower()
        if p not in _KNOWN_OS and p not in _KNOWN_ARCH:
            raise err(f"{go_quote(spec)}: unknown operating system or architecture: invalid argument")
    elif len(parts) > 3:
        raise err(f"{go_quote(spec)}: cannot parse platform specifier: invalid argument")


def parse_annotations(values: Iterable[str]) -> List[Tuple[str, Optional[str], str, str]]:
    """buildx's ``ParseAnnotations``: each ``[types:]key=value``, as
    ``(type, platform, key, value)`` tuples (``type`` is ``""`` when none is
    given).  Raises :class:`BuildflagsError` with buildx's message."""
    out: List[Tuple[str, Optional[str], str, str]] = []
    for inp in values:
        if inp == "":
            continue
        k, sep, v = inp.partition("=")
        if not sep:
            raise BuildflagsError(f"invalid annotation {go_quote(inp)}, expected key=value")
        types, sep, key = k.partition(":")
        if not sep:
            out.append(("", None, types, v))
            continue
        for tp in types.split(","):
            m = _ANNOTATION_TYPE.match(tp)
            if m is None:
                raise BuildflagsError(
                    f"invalid annotation type {go_quote(tp)}, expected type and optional "
                    "platform in square brackets")
            typ, platform = m.group(1), m.group(2)
            if typ not in _ANNOTATION_TYPES:
                raise BuildflagsError(f"unknown annotation type {go_quote(typ)}")
            if platform:
                _check_platform(platform)
            out.append((typ, platform or None, key, v))
    return out

