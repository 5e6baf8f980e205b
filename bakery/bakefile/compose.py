"""Compose files as bake inputs, the way ``docker buildx bake`` reads them.

buildx (``bake/compose.go``) loads compose files with compose-go and turns
every service that has a ``build:`` section into a bake target, and makes a
``default`` group of them all.  This module does the same on plain Python
data:

* YAML is read with YAML 1.2 scalars as go-yaml v3 resolves them (``yes`` and
  ``on`` stay strings, ``0123`` is octal, timestamps stay strings), anchors,
  aliases and ``<<`` merge keys, the ``!reset`` and ``!override`` tags, and a
  duplicate key is an error.
* Every string value is interpolated (compose-go's ``template`` package):
  ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
  ``${VAR:?err}``, ``${VAR?err}``, ``${VAR:+alt}``, ``${VAR+alt}``, nested
  templates in defaults, and ``$$`` for a literal ``$``.  Unset variables
  become empty strings.  ``COMPOSE_PROJECT_NAME`` defaults to ``bake``.
* ``include:``, ``extends:`` and several files (merged in order, later files
  override) are applied; then only ``services.*.{image,build,environment,
  env_file}`` and ``secrets`` are kept, validated, and checked for
  consistency, as buildx does.
* The ``.env`` file of the working directory (buildx reads the current
  directory's, not the compose file's) adds variables that the environment
  does not set.

:func:`load_compose` returns groups ``[("default", [names...])]`` and
targets ``[(name, attrs)]`` where ``attrs`` uses bake attribute names and the
values an evaluated HCL target block would have (strings, lists of strings,
maps of strings, bools); cache, secret, ssh, output and attest entries are
strings in their CSV forms.

Example::

    >>> groups, targets = load_compose(
    ...     [("compose.yml", "services:\\n  web.app:\\n    build: ./web\\n"
    ...                      "    image: me/web:${TAG:-dev}\\n")], {})
    >>> groups, targets
    ([('default', ['web_app'])], [('web_app', {'context': 'web', 'tags': ['me/web:dev']})])
"""

from __future__ import annotations

import math
import os
import posixpath
import re
from decimal import Decimal
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bakery.errors import BakeryError, Pos, register_source

__all__ = [
    "Group",
    "TargetDef",
    "is_compose",
    "load_compose",
    "load_dotenv",
    "parse_dotenv",
    "substitute",
]

Group = Tuple[str, List[str]]
TargetDef = Tuple[str, Dict[str, Any]]
Path = Tuple[Any, ...]
Lookup = Callable[[str], Optional[str]]

_DEFAULT_PROJECT = "bake"
_TARGET_NAME_CHARS = "[a-zA-Z0-9_-]+"
_TARGET_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")


class _ComposeError(Exception):
    """An error with a path into the compose model; turned into a BakeryError
    with the position of that path when one is known."""

    def __init__(self, message: str, path: Path = (), hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.hint = hint


# ---------------------------------------------------------------------------
# YAML, as go-yaml v3 reads it


class _Reset:
    """A ``!reset`` value: removes the key when merged."""

    def __init__(self, value: Any):
        self.value = value


class _Override:
    """A ``!override`` value: replaces the value instead of merging."""

    def __init__(self, value: Any):
        self.value = value


_PLAIN = "!bakery/plain"
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0]:
            if value == "<<":
                return _MERGE
            return _PLAIN
        return super().resolve(kind, value, implicit)


_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INT_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def _go_parse_int(s: str) -> Optional[int]:
    """strconv.ParseInt(s, 0, 64) (underscores already removed)."""
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if not s:
        return None
    base = 10
    low = s.lower()
    if low.startswith("0x"):
        base, s = 16, s[2:]
    elif low.startswith("0o"):
        base, s = 8, s[2:]
    elif low.startswith("0b"):
        base, s = 2, s[2:]
    elif len(s) > 1 and s[0] == "0":
        base, s = 8, s[1:]
    if not s or any(c not in _INT_DIGITS[base] for c in s):
        return None
    n = sign * int(s, base)
    if not -(2**63) <= n < 2**64:
        return None
    return n


def _resolve_plain(v: str) -> Any:
    if v in _NULLS:
        return None
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    if v and (v[0] in "+-.0123456789"):
        plain = v.replace("_", "")
        n = _go_parse_int(plain)
        if n is not None:
            return n
        if _FLOAT_RE.match(plain):
            try:
                return float(plain)
            except ValueError:
                pass
        low = plain.lower()
        if low in (".inf", "+.inf"):
            return math.inf
        if low == "-.inf":
            return -math.inf
        if low == ".nan":
            return math.nan
    return v


def _scalar(node: ScalarNode) -> Any:
    tag = node.tag
    v = node.value
    if tag == _PLAIN:
        return _resolve_plain(v)
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        r = _resolve_plain(v)
        return r if isinstance(r, bool) else v
    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        r = _resolve_plain(v)
        return r if isinstance(r, (int, float)) and not isinstance(r, bool) else v
    return v


class _Reader:
    """Builds plain data from a YAML node graph, with positions by path."""

    def __init__(self, loader: _Loader, filename: str, positions: Dict[Path, Pos]):
        self.loader = loader
        self.filename = filename
        self.positions = positions

    def pos(self, node: Node) -> Pos:
        m = node.start_mark
        return Pos(self.filename, m.line + 1, m.column + 1)

    def convert(self, node: Node, path: Path) -> Any:
        self.positions.setdefault(path, self.pos(node))
        if isinstance(node, ScalarNode):
            value: Any = _scalar(node)
        elif isinstance(node, SequenceNode):
            value = [self.convert(child, (*path, i)) for i, child in enumerate(node.value)]
        elif isinstance(node, MappingNode):
            value = self.mapping(node, path)
        else:  # pragma: no cover - PyYAML has no other node kinds
            value = None
        if node.tag == "!reset":
            return _Reset(value)
        if node.tag == "!override":
            return _Override(value)
        return value

    def mapping(self, node: MappingNode, path: Path) -> Dict[str, Any]:
        seen: Dict[str, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, ScalarNode):
                raise BakeryError("invalid map key: a key must be a scalar", self.pos(key_node))
            key = key_node.value
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise BakeryError(
                    f'mapping key "{key}" already defined at line {first}', self.pos(key_node)
                )
            seen[key] = key_node
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as e:
            raise _yaml_error(e, self.filename) from None
        out: Dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise BakeryError("invalid map key: a key must be a scalar", self.pos(key_node))
            key = key_node.value
            out[key] = self.convert(value_node, (*path, key))
            # errors about a block point at its key, about a value at the value
            block = isinstance(value_node, MappingNode) or (
                isinstance(value_node, ScalarNode) and value_node.value == ""
            )
            self.positions[(*path, key)] = self.pos(key_node if block else value_node)
        return out


def _yaml_error(e: yaml.MarkedYAMLError, filename: str) -> BakeryError:
    mark = e.problem_mark or e.context_mark
    pos = Pos(filename, mark.line + 1, mark.column + 1) if mark is not None else None
    msg = e.problem or e.context or "invalid YAML"
    if e.context and e.problem:
        msg = f"{e.context}: {e.problem}"
    return BakeryError(f"invalid compose YAML: {msg}", pos)


def _load_yaml(text: str, filename: str, positions: Dict[Path, Pos]) -> Any:
    register_source(filename, text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        return _Reader(loader, filename, positions).convert(node, ())
    except yaml.MarkedYAMLError as e:
        raise _yaml_error(e, filename) from None
    except yaml.YAMLError as e:
        raise BakeryError(f"invalid compose YAML: {e}", Pos(filename, 1, 1)) from None
    finally:
        loader.dispose()


def _strip_tags(v: Any) -> Any:
    """Drops !reset / !override markers (a single file: reset removes the key)."""
    if isinstance(v, (_Reset, _Override)):
        return _strip_tags(v.value)
    if isinstance(v, dict):
        return {k: _strip_tags(x) for k, x in v.items() if not isinstance(x, _Reset)}
    if isinstance(v, list):
        return [_strip_tags(x) for x in v if not isinstance(x, _Reset)]
    return v


# ---------------------------------------------------------------------------
# Go formatting helpers


def _go_float(f: float) -> str:
    """fmt.Sprint(float64): shortest digits, exponent below 1e-4 or from 1e21."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    d = Decimal(repr(f))
    exp = d.adjusted()
    if exp < -4 or exp >= 21:
        sign, digits, _ = d.as_tuple()
        ds = "".join(map(str, digits)).rstrip("0") or "0"
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{'-' if sign else ''}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _go_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _go_float(v)
    if v is None:
        return ""
    return str(v)


def _go_clean(p: str) -> str:
    """filepath.Clean (POSIX); "" stays ""."""
    if p == "":
        return ""
    c = posixpath.normpath(p)
    if c.startswith("//"):
        c = "/" + c.lstrip("/")
    return c


def _csv_field(s: str) -> str:
    """One CSV field as Go's csv writer (and buildx's csvBuilder) quotes it."""
    if s == "" or not (any(c in s for c in ',"\r\n') or s[0] in " \t"):
        return s
    return '"' + s.replace('"', '""') + '"'


def _csv_split(s: str) -> List[str]:
    """csvvalue.Fields: one CSV record, with quoted fields."""
    out: List[str] = []
    i, n = 0, len(s)
    while True:
        if i < n and s[i] == '"':
            i += 1
            buf = []
            while True:
                if i >= n:
                    raise ValueError(f'extraneous or missing " in quoted-field: {s}')
                if s[i] == '"':
                    if i + 1 < n and s[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(s[i])
                i += 1
            if i < n and s[i] != ",":
                raise ValueError(f'extraneous or missing " in quoted-field: {s}')
            out.append("".join(buf))
        else:
            j = s.find(",", i)
            field = s[i:] if j < 0 else s[i:j]
            if '"' in field:
                raise ValueError(f'bare " in non-quoted-field: {s}')
            out.append(field)
            i = n if j < 0 else j
        if i >= n:
            return out
        i += 1  # the comma


# ---------------------------------------------------------------------------
# Interpolation (compose-go template package)

_TEMPLATE_RE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*)"
    r"|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*(?::?[-+?](?:.*\}|[^}]*))?)\}|(?P<invalid>))"
)

_OPERATORS = (":?", "?", ":-", "-", ":+", "+")


class _TemplateError(Exception):
    def __init__(self, template: str):
        super().__init__(template)
        self.template = template


def _first_brace_closing(s: str) -> int:
    depth = 0
    i = 0
    while i < len(s):
        if s[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        if s.startswith("${", i):
            depth += 1
            i += 1
        i += 1
    return -1


def _pick_operator(s: str) -> Optional[str]:
    best: Optional[str] = None
    best_i = -1
    for op in _OPERATORS:
        i = s.find(op)
        if i >= 0 and (best is None or i < best_i):
            best, best_i = op, i
    return best


def _apply_operator(op: str, substitution: str, lookup: Lookup) -> Tuple[bool, str]:
    if op not in substitution:
        return False, ""
    name, arg = substitution.split(op, 1)
    arg = substitute(arg, lookup)
    value = lookup(name)
    if op in (":?", "?"):
        if value is None or (op == ":?" and value == ""):
            raise _TemplateError(f"required variable {name} is missing a value: {arg}")
        return True, value
    if op in (":-", "-"):
        if value is None or (op == ":-" and value == ""):
            return True, arg
        return True, value
    # ":+" / "+": the alternative when set (and not empty for ":+")
    if value is not None and (op == "+" or value != ""):
        return True, arg
    return True, value or ""


def substitute(template: str, lookup: Lookup) -> str:
    """compose-go's ``template.Substitute``; ``lookup`` returns None when unset.

    >>> substitute("${A:-x}-$B-$$C-${D:+y}", {"B": "b", "D": "d"}.get)
    'x-b-$C-y'
    """
    error: List[_TemplateError] = []

    def repl(m: re.Match[str]) -> str:
        substring = m.group(0)
        op = _pick_operator(substring)
        close = _first_brace_closing(substring)
        rest = ""
        if close > -1:
            rest = substring[close + 1 :]
            substring = substring[: close + 1]
        mm = _TEMPLATE_RE.match(substring)
        assert mm is not None
        if mm.group("escaped"):
            return "$"
        braced = False
        name = mm.group("named")
        if not name:
            name = mm.group("braced")
            braced = True
        if not name:
            if not error:
                error.append(_TemplateError(template))
            return ""
        if braced and op is not None:
            try:
                applied, value = _apply_operator(op, name, lookup)
            except _TemplateError as e:
                if not error:
                    error.append(e)
                return ""
            if applied:
                try:
                    return value + substitute(rest, lookup)
                except _TemplateError:
                    return ""
        value2 = lookup(name)
        return value2 if value2 is not None else ""

    out = _TEMPLATE_RE.sub(repl, template)
    if error:
        raise error[0]
    return out


def _path_str(path: Path) -> str:
    return ".".join("[]" if isinstance(p, int) else str(p) for p in path)


def _interpolate(value: Any, path: Path, lookup: Lookup) -> Any:
    if isinstance(value, str):
        try:
            return substitute(value, lookup)
        except _TemplateError as e:
            raise _ComposeError(
                f"invalid interpolation format for {_path_str(path)}: {e.template}",
                path,
                hint="you may need to escape any $ with another $",
            ) from None
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), lookup) for i, v in enumerate(value)]
    if isinstance(value, _Reset):
        return _Reset(_interpolate(value.value, path, lookup))
    if isinstance(value, _Override):
        return _Override(_interpolate(value.value, path, lookup))
    return value


# ---------------------------------------------------------------------------
# .env files (compose-go dotenv)

_DOTENV_KEY_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z0-9_.\-\[\]]+)\s*([=:])?")


def parse_dotenv(
    text: str, lookup: Optional[Lookup] = None, filename: str = ".env"
) -> Dict[str, str]:
    """A .env file's variables; ``$VAR`` in unquoted and double-quoted values is
    expanded from earlier variables and then ``lookup``.

    >>> parse_dotenv("A=1 # c\\nexport B='x $A'\\nC=\\"$A\\\\n\\"\\n")
    {'A': '1', 'B': 'x $A', 'C': '1\\n'}
    """
    out: Dict[str, str] = {}

    def look(name: str) -> Optional[str]:
        if name in out:
            return out[name]
        return lookup(name) if lookup is not None else None

    i = 0
    n = len(text)
    line_no = 1
    while i < n:
        j = text.find("\n", i)
        line = text[i:] if j < 0 else text[i:j]
        start_line = line_no
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i = n if j < 0 else j + 1
            line_no += 1
            continue
        m = _DOTENV_KEY_RE.match(line)
        if m is None:
            raise BakeryError(
                f"unexpected character in variable name: {stripped!r}", Pos(filename, start_line, 1)
            )
        key = m.group(1)
        if m.group(2) is None:
            rest_of_line = line[m.end() :].strip()
            if rest_of_line and not rest_of_line.startswith("#"):
                raise BakeryError(
                    f"unexpected character in variable name: {stripped!r}",
                    Pos(filename, start_line, 1),
                )
            v = look(key)
            if v is not None:
                out[key] = v
            i = n if j < 0 else j + 1
            line_no += 1
            continue
        k = i + m.end()
        while k < n and text[k] in " \t":
            k += 1
        if k < n and text[k] in "'\"":
            quote = text[k]
            end = k + 1
            while end < n:
                if text[end] == quote and (quote == "'" or text[end - 1] != "\\"):
                    break
                end += 1
            if end >= n:
                raise BakeryError(
                    f"unterminated quoted value for {key}", Pos(filename, start_line, 1)
                )
            raw = text[k + 1 : end]
            line_no += raw.count("\n")
            if quote == "'":
                value = raw
            else:
                value = re.sub(
                    r"\\(.)",
                    lambda mm: {"n": "\n", "r": "\r", "t": "\t"}.get(mm.group(1), mm.group(1)),
                    raw,
                )
                value = _dotenv_expand(value, look)
            nl = text.find("\n", end)
            i = n if nl < 0 else nl + 1
        else:
            nl = text.find("\n", k)
            raw = text[k:] if nl < 0 else text[k:nl]
            cm = re.search(r"\s#", raw)
            if cm is not None:
                raw = raw[: cm.start()]
            value = _dotenv_expand(raw.strip(), look)
            i = n if nl < 0 else nl + 1
        out[key] = value
        line_no += 1
    return out


def _dotenv_expand(value: str, lookup: Lookup) -> str:
    try:
        return substitute(value, lookup)
    except _TemplateError:
        return value


def load_dotenv(env: Mapping[str, str], workdir: Optional[str] = None) -> Dict[str, str]:
    """``env`` plus the variables of ``workdir``'s ``.env`` that it does not
    set (buildx's composeEnv; ``workdir`` defaults to the current directory)."""
    out = dict(env)
    path = os.path.join(workdir if workdir is not None else os.getcwd(), ".env")
    if not os.path.isfile(path):
        return out
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise BakeryError(f"cannot read {path}: {e.strerror}") from None
    register_source(path, text)
    for k, v in parse_dotenv(text, out.get, path).items():
        out.setdefault(k, v)
    return out


# ---------------------------------------------------------------------------
# Merging (compose-go override package, the parts that reach bake)

_MAPPING_OR_LIST = {
    ("services", "*", "build", "args"),
    ("services", "*", "build", "labels"),
    ("services", "*", "build", "additional_contexts"),
    ("services", "*", "environment"),
}
_UNIQUE_LISTS = {
    ("services", "*", "build", "tags"),
    ("services", "*", "build", "cache_from"),
    ("services", "*", "build", "cache_to"),
    ("services", "*", "build", "platforms"),
    ("services", "*", "build", "entitlements"),
    ("services", "*", "build", "secrets"),
    ("services", "*", "build", "ssh"),
    ("services", "*", "env_file"),
}


def _match(path: Path, pattern: Tuple[str, ...]) -> bool:
    return len(path) == len(pattern) and all(p == "*" or p == k for k, p in zip(path, pattern))


def _to_mapping(v: Any) -> Dict[str, Any]:
    if isinstance(v, dict):
        return dict(v)
    out: Dict[str, Any] = {}
    if isinstance(v, list):
        for item in v:
            s = _go_str(item)
            if "=" in s:
                k, val = s.split("=", 1)
                out[k] = val
            else:
                out[s] = None
    return out


def _unique_key(v: Any) -> Any:
    if isinstance(v, dict):
        return v.get("source", v.get("path", repr(sorted(v.items()))))
    return _go_str(v)


def _merge(base: Any, over: Any, path: Path) -> Any:
    if isinstance(over, _Override):
        return over.value
    if over is None:
        return base
    if _match(path, ("services", "*", "build")):
        if isinstance(base, str):
            base = {"context": base}
        if isinstance(over, str):
            over = {"context": over}
    if any(_match(path, p) for p in _MAPPING_OR_LIST):
        merged = _to_mapping(base)
        merged.update(_to_mapping(over))
        return merged
    if _match(path, ("services", "*", "extra_hosts")) or _match(
        path, ("services", "*", "build", "extra_hosts")
    ):
        hosts = _hosts(base, path)
        hosts.update(_hosts(over, path))
        return hosts
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, _Reset):
                out.pop(k, None)
            elif k in out:
                out[k] = _merge(out[k], v, (*path, k))
            else:
                out[k] = v.value if isinstance(v, _Override) else v
        return out
    if isinstance(base, list) and isinstance(over, list):
        seq = base + over
        if any(_match(path, p) for p in _UNIQUE_LISTS):
            index: Dict[Any, int] = {}
            out_list: List[Any] = []
            for item in seq:
                key = _unique_key(item)
                if key in index:
                    out_list[index[key]] = item
                else:
                    index[key] = len(out_list)
                    out_list.append(item)
            return out_list
        return seq
    return over


# ---------------------------------------------------------------------------
# Loading the model


class _Model:
    def __init__(self, env: Mapping[str, str], workdir: str):
        self.env = env
        self.workdir = workdir
        self.positions: Dict[Path, Pos] = {}

    def lookup(self, name: str) -> Optional[str]:
        return self.env.get(name)

    def error(self, e: _ComposeError) -> BakeryError:
        path = e.path
        while path:
            pos = self.positions.get(path)
            if pos is not None:
                return BakeryError(e.message, pos, e.hint)
            path = path[:-1]
        return BakeryError(e.message, None, e.hint)

    def read(self, name: str, text: str, stack: Tuple[str, ...] = ()) -> Dict[str, Any]:
        positions: Dict[Path, Pos] = {}
        data = _load_yaml(text, name, positions)
        self.positions.update(positions)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BakeryError(
                "Top-level object must be a mapping", positions.get((), Pos(name, 1, 1))
            )
        data = _interpolate(data, (), self.lookup)
        for k in list(data):
            if isinstance(data[k], _Reset):
                del data[k]
        data = self.apply_includes(name, data, stack)
        return data

    def read_file(self, path: str, stack: Tuple[str, ...]) -> Dict[str, Any]:
        full = path if os.path.isabs(path) else os.path.join(self.workdir, path)
        if path in stack:
            raise _ComposeError(f"include cycle detected: {' -> '.join((*stack, path))}")
        try:
            with open(full, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise _ComposeError(f"failed to read {path}: {e.strerror}") from None
        return self.read(path, text, (*stack, path))

    def apply_includes(
        self, name: str, data: Dict[str, Any], stack: Tuple[str, ...]
    ) -> Dict[str, Any]:
        inc = data.pop("include", None)
        if not inc:
            return data
        if not isinstance(inc, list):
            raise _ComposeError("include must be a list", ("include",))
        base_dir = posixpath.dirname(name)
        for i, item in enumerate(inc):
            if isinstance(item, str):
                paths: List[Any] = [item]
                project_dir: Optional[str] = None
            elif isinstance(item, dict):
                p = item.get("path")
                paths = p if isinstance(p, list) else [p]
                project_dir = item.get("project_directory")
            else:
                raise _ComposeError("include entries must be strings or mappings", ("include", i))
            included: Dict[str, Any] = {}
            first_dir: Optional[str] = None
            for p in paths:
                if not isinstance(p, str) or not p:
                    raise _ComposeError("include path must be a string", ("include", i))
                rel = p if os.path.isabs(p) else _go_clean(posixpath.join(base_dir, p))
                if first_dir is None:
                    first_dir = project_dir or posixpath.dirname(rel)
                sub = self.read_file(rel, (*stack, name))
                included = _merge(included, sub, ()) if included else sub
            _rebase_paths(included, first_dir or "")
            for section in ("services", "secrets"):
                theirs = included.get(section)
                if not isinstance(theirs, dict):
                    continue
                ours = data.setdefault(section, {})
                if not isinstance(ours, dict):
                    continue
                for key, value in theirs.items():
                    if key in ours:
                        raise _ComposeError(
                            f"imported compose file {paths[0]} defines conflicting {section[:-1]} {key}",
                            ("include", i),
                        )
                    ours[key] = value
        return data


def _is_remote_context(v: str) -> bool:
    return v.startswith(("https://", "http://", "git://", "ssh://", "github.com/", "git@"))


def _abs_path(workdir: str, p: str) -> str:
    if p.startswith("~"):
        return _go_clean(os.path.expanduser("~") + "/" + p[1:])
    if p.startswith("/"):
        return p
    return _go_clean(posixpath.join(workdir, p)) if (workdir or p) else p


def _rebase_paths(model: Dict[str, Any], base: str) -> None:
    """Resolve relative paths of an included or extended model against ``base``."""
    if not base or base == ".":
        return
    services = model.get("services")
    if isinstance(services, dict):
        for svc in services.values():
            if isinstance(svc, dict):
                _rebase_service(svc, base)
    secrets = model.get("secrets")
    if isinstance(secrets, dict):
        for sec in secrets.values():
            if isinstance(sec, dict) and isinstance(sec.get("file"), str) and sec["file"]:
                sec["file"] = _abs_path(base, sec["file"])


def _rebase_service(svc: Dict[str, Any], base: str) -> None:
    build = svc.get("build")
    if isinstance(build, str):
        build = svc["build"] = {"context": build}
    if isinstance(build, dict):
        ctx = build.get("context")
        if ctx is None:
            build["context"] = base
        elif isinstance(ctx, str) and not _is_remote_context(ctx):
            build["context"] = _abs_path(base, ctx)
    env_file = svc.get("env_file")
    if isinstance(env_file, str):
        svc["env_file"] = _abs_path(base, env_file)
    elif isinstance(env_file, list):
        for i, e in enumerate(env_file):
            if isinstance(e, str):
                env_file[i] = _abs_path(base, e)
            elif isinstance(e, dict) and isinstance(e.get("path"), str):
                e["path"] = _abs_path(base, e["path"])


def _apply_extends(model: _Model, data: Dict[str, Any]) -> None:
    services = data.get("services")
    if not isinstance(services, dict):
        return
    done: Dict[str, Any] = {}

    def resolve(name: str, svcs: Dict[str, Any], stack: Tuple[str, ...], file_key: str) -> Any:
        key = f"{file_key}:{name}"
        if key in done and file_key == "":
            return done[key]
        svc = svcs.get(name)
        if not isinstance(svc, dict) or "extends" not in svc:
            return svc
        if key in stack:
            raise _ComposeError(
                f"circular reference with extends in service {name}",
                ("services", name, "extends"),
            )
        ext = svc["extends"]
        if isinstance(ext, str):
            ext = {"service": ext}
        if not isinstance(ext, dict) or not isinstance(ext.get("service"), str):
            raise _ComposeError(
                f"services.{name}.extends must name a service", ("services", name, "extends")
            )
        base_name = ext["service"]
        ext_file = ext.get("file")
        if isinstance(ext_file, str) and ext_file:
            other = model.read_file(ext_file, ())
            other_svcs = other.get("services")
            if not isinstance(other_svcs, dict) or base_name not in other_svcs:
                raise _ComposeError(
                    f"cannot extend service {name!r} in {ext_file}: service {base_name!r} not found",
                    ("services", name, "extends"),
                )
            base = resolve(base_name, other_svcs, (*stack, key), ext_file)
            base = _deep_copy(base) if isinstance(base, dict) else {}
            _rebase_service(base, posixpath.dirname(ext_file))
        else:
            if base_name not in svcs:
                raise _ComposeError(
                    f"cannot extend service {name!r}: service {base_name!r} not found",
                    ("services", name, "extends"),
                )
            base = resolve(base_name, svcs, (*stack, key), file_key)
            base = _deep_copy(base) if isinstance(base, dict) else {}
        base.pop("extends", None)
        own = {k: v for k, v in svc.items() if k != "extends"}
        merged = _merge(base, own, ("services", name))
        svcs[name] = merged
        if file_key == "":
            done[key] = merged
        return merged

    for svc_name in list(services):
        resolve(svc_name, services, (), "")


def _deep_copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _deep_copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deep_copy(x) for x in v]
    return v


def _load_model(files: Sequence[Tuple[str, str]], model: _Model) -> Dict[str, Any]:
    merged: Optional[Dict[str, Any]] = None
    for name, text in files:
        data = model.read(name, text)
        merged = data if merged is None else _merge(merged, data, ())
    data = _strip_tags(merged or {})
    _apply_extends(model, data)
    filtered: Dict[str, Any] = {}
    services = data.get("services")
    if isinstance(services, dict):
        fs: Dict[str, Any] = {}
        for svc_name, svc in services.items():
            if svc is None:
                fs[svc_name] = {}
            elif isinstance(svc, dict):
                fs[svc_name] = {
                    k: svc[k] for k in ("image", "build", "environment", "env_file") if k in svc
                }
            else:
                fs[svc_name] = svc
        filtered["services"] = fs
    elif "services" in data:
        filtered["services"] = services
    if "secrets" in data:
        filtered["secrets"] = data["secrets"]
    if not filtered:
        raise _ComposeError("empty compose file")
    _validate(filtered)
    return filtered


# ---------------------------------------------------------------------------
# Schema checks (the compose-spec schema, for the kept fields)

_BUILD_KEYS = {
    "context", "dockerfile", "dockerfile_inline", "entitlements", "args", "ssh", "labels",
    "cache_from", "cache_to", "no_cache", "additional_contexts", "network", "provenance",
    "sbom", "pull", "target", "shm_size", "extra_hosts", "isolation", "privileged", "secrets",
    "tags", "ulimits", "platforms",
}  # fmt: skip
_SECRET_KEYS = {
    "name", "environment", "content", "file", "external", "labels", "driver", "driver_opts",
    "template_driver",
}  # fmt: skip
_SCALAR_TYPES = (str, int, float, bool)


def _type_error(path: Path, what: str) -> _ComposeError:
    return _ComposeError(f"{_path_str(path)} must be {what}", path)


def _check_str(v: Any, path: Path) -> None:
    if not isinstance(v, str):
        raise _type_error(path, "a string")


def _check_str_list(v: Any, path: Path) -> None:
    if not isinstance(v, list):
        raise _type_error(path, "an array")
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise _type_error((*path, i), "a string")


def _check_list_or_dict(v: Any, path: Path, values_may_be_list: bool = False) -> None:
    if isinstance(v, dict):
        for k, item in v.items():
            ok = item is None or isinstance(item, _SCALAR_TYPES)
            if values_may_be_list and isinstance(item, list):
                ok = all(isinstance(x, _SCALAR_TYPES) for x in item)
            if not ok:
                raise _type_error((*path, k), "a string, number, boolean or null")
    elif isinstance(v, list):
        for i, item in enumerate(v):
            if not isinstance(item, str):
                raise _type_error((*path, i), "a string")
    else:
        raise _type_error(path, "a list or a mapping")


def _check_bool(v: Any, path: Path) -> None:
    if not isinstance(v, (bool, str)):
        raise _type_error(path, "a boolean")


def _validate(model: Dict[str, Any]) -> None:
    services = model.get("services")
    if services is not None and not isinstance(services, dict):
        raise _type_error(("services",), "a mapping")
    for name, svc in (services or {}).items():
        sp: Path = ("services", name)
        if not isinstance(svc, dict):
            raise _type_error(sp, "a mapping")
        if "image" in svc:
            _check_str(svc["image"], (*sp, "image"))
        if "environment" in svc:
            _check_list_or_dict(svc["environment"], (*sp, "environment"))
        if "env_file" in svc:
            ef = svc["env_file"]
            if not isinstance(ef, (str, list)):
                raise _type_error((*sp, "env_file"), "a string or a list")
            for i, e in enumerate(ef if isinstance(ef, list) else []):
                if isinstance(e, dict):
                    if not isinstance(e.get("path"), str):
                        raise _type_error((*sp, "env_file", i, "path"), "a string")
                elif not isinstance(e, str):
                    raise _type_error((*sp, "env_file", i), "a string or a mapping")
        if "build" in svc:
            _validate_build(svc["build"], (*sp, "build"))
    secrets = model.get("secrets")
    if secrets is not None and not isinstance(secrets, dict):
        raise _type_error(("secrets",), "a mapping")
    secrets_map: Dict[str, Any] = secrets or {}
    for name, sec in secrets_map.items():
        sp = ("secrets", name)
        if sec is None:
            sec = secrets_map[name] = {}
        if not isinstance(sec, dict):
            raise _type_error(sp, "a mapping")
        for k, v in sec.items():
            if k not in _SECRET_KEYS and not k.startswith("x-"):
                raise _ComposeError(
                    f"{_path_str(sp)} additional property {k} is not allowed", (*sp, k)
                )
            if k in ("name", "environment", "content", "file", "driver", "template_driver"):
                _check_str(v, (*sp, k))
            if k == "external":
                _check_bool(v, (*sp, k))


def _validate_build(build: Any, bp: Path) -> None:
    if isinstance(build, str):
        return
    if not isinstance(build, dict):
        raise _type_error(bp, "a string or a mapping")
    for k, v in build.items():
        p: Path = (*bp, k)
        if k.startswith("x-"):
            continue
        if k not in _BUILD_KEYS:
            hint = None
            alt = {
                "cache-from": "cache_from", "cache-to": "cache_to",
                "no-cache": "no_cache", "shm-size": "shm_size",
                "dockerfile-inline": "dockerfile_inline", "extra-hosts": "extra_hosts",
                "additional-contexts": "additional_contexts", "secret": "secrets",
            }.get(k)  # fmt: skip
            if alt:
                hint = f'did you mean "{alt}"? (bake\'s own names go under x-bake)'
            raise _ComposeError(f"{_path_str(bp)} additional property {k} is not allowed", p, hint)
        if v is None:
            continue
        if k in ("context", "dockerfile", "dockerfile_inline", "network", "target", "isolation"):
            _check_str(v, p)
        elif k in ("cache_from", "cache_to", "tags", "platforms", "entitlements"):
            _check_str_list(v, p)
        elif k in ("args", "labels", "additional_contexts"):
            _check_list_or_dict(v, p)
        elif k == "extra_hosts":
            _check_list_or_dict(v, p, values_may_be_list=True)
        elif k == "ssh":
            if isinstance(v, str):
                raise _type_error(p, "a list or a mapping")
            _check_list_or_dict(v, p)
        elif k in ("no_cache", "pull", "privileged"):
            _check_bool(v, p)
        elif k in ("sbom", "provenance"):
            if not isinstance(v, (str, bool)):
                raise _type_error(p, "a string or a boolean")
        elif k == "shm_size":
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise _type_error(p, "a string or a number")
        elif k == "secrets":
            if not isinstance(v, list):
                raise _type_error(p, "an array")
            for i, s in enumerate(v):
                if isinstance(s, dict):
                    if not isinstance(s.get("source"), str):
                        raise _type_error((*p, i, "source"), "a string")
                elif not isinstance(s, str):
                    raise _type_error((*p, i), "a string or a mapping")
        elif k == "ulimits":
            if not isinstance(v, dict):
                raise _type_error(p, "a mapping")
            for n, u in v.items():
                if isinstance(u, dict):
                    for kk in u:
                        if kk not in ("soft", "hard"):
                            raise _ComposeError(
                                f"{_path_str((*p, n))} additional property {kk} is not allowed",
                                (*p, n, kk),
                            )
                elif not isinstance(u, (int, str)) or isinstance(u, bool):
                    raise _type_error((*p, n), "an integer or a mapping")


# ---------------------------------------------------------------------------
# Service → target (buildx bake/compose.go)


def _to_bool(v: Any, path: Path) -> bool:
    if isinstance(v, bool):
        return v
    s = _go_str(v).lower()
    if s in ("y", "yes", "true", "on"):
        return True
    if s in ("n", "no", "false", "off"):
        return False
    raise _ComposeError(f"{_path_str(path)}: invalid boolean: {_go_str(v)}", path)


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_BINARY_ABBRS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def _ram_in_bytes(s: str, path: Path) -> int:
    m = _SIZE_RE.match(s)
    if m is None:
        raise _ComposeError(f"invalid size: '{s}'", path)
    try:
        size = float(m.group(1))
    except ValueError:
        raise _ComposeError(f"invalid size: '{s}'", path) from None
    size *= _UNITS[(m.group(2) or "").lower()]
    return int(size)


def _bytes_size(n: int) -> str:
    """units.BytesSize: "%.4g" of the value in the largest binary unit."""
    size = float(n)
    i = 0
    while size >= 1024.0 and i < len(_BINARY_ABBRS) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{_BINARY_ABBRS[i]}"


_ULIMIT_NAMES = {
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
}  # fmt: skip


def _to_int(v: Any, path: Path) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        try:
            return int(v.strip(), 10)
        except ValueError:
            pass
    raise _ComposeError(f"{_path_str(path)} must be an integer", path)


def _ulimits(v: Dict[str, Any], path: Path) -> List[str]:
    out: List[str] = []
    for name in sorted(v):
        u = v[name]
        if isinstance(u, dict):
            soft = _to_int(u.get("soft", 0), (*path, name, "soft"))
            hard = _to_int(u.get("hard", 0), (*path, name, "hard"))
        else:
            soft = hard = _to_int(u, (*path, name))
        if name not in _ULIMIT_NAMES:
            raise _ComposeError(f"invalid ulimit type: {name}", (*path, name))
        if soft > hard:
            raise _ComposeError(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}",
                (*path, name),
            )
        out.append(f"{name}={soft}:{hard}")
    return out


def _mapping_with_equals(v: Any) -> Dict[str, Optional[str]]:
    """compose's MappingWithEquals: None for a key given without a value."""
    out: Dict[str, Optional[str]] = {}
    if isinstance(v, dict):
        for k, x in v.items():
            out[str(k)] = None if x is None else _go_str(x)
    elif isinstance(v, list):
        for item in v:
            s = _go_str(item)
            if "=" in s:
                k, val = s.split("=", 1)
                out[k] = val
            else:
                out[s] = None
    return out


def _labels(v: Any) -> Dict[str, str]:
    out: Dict[str, str] = {}
    if isinstance(v, dict):
        for k, x in v.items():
            out[str(k)] = _go_str(x)
    elif isinstance(v, list):
        for item in v:
            s = _go_str(item)
            k, _, val = s.partition("=")
            out[k] = val
    return out


def _hosts(v: Any, path: Path) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    if isinstance(v, dict):
        for k, x in v.items():
            items = x if isinstance(x, list) else [x]
            out[str(k)] = [_strip_brackets(_go_str(i)) for i in items]
    elif isinstance(v, list):
        for item in v:
            s = _go_str(item)
            if "=" in s:
                host, _, ip = s.partition("=")
            else:
                host, _, ip = s.partition(":")
            out.setdefault(host, []).append(_strip_brackets(ip))
    return out


def _strip_brackets(ip: str) -> str:
    if len(ip) > 2 and ip[0] == "[" and ip[-1] == "]":
        return ip[1:-1]
    return ip


def _named_contexts(m: Mapping[str, str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for k, v in m.items():
        if v.startswith(("service:", "target:")):
            v = "target:" + _sanitize(v.split(":", 1)[1])
        out[k] = v
    return out


def _sanitize(name: str) -> str:
    return name.replace(".", "_")


# --- entries parsed only to compare them, as buildflags' Equal does


def _cache_entries(items: Sequence[str], path: Path) -> List[Tuple[str, Any]]:
    """buildflags.ParseCacheEntry: (string, equality key) per entry."""
    out: List[Tuple[str, Any]] = []
    for s in items:
        if s == "":
            continue
        try:
            if "=" not in s:
                for field in _csv_split(s):
                    if "=" in field:  # pragma: no cover - excluded above
                        continue
                    out.append((field, ("registry", (("ref", field),))))
                continue
            attrs: Dict[str, str] = {}
            typ = ""
            for field in _csv_split(s):
                if "=" not in field:
                    raise _ComposeError(f"invalid value {field}", path)
                k, v = field.split("=", 1)
                k = k.lower()
                if k == "type":
                    typ = v
                else:
                    attrs[k] = v
        except ValueError as e:
            raise _ComposeError(str(e), path) from None
        if not typ:
            raise _ComposeError(f'type required for "{s}"', path)
        out.append((s, (typ, tuple(sorted(attrs.items())))))
    return out


def _secret_key(s: str, path: Path) -> Any:
    try:
        fields = _csv_split(s)
    except ValueError as e:
        raise _ComposeError(f"failed to parse csv secret: {e}", path) from None
    sid = src = env = typ = ""
    for field in fields:
        if "=" not in field:
            raise _ComposeError(f"invalid field '{field}' must be a key=value pair", path)
        k, v = field.split("=", 1)
        k = k.lower()
        if k == "type":
            if v not in ("file", "env"):
                raise _ComposeError(f'unsupported secret type "{v}"', path)
            typ = v
        elif k == "id":
            sid = v
        elif k in ("source", "src"):
            src = v
        elif k == "env":
            env = v
        else:
            raise _ComposeError(f"unexpected key '{k}' in '{field}'", path)
    if typ == "env" and not env:
        env, src = src, ""
    return (sid, src, env)


def _ssh_key(s: str) -> Tuple[str, List[str]]:
    sid, eq, paths = s.partition("=")
    return (sid, paths.split(",") if eq else [])


def _export_key(s: str, path: Path) -> Any:
    if "=" not in s:
        return ("local", (("dest", s),))
    try:
        fields = _csv_split(s)
    except ValueError as e:
        raise _ComposeError(str(e), path) from None
    attrs = {}
    for field in fields:
        k, eq, v = field.partition("=")
        if not eq:
            raise _ComposeError(f"invalid value {field}", path)
        attrs[k.lower()] = v
    return (attrs.pop("type", ""), tuple(sorted(attrs.items())))


def _remove_dupes(items: List[Tuple[str, Any]]) -> List[str]:
    """buildflags.removeDupes, whose swap-with-last changes the order."""
    s = list(items)
    i = len(s) - 2
    while i >= 0:
        for j in range(i + 1, len(s)):
            if s[i][1] == s[j][1]:
                s[j], s[-1] = s[-1], s[j]
                s.pop()
                break
        i -= 1
    return [x[0] for x in s]


def _dedup(items: Sequence[str]) -> List[str]:
    out: List[str] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


def _string_array(v: Any, path: Path) -> List[str]:
    """x-bake's stringArray: a list of strings, or one string split on spaces."""
    if v is None:
        return []
    if isinstance(v, list):
        out = []
        for i, x in enumerate(v):
            if isinstance(x, (dict, list)):
                raise _ComposeError(f"{_path_str((*path, i))} must be a string", (*path, i))
            out.append("" if x is None else _go_str(x))
        return out
    if isinstance(v, dict):
        raise _ComposeError(f"{_path_str(path)} must be a string or a list of strings", path)
    return _go_str(v).split()


class _Target:
    def __init__(self) -> None:
        self.attrs: Dict[str, Any] = {}
        self.cache_from: List[Tuple[str, Any]] = []
        self.cache_to: List[Tuple[str, Any]] = []
        self.secrets: List[Tuple[str, Any]] = []
        self.ssh: List[Tuple[str, Any]] = []
        self.outputs: List[Tuple[str, Any]] = []


def _service_env(
    svc: Dict[str, Any], name: str, env: Mapping[str, str], workdir: str
) -> Dict[str, Optional[str]]:
    environment: Dict[str, Optional[str]] = {}

    def look(k: str) -> Optional[str]:
        v = environment.get(k)
        if v is not None:
            return v
        return env.get(k)

    env_files = svc.get("env_file")
    if isinstance(env_files, str):
        env_files = [env_files]
    for i, ef in enumerate(env_files or []):
        required = True
        if isinstance(ef, dict):
            required = bool(ef.get("required", True))
            ef = ef.get("path", "")
        p = _abs_path("", ef)
        full = p if os.path.isabs(p) else os.path.join(workdir, p)
        if not os.path.exists(full):
            if required:
                raise _ComposeError(f"env file {full} not found", ("services", name, "env_file", i))
            continue
        try:
            with open(full, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise _ComposeError(
                f"failed to read env file {full}: {e.strerror}", ("services", name, "env_file", i)
            ) from None
        register_source(full, text)
        environment.update(parse_dotenv(text, look, full))
    for k, v in _mapping_with_equals(svc.get("environment")).items():
        environment[k] = v if v is not None else env.get(k)
    return environment


def _to_target(
    name: str, svc: Dict[str, Any], secrets_def: Dict[str, Any], env: Mapping[str, str],
    workdir: str,
) -> _Target:  # fmt: skip
    sp: Path = ("services", name)
    bp: Path = (*sp, "build")
    build = svc["build"]
    if isinstance(build, str):
        build = {"context": build}
    t = _Target()
    a = t.attrs

    ctx = build.get("context")
    if isinstance(ctx, str) and ctx:
        if not _is_remote_context(ctx):
            ctx = _abs_path("", ctx)
        if ctx:
            a["context"] = ctx
    for key, attr in (("dockerfile", "dockerfile"), ("dockerfile_inline", "dockerfile-inline")):
        v = build.get(key)
        if isinstance(v, str) and v:
            a[attr] = v
    if isinstance(build.get("additional_contexts"), (dict, list)):
        contexts: Dict[str, str] = {}
        for k, v in _mapping_with_equals(build["additional_contexts"]).items():
            v = v or ""
            if "://" not in v and not _is_remote_context(v) and v:
                v = _abs_path("", v)
            contexts[k] = v
        a["contexts"] = _named_contexts(contexts)
    shm = build.get("shm_size")
    if shm is not None:
        n = shm if isinstance(shm, int) else _ram_in_bytes(_go_str(shm), (*bp, "shm_size"))
        if n > 0:
            a["shm-size"] = _bytes_size(n)
    network = build.get("network")
    if isinstance(network, str) and network:
        a["network"] = network
    if isinstance(build.get("ulimits"), dict):
        ulimits = _ulimits(build["ulimits"], (*bp, "ulimits"))
        if ulimits:
            a["ulimits"] = ulimits
    hosts = _hosts(build.get("extra_hosts"), (*bp, "extra_hosts"))
    if hosts:
        a["extra-hosts"] = {k: ",".join(v) for k, v in hosts.items()}

    ssh_raw = build.get("ssh")
    if isinstance(ssh_raw, dict):
        for k, v in ssh_raw.items():
            p = "" if v is None else _go_str(v)
            t.ssh.append((f"{k}={p}" if p else str(k), (str(k), [p] if p else [])))
    elif isinstance(ssh_raw, list):
        for item in ssh_raw:
            s = _go_str(item)
            k, _, p = s.partition("=")
            t.ssh.append((f"{k}={p}" if p else k, (k, [p] if p else [])))
    t.ssh.sort(key=lambda x: x[1])

    for i, bs in enumerate(build.get("secrets") or []):
        source = bs.get("source", "") if isinstance(bs, dict) else _go_str(bs)
        sdef = secrets_def.get(source) or {}
        if sdef.get("external") is not None and _to_bool(
            sdef["external"], ("secrets", source, "external")
        ):
            raise _ComposeError(f"unsupported external secret {sdef.get('name') or source}",
                                (*bp, "secrets", i))  # fmt: skip
        fields = []
        if source:
            fields.append(_csv_field(f"id={source}"))
        file_ = sdef.get("file")
        if isinstance(file_, str) and file_:
            file_ = _abs_path("", file_)
            fields.append(_csv_field(f"src={file_}"))
        senv = sdef.get("environment")
        if isinstance(senv, str) and senv:
            fields.append(_csv_field(f"env={senv}"))
        s = ",".join(fields)
        t.secrets.append((s, (source, file_ or "", senv or "")))

    labels = _labels(build.get("labels"))
    if labels:
        a["labels"] = labels
    t.cache_from = _cache_entries(_str_items(build.get("cache_from")), (*bp, "cache_from"))
    t.cache_to = _cache_entries(_str_items(build.get("cache_to")), (*bp, "cache_to"))

    attests = []
    for key in ("sbom", "provenance"):
        v = build.get(key)
        if v is None:
            continue
        sv = _go_str(v)
        if sv == "":
            continue
        if sv in ("1", "t", "T", "TRUE", "true", "True"):
            attests.append(f"type={key}")
        elif sv in ("0", "f", "F", "FALSE", "false", "False"):
            attests.append(f"type={key},disabled=true")
        else:
            attests.append(f"type={key},{sv}")
    if attests:
        a["attest"] = attests

    if build.get("no_cache") is not None and _to_bool(build["no_cache"], (*bp, "no_cache")):
        a["no-cache"] = True
    if build.get("pull") is not None and _to_bool(build["pull"], (*bp, "pull")):
        a["pull"] = True

    tags = _str_items(build.get("tags"))
    if tags:
        a["tags"] = list(tags)

    service_env = _service_env(svc, name, env, workdir)
    args: Dict[str, str] = {}
    for k, arg in _mapping_with_equals(build.get("args")).items():
        if arg is None:
            from_service = service_env.get(k)
            arg = from_service if from_service is not None else env.get(k)
        if arg is not None:
            args[k] = arg
    if args:
        a["args"] = args
    platforms = _str_items(build.get("platforms"))
    if platforms:
        a["platforms"] = list(platforms)

    ext = build.get("x-bake")
    if ext is not None:
        _apply_xbake(t, ext, (*bp, "x-bake"))

    target = build.get("target")
    if isinstance(target, str) and target:
        a["target"] = target
    image = svc.get("image")
    if not a.get("tags") and isinstance(image, str) and image:
        a["tags"] = [image]

    for attr, entries in (
        ("cache-from", t.cache_from),
        ("cache-to", t.cache_to),
        ("secret", t.secrets),
        ("ssh", t.ssh),
        ("output", t.outputs),
    ):
        if entries:
            a[attr] = [e[0] for e in entries]
    return t


def _str_items(v: Any) -> List[str]:
    if not isinstance(v, list):
        return []
    return [_go_str(x) for x in v]


def _apply_xbake(t: _Target, ext: Any, path: Path) -> None:
    if not isinstance(ext, dict):
        raise _ComposeError(f"{_path_str(path)} must be a mapping", path)
    a = t.attrs

    def arr(key: str) -> List[str]:
        return _string_array(ext.get(key), (*path, key))

    tags = arr("tags")
    if tags:
        a["tags"] = _dedup(list(a.get("tags", [])) + tags)
    cf = arr("cache-from")
    if cf:
        t.cache_from = _merge_entries(t.cache_from, _cache_entries(cf, (*path, "cache-from")))
    ct = arr("cache-to")
    if ct:
        t.cache_to = _merge_entries(t.cache_to, _cache_entries(ct, (*path, "cache-to")))
    secrets = arr("secret")
    if secrets:
        parsed = [(s, _secret_key(s, (*path, "secret"))) for s in secrets]
        t.secrets = _merge_entries(t.secrets, parsed)
    ssh = arr("ssh")
    if ssh:
        t.ssh = _merge_entries(t.ssh, [(s, _ssh_key(s)) for s in ssh])
        t.ssh.sort(key=lambda x: x[1])
    platforms = arr("platforms")
    if platforms:
        a["platforms"] = _dedup(list(a.get("platforms", [])) + platforms)
    outputs = arr("output")
    if outputs:
        parsed = [(s, _export_key(s, (*path, "output"))) for s in outputs]
        t.outputs = _merge_entries(t.outputs, parsed)
    for key in ("pull", "no-cache"):
        if ext.get(key) is not None:
            v = ext[key]
            if not isinstance(v, bool):
                raise _ComposeError(
                    f"{_path_str((*path, key))}: cannot unmarshal {_go_str(v)!r} into bool",
                    (*path, key),
                )
            a[key] = v
    ncf = arr("no-cache-filter")
    if ncf:
        a["no-cache-filter"] = _dedup(list(a.get("no-cache-filter", [])) + ncf)
    contexts = ext.get("contexts")
    if contexts is not None:
        if not isinstance(contexts, dict):
            raise _ComposeError(
                f"{_path_str((*path, 'contexts'))} must be a mapping", (*path, "contexts")
            )
        if contexts:
            merged = dict(a.get("contexts") or {})
            merged.update(_named_contexts({str(k): _go_str(v) for k, v in contexts.items()}))
            a["contexts"] = merged


def _merge_entries(
    base: List[Tuple[str, Any]], other: List[Tuple[str, Any]]
) -> List[Tuple[str, Any]]:
    merged = base + other
    kept = _remove_dupes(merged)
    # keep the (string, key) pairs in removeDupes' order
    out: List[Tuple[str, Any]] = []
    pool = list(merged)
    for s in kept:
        for i, item in enumerate(pool):
            if item[0] == s:
                out.append(pool.pop(i))
                break
    return out


def _check_consistency(model: Dict[str, Any]) -> None:
    services = model.get("services") or {}
    secrets = model.get("secrets") or {}
    for name, svc in services.items():
        build = svc.get("build")
        if build is None and not svc.get("image"):
            raise _ComposeError(
                f'service "{name}" has neither an image nor a build context specified: '
                "invalid compose project",
                ("services", name),
            )
        if isinstance(build, dict):
            for i, bs in enumerate(build.get("secrets") or []):
                source = bs.get("source") if isinstance(bs, dict) else bs
                if source not in secrets:
                    raise _ComposeError(
                        f'service "{name}" refers to undefined build secret {source}: '
                        "invalid compose project",
                        ("services", name, "build", "secrets", i),
                    )
    for name, sec in secrets.items():
        if sec.get("external") is not None and _to_bool(sec["external"], ("secrets", name)):
            continue
        if not sec.get("file") and not sec.get("environment") and sec.get("content") is None:
            raise _ComposeError(
                f'secret "{name}" must declare either `file` or `environment`: '
                "invalid compose project",
                ("secrets", name),
            )


def _compose_env(env: Mapping[str, str], workdir: str, dotenv: bool) -> Dict[str, str]:
    envs = load_dotenv(env, workdir) if dotenv else dict(env)
    project = envs.get("COMPOSE_PROJECT_NAME") or _DEFAULT_PROJECT
    envs.setdefault("COMPOSE_PROJECT_NAME", project)
    return envs


def load_compose(
    files: Sequence[Tuple[str, str]],
    env: Mapping[str, str],
    workdir: Optional[str] = None,
    dotenv: bool = True,
) -> Tuple[List[Group], List[TargetDef]]:
    """Bake groups and targets from compose files ``[(name, text)]``.

    ``env`` is the environment for interpolation; ``workdir`` (default: the
    current directory) is where ``.env``, ``env_file``, ``include`` and
    ``extends.file`` paths are read from.  Raises :class:`BakeryError`.
    """
    wd = workdir if workdir is not None else os.getcwd()
    envs = _compose_env(env, wd, dotenv)
    model = _Model(envs, wd)
    try:
        data = _load_model(files, model)
        _check_consistency(data)
        services = data.get("services") or {}
        secrets_def = data.get("secrets") or {}
        if not services:
            return [], []
        members: List[str] = []
        targets: List[TargetDef] = []
        for name, svc in services.items():
            if svc.get("build") is None:
                continue
            tname = _sanitize(name)
            if not _TARGET_NAME_RE.match(tname):
                raise _ComposeError(
                    f'invalid service name "{tname}": only "{_TARGET_NAME_CHARS}" are allowed',
                    ("services", name),
                )
            t = _to_target(name, svc, secrets_def, envs, wd)
            members.append(tname)
            targets.append((tname, t.attrs))
        return [("default", members)], targets
    except _ComposeError as e:
        raise model.error(e) from None


def is_compose(
    data: str,
    filename: str,
    env: Optional[Mapping[str, str]] = None,
    workdir: Optional[str] = None,
) -> bool:
    """buildx's validateComposeFile decision: ``.yml``/``.yaml`` files are
    compose files, ``.json``/``.hcl`` files are not, and any other file is one
    when it loads as a compose file."""
    low = filename.lower()
    if low.endswith((".yml", ".yaml")):
        return True
    if low.endswith((".json", ".hcl")):
        return False
    wd = workdir if workdir is not None else os.getcwd()
    try:
        envs = _compose_env(env or {}, wd, True)
        model = _Model(envs, wd)
        try:
            _load_model([(filename, data)], model)
        except _ComposeError as e:
            raise model.error(e) from None
    except BakeryError:
        return False
    return True
