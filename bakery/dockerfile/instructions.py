"""Typed Dockerfile instructions, following BuildKit's ``instructions``
package: :func:`parse_instructions` turns Dockerfile text into a
:class:`Dockerfile` of stages.

Values are kept as written (variables unexpanded; see
:mod:`bakery.dockerfile.expand` for what gets expanded where).  Checks that
BuildKit makes while parsing are made here with BuildKit's wording; a few
that BuildKit makes only when it converts the file to build steps (mount
options, ``--chmod``) are also made here when the value has nothing to
expand, so that mistakes surface with a position before any build starts.

Deliberately the same as BuildKit:

* unknown instructions are reported (with a suggestion) only here, in
  order, so an earlier error wins;
* flags are only checked for instructions that BuildKit checks them for —
  ARG, STOPSIGNAL and ``HEALTHCHECK NONE`` ignore them;
* an ONBUILD trigger is kept as text (``expression``); it is parsed
  (``trigger``) on a best-effort basis, because BuildKit only parses it
  when a downstream build runs it; only ``ONBUILD ONBUILD|FROM|MAINTAINER``
  are rejected up front.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from bakery.errors import BakeryError, Pos

from . import _go
from .parser import Directive, Heredoc, Node, ParseResult, Warning, parse, parse_heredoc

__all__ = [
    "INSTRUCTIONS",
    "AddInstruction",
    "ArgDef",
    "ArgInstruction",
    "CmdInstruction",
    "CopyInstruction",
    "Dockerfile",
    "EntrypointInstruction",
    "EnvInstruction",
    "ExposeInstruction",
    "FromInstruction",
    "HealthcheckInstruction",
    "Instruction",
    "KeyValue",
    "LabelInstruction",
    "MaintainerInstruction",
    "Mount",
    "OnbuildInstruction",
    "RunInstruction",
    "ShellInstruction",
    "SourceContent",
    "Stage",
    "StopsignalInstruction",
    "UserInstruction",
    "VolumeInstruction",
    "WorkdirInstruction",
    "parse_chmod",
    "parse_instruction",
    "parse_instructions",
    "parse_mount",
    "to_data",
]

INSTRUCTIONS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
    "WORKDIR",
)


class _Err(Exception):
    """An instruction error; :func:`parse_instruction` adds the position."""


# ---------------------------------------------------------------------------
# Data model


@dataclass(frozen=True)
class Instruction:
    """Common to every instruction: where it is and what it said.

    ``keyword`` is as written (any case); ``original`` the logical line
    (continuations joined); ``source`` the physical lines it spans, heredoc
    bodies included; ``end_line`` its last line.
    """

    pos: Pos
    end_line: int
    keyword: str
    original: str
    source: Tuple[str, ...]

    @property
    def name(self) -> str:
        return self.keyword.upper()


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    # False for the legacy ``ENV key value`` / ``LABEL key value`` form.
    delim: bool = True


@dataclass(frozen=True)
class ArgDef:
    key: str
    value: Optional[str] = None


@dataclass(frozen=True)
class SourceContent:
    """A heredoc used as an ADD/COPY source."""

    path: str
    data: str
    expand: bool


@dataclass(frozen=True)
class Mount:
    """One ``RUN --mount``; values unexpanded (see :func:`parse_mount`)."""

    type: str = "bind"
    from_: str = ""
    source: str = ""
    target: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = ""
    required: bool = False
    size: Optional[int] = None
    mode: Optional[int] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    env: Optional[str] = None
    # Options whose values still hold variables: checked after expansion.
    deferred: Tuple[str, ...] = ()


@dataclass(frozen=True)
class FromInstruction(Instruction):
    base: str
    stage_name: Optional[str]  # lower-cased, as BuildKit compares them
    platform: Optional[str]


@dataclass(frozen=True)
class RunInstruction(Instruction):
    command: Tuple[str, ...]
    prepend_shell: bool  # shell form
    heredocs: Tuple[Heredoc, ...]
    mounts: Tuple[Mount, ...]
    mount_specs: Tuple[str, ...]  # raw --mount values, for expansion later
    network: str
    security: str
    flags_used: Tuple[str, ...]


@dataclass(frozen=True)
class CmdInstruction(Instruction):
    command: Tuple[str, ...]
    prepend_shell: bool
    heredocs: Tuple[Heredoc, ...]


@dataclass(frozen=True)
class EntrypointInstruction(Instruction):
    command: Optional[Tuple[str, ...]]  # None: reset (``ENTRYPOINT []``)
    prepend_shell: bool
    heredocs: Tuple[Heredoc, ...]


@dataclass(frozen=True)
class LabelInstruction(Instruction):
    labels: Tuple[KeyValue, ...]


@dataclass(frozen=True)
class MaintainerInstruction(Instruction):
    maintainer: str


@dataclass(frozen=True)
class ExposeInstruction(Instruction):
    ports: Tuple[str, ...]  # sorted, as BuildKit keeps them


@dataclass(frozen=True)
class EnvInstruction(Instruction):
    env: Tuple[KeyValue, ...]


@dataclass(frozen=True)
class AddInstruction(Instruction):
    sources: Tuple[str, ...]
    dest: str
    contents: Tuple[SourceContent, ...]
    chown: str
    chmod: str
    link: bool
    keep_git_dir: Optional[bool]
    checksum: str
    excludes: Tuple[str, ...]
    unpack: Optional[bool]


@dataclass(frozen=True)
class CopyInstruction(Instruction):
    sources: Tuple[str, ...]
    dest: str
    contents: Tuple[SourceContent, ...]
    from_: str
    chown: str
    chmod: str
    link: bool
    parents: bool
    excludes: Tuple[str, ...]


@dataclass(frozen=True)
class VolumeInstruction(Instruction):
    volumes: Tuple[str, ...]


@dataclass(frozen=True)
class UserInstruction(Instruction):
    user: str


@dataclass(frozen=True)
class WorkdirInstruction(Instruction):
    path: str


@dataclass(frozen=True)
class ArgInstruction(Instruction):
    args: Tuple[ArgDef, ...]


@dataclass(frozen=True)
class OnbuildInstruction(Instruction):
    expression: str  # the trigger's text, heredocs appended as BuildKit does
    trigger: Optional[Instruction]  # None when it would only fail downstream


@dataclass(frozen=True)
class StopsignalInstruction(Instruction):
    signal: str


@dataclass(frozen=True)
class HealthcheckInstruction(Instruction):
    """``test`` is the image-config form: ``("NONE",)``, ``("CMD", ...)``
    or ``("CMD-SHELL", "cmd")``; durations are nanoseconds (None: unset)."""

    test: Tuple[str, ...]
    interval: Optional[int] = None
    timeout: Optional[int] = None
    start_period: Optional[int] = None
    start_interval: Optional[int] = None
    retries: Optional[int] = None


@dataclass(frozen=True)
class ShellInstruction(Instruction):
    shell: Tuple[str, ...]


@dataclass(frozen=True)
class Stage:
    index: int
    from_: FromInstruction
    commands: Tuple[Instruction, ...]

    @property
    def name(self) -> Optional[str]:
        return self.from_.stage_name

    @property
    def base(self) -> str:
        return self.from_.base

    @property
    def platform(self) -> Optional[str]:
        return self.from_.platform


@dataclass(frozen=True)
class Dockerfile:
    filename: str
    escape: str
    directives: Tuple[Directive, ...]
    meta_args: Tuple[ArgInstruction, ...]  # ARGs before the first FROM
    stages: Tuple[Stage, ...]
    warnings: Tuple[Warning, ...]
    ast: ParseResult

    @property
    def syntax(self) -> Optional[str]:
        return self.ast.directive("syntax")

    @property
    def check(self) -> Optional[str]:
        return self.ast.directive("check")


# ---------------------------------------------------------------------------
# Flags (BuildKit's BFlags)


class _Flags:
    def __init__(self, args: Tuple[str, ...]) -> None:
        self.args = args
        self.kinds: Dict[str, str] = {}
        self.values: Dict[str, Any] = {}
        self.used: List[str] = []

    def add_bool(self, name: str, default: bool = False) -> None:
        self.kinds[name] = "bool"
        self.values[name] = default

    def add_string(self, name: str, default: str = "") -> None:
        self.kinds[name] = "string"
        self.values[name] = default

    def add_strings(self, name: str) -> None:
        self.kinds[name] = "strings"
        self.values[name] = []

    def parse(self) -> None:
        for a in self.args:
            if a == "--":
                break
            if not a.startswith("--"):
                raise _Err(f"arg should start with -- : {a}")
            flag_name, has_value, value = a.partition("=")
            name = flag_name[2:]
            kind = self.kinds.get(name)
            if kind is None:
                raise _Err(
                    _go.with_suggestion(f"unknown flag: {flag_name}", name, list(self.kinds), True)
                )
            if name in self.used and kind != "strings":
                raise _Err(f"duplicate flag specified: {flag_name}")
            self.used.append(name)
            if kind == "bool":
                if has_value and value == "":
                    raise _Err(f"missing a value on flag: {flag_name}")
                low = value.lower()
                if low in ("", "true"):
                    self.values[name] = True
                elif low == "false":
                    self.values[name] = False
                else:
                    raise _Err(f"expecting boolean value for flag {flag_name}, not: {value}")
            else:
                if not has_value:
                    raise _Err(f"missing a value on flag: {flag_name}")
                if kind == "strings":
                    self.values[name].append(value)
                else:
                    self.values[name] = value

    def get(self, name: str) -> Any:
        return self.values[name]

    def opt_bool(self, name: str) -> Optional[bool]:
        return self.values[name] if name in self.used else None


# ---------------------------------------------------------------------------
# Mounts


_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING = ("shared", "private", "locked")
_MOUNT_KEYS = (
    "type", "from", "source", "target", "readonly", "id", "sharing", "required", "size",
    "mode", "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env",
)


def _csv_fields(value: str) -> List[str]:
    """One CSV record, with Go encoding/csv's quoting rules."""
    fields: List[str] = []
    i = 0
    n = len(value)
    while True:
        if i < n and value[i] == '"':
            i += 1
            buf: List[str] = []
            while True:
                j = value.find('"', i)
                if j < 0:
                    raise _Err('failed to parse csv mounts: extraneous or missing " in quoted-field')
                buf.append(value[i:j])
                i = j + 1
                if i < n and value[i] == '"':
                    buf.append('"')
                    i += 1
                    continue
                break
            if i < n and value[i] != ",":
                raise _Err('failed to parse csv mounts: extraneous or missing " in quoted-field')
            fields.append("".join(buf))
        else:
            j = value.find(",", i)
            end = n if j < 0 else j
            f = value[i:end]
            if '"' in f:
                raise _Err('failed to parse csv mounts: bare " in non-quoted-field')
            fields.append(f)
            i = end
        if i >= n:
            return fields
        i += 1  # the comma
        if i == n:
            fields.append("")
            return fields


def parse_mount(spec: str, expand: Optional[Callable[[str], str]] = None,
                escape: str = "\\") -> Mount:
    """Parse one ``--mount`` value the way BuildKit does.

    With ``expand`` (a single-word expander with the build's ARG/ENV values)
    every value is expanded and checked.  Without it (parse time) values
    holding anything to expand are kept as written and left unchecked, and
    recorded in ``Mount.deferred``; a ``from`` holding a variable is an
    error, as in BuildKit.  Raises ``_Err`` (a message, no position).
    """
    fields = _csv_fields(spec)
    typ = "bind"
    type_known = True
    values: Dict[str, Any] = {}
    ro: Optional[bool] = None
    deferred: List[str] = []
    special = "$'\"" + escape
    for fld in fields:
        key, has_eq, value = fld.partition("=")
        key = key.lower()
        if not has_eq:
            if key in ("readonly", "ro"):
                ro = True
                continue
            if key in ("readwrite", "rw"):
                ro = False
                continue
            if key == "required":
                if typ in ("secret", "ssh") or not type_known:
                    values["required"] = True
                    continue
                raise _Err(f"unexpected key '{key}' for mount type '{typ}'")
            raise _Err(f"invalid field '{fld}' must be a key=value pair")
        if expand is not None:
            value = expand(value)
        elif key == "from":
            idx = value.find("$")
            if idx != -1 and idx != len(value) - 1:
                raise _Err(f"'{key}' doesn't support variable expansion, define alias stage instead")
        elif any(c in value for c in special):
            if key not in _MOUNT_KEYS:
                raise _Err(_go.with_suggestion(
                    f"unexpected key '{key}' in '{fld}'", key, _MOUNT_KEYS, True))
            deferred.append(key)
            if key == "type":
                type_known = False
            canon = _canon_key(key)
            if canon in ("source", "target", "id", "env"):
                values[canon] = value
            continue
        if key == "type":
            if value.lower() not in _MOUNT_TYPES:
                raise _Err(_go.with_suggestion(
                    f"unsupported mount type {_go.quote(value)}", value, _MOUNT_TYPES, True))
            typ = value.lower()
            type_known = True
        elif key == "from":
            values["from_"] = value
        elif key in ("source", "src"):
            values["source"] = value
        elif key in ("target", "dst", "destination"):
            values["target"] = value
        elif key in ("readonly", "ro", "readwrite", "rw"):
            b = _go.parse_bool(value)
            if b is None:
                raise _Err(f"invalid value for {key}: {value}")
            ro = b if key in ("readonly", "ro") else not b
        elif key == "required":
            if type_known and typ not in ("secret", "ssh"):
                raise _Err(f"unexpected key '{key}' for mount type '{typ}'")
            b = _go.parse_bool(value)
            if b is None:
                raise _Err(f"invalid value for {key}: {value}")
            values["required"] = b
        elif key == "size":
            if type_known and typ != "tmpfs":
                raise _Err(f"unexpected key '{key}' for mount type '{typ}'")
            size = _go.ram_in_bytes(value)
            if size is None:
                raise _Err(f"invalid value for {key}: {value}")
            values["size"] = size
        elif key == "id":
            values["id"] = value
        elif key == "sharing":
            if value.lower() not in _SHARING:
                raise _Err(f"unsupported sharing value {_go.quote(value)}")
            values["sharing"] = value.lower()
        elif key == "mode":
            mode = _go.parse_uint(value, 8, 32)
            if mode is None:
                raise _Err(f"invalid value {value} for mode")
            values["mode"] = mode
        elif key in ("uid", "gid"):
            num = _go.parse_uint(value, 10, 32)
            if num is None:
                raise _Err(f"invalid value {value} for {key}")
            values[key] = num
        elif key == "env":
            values["env"] = value
        else:
            raise _Err(_go.with_suggestion(
                f"unexpected key '{key}' in '{fld}'", key, _MOUNT_KEYS, True))

    if ro is None:
        ro = typ not in ("cache", "tmpfs")
    if type_known:
        if typ not in ("secret", "ssh", "cache"):
            for k in ("mode", "uid", "gid"):
                if values.get(k) is not None:
                    raise _Err(f"{k} not allowed for {_go.quote(typ)} type mounts")
        if values.get("sharing") and typ != "cache":
            raise _Err(f"invalid cache sharing set for {typ} mount")
        if typ == "secret":
            if values.get("from_"):
                raise _Err("secret mount should not have a from")
            if values.get("sharing"):
                raise _Err("secret mount should not define sharing")
            if not values.get("source") and not values.get("target") and not values.get("id"):
                raise _Err("invalid secret mount. one of source, target required")
            if values.get("source") and values.get("id"):
                raise _Err("both source and id can't be set")
    return Mount(type=typ, readonly=ro, deferred=tuple(deferred), **values)


def _canon_key(key: str) -> str:
    return {
        "from": "from_", "src": "source", "dst": "target", "destination": "target",
    }.get(key, key)


_SYMBOLIC = re.compile(r"[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+(?:,[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+)*")


def parse_chmod(value: str) -> Union[int, str]:
    """An ADD/COPY ``--chmod`` value: an octal mode (int) or a symbolic
    mode (str, e.g. ``u+x,go-w``).  Raises ``ValueError`` with BuildKit's
    message otherwise."""
    m = _go.parse_uint(value, 8, 32)
    if m is not None and m <= 0o7777:
        return m
    if m is None and _SYMBOLIC.fullmatch(value):
        return value
    raise ValueError(
        f"invalid chmod parameter: '{value}'. it should be octal string and between 0 and 07777"
    )


# ---------------------------------------------------------------------------
# Instruction parsers


def _err_at_least_one(cmd: str) -> _Err:
    return _Err(f"{cmd} requires at least one argument")


def _err_exactly_one(cmd: str) -> _Err:
    return _Err(f"{cmd} requires exactly one argument")


def _err_no_dest(cmd: str) -> _Err:
    return _Err(
        f"{cmd} requires at least two arguments, but only one was provided. "
        "Destination could not be determined."
    )


def _err_blank_names(cmd: str) -> _Err:
    return _Err(f"{cmd} names can not be blank")


def _common(node: Node) -> Dict[str, Any]:
    return {
        "pos": node.pos,
        "end_line": node.end_line,
        "keyword": node.value,
        "original": node.original,
        "source": node.source,
    }


def _kvps(args: Tuple[str, ...], cmd: str) -> Tuple[KeyValue, ...]:
    if not args:
        raise _err_at_least_one(cmd)
    if len(args) % 3 != 0:
        raise _Err(f"Bad input to {cmd}, too many arguments")
    out = []
    for j in range(0, len(args), 3):
        if args[j] == "":
            raise _err_blank_names(cmd)
        out.append(KeyValue(args[j], args[j + 1], args[j + 2] != ""))
    return tuple(out)


def _json_args(node: Node) -> Tuple[str, ...]:
    if not node.args:
        return ()
    if node.json:
        return node.args
    return (" ".join(node.args),)


def _p_env(node: Node, fl: _Flags) -> Instruction:
    fl.parse()
    return EnvInstruction(env=_kvps(node.args, "ENV"), **_common(node))


def _p_label(node: Node, fl: _Flags) -> Instruction:
    fl.parse()
    return LabelInstruction(labels=_kvps(node.args, "LABEL"), **_common(node))


def _p_maintainer(node: Node, fl: _Flags) -> Instruction:
    if len(node.args) != 1:
        raise _err_exactly_one("MAINTAINER")
    fl.parse()
    return MaintainerInstruction(maintainer=node.args[0], **_common(node))


def _sources_and_dest(node: Node, cmd: str) -> Tuple[Tuple[str, ...], str, Tuple[SourceContent, ...]]:
    srcs, dest = node.args[:-1], node.args[-1]
    if _heredoc_word(dest) is not None:
        raise _Err(f"{cmd} cannot accept a heredoc as a destination")
    lookup = {h.name: h for h in node.heredocs}
    paths: List[str] = []
    contents: List[SourceContent] = []
    for src in srcs:
        h = _heredoc_word(src)
        if h is None:
            paths.append(src)
            continue
        body = lookup.get(h.name)
        data = body.content if body is not None else ""
        if h.chomp:
            data = Heredoc(h.name, chomp=True, content=data).text()
        contents.append(SourceContent(path=h.name, data=data, expand=h.expand))
    return tuple(paths), dest, tuple(contents)


def _heredoc_word(word: str) -> Optional[Heredoc]:
    try:
        return parse_heredoc(word)
    except Exception:
        return None


def _check_chmod(value: str, escape: str) -> None:
    if value and not any(c in value for c in "$'\"" + escape):
        try:
            parse_chmod(value)
        except ValueError as e:
            raise _Err(str(e)) from None


def _p_add(node: Node, fl: _Flags, escape: str) -> Instruction:
    if len(node.args) < 2:
        raise _err_no_dest("ADD")
    fl.add_string("chown")
    fl.add_string("chmod")
    fl.add_bool("link")
    fl.add_bool("keep-git-dir")
    fl.add_string("checksum")
    fl.add_strings("exclude")
    fl.add_bool("unpack")
    fl.parse()
    srcs, dest, contents = _sources_and_dest(node, "ADD")
    _check_chmod(fl.get("chmod"), escape)
    return AddInstruction(
        sources=srcs, dest=dest, contents=contents,
        chown=fl.get("chown"), chmod=fl.get("chmod"), link=fl.get("link"),
        keep_git_dir=fl.opt_bool("keep-git-dir"), checksum=fl.get("checksum"),
        excludes=tuple(fl.get("exclude")), unpack=fl.opt_bool("unpack"),
        **_common(node),
    )


def _p_copy(node: Node, fl: _Flags, escape: str) -> Instruction:
    if len(node.args) < 2:
        raise _err_no_dest("COPY")
    fl.add_string("chown")
    fl.add_string("from")
    fl.add_string("chmod")
    fl.add_bool("link")
    fl.add_bool("parents")
    fl.add_strings("exclude")
    fl.parse()
    srcs, dest, contents = _sources_and_dest(node, "COPY")
    _check_chmod(fl.get("chmod"), escape)
    return CopyInstruction(
        sources=srcs, dest=dest, contents=contents, from_=fl.get("from"),
        chown=fl.get("chown"), chmod=fl.get("chmod"), link=fl.get("link"),
        parents=fl.get("parents"), excludes=tuple(fl.get("exclude")),
        **_common(node),
    )


_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")


def _p_from(node: Node, fl: _Flags) -> Instruction:
    args = node.args
    name: Optional[str] = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            raise _Err(
                f"invalid name for build stage: {_go.quote(args[2])}, "
                "name can't start with a number or contain symbols"
            )
    elif len(args) != 1:
        raise _Err("FROM requires either one or three arguments")
    fl.add_string("platform")
    fl.parse()
    return FromInstruction(
        base=args[0], stage_name=name, platform=fl.get("platform") or None, **_common(node)
    )


_ONBUILD_PREFIX = re.compile(r"^[\t\n\v\f\r ]*ONBUILD[\t\n\v\f\r ]*", re.I)


def _p_onbuild(node: Node, fl: _Flags, escape: str) -> Instruction:
    if not node.args:
        raise _err_at_least_one("ONBUILD")
    fl.parse()
    trig = _go.trim_space(node.args[0]).upper()
    if trig == "ONBUILD":
        raise _Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trig in ("MAINTAINER", "FROM"):
        raise _Err(f"{trig} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    for h in node.heredocs:
        expression += "\n" + h.content + h.name
    trigger: Optional[Instruction] = None
    if node.sub is not None:
        sub = dataclasses.replace(node.sub, heredocs=node.heredocs, source=node.source)
        try:
            trigger = parse_instruction(sub, escape)
        except BakeryError:
            trigger = None
    return OnbuildInstruction(expression=expression, trigger=trigger, **_common(node))


def _p_workdir(node: Node, fl: _Flags) -> Instruction:
    if len(node.args) != 1:
        raise _err_exactly_one("WORKDIR")
    fl.parse()
    return WorkdirInstruction(path=node.args[0], **_common(node))


def _p_run(node: Node, fl: _Flags, escape: str) -> Instruction:
    fl.add_strings("mount")
    fl.add_string("network", "default")
    fl.add_string("security", "sandbox")
    fl.parse()
    specs = tuple(fl.get("mount"))
    mounts = tuple(parse_mount(s, None, escape) for s in specs)
    network = fl.get("network")
    if network not in ("default", "none", "host"):
        raise _Err(f"invalid network mode {_go.quote(network)}")
    security = fl.get("security")
    if security not in ("insecure", "sandbox"):
        raise _Err(f"security {_go.quote(security)} is not valid")
    return RunInstruction(
        command=_json_args(node), prepend_shell=not node.json, heredocs=node.heredocs,
        mounts=mounts, mount_specs=specs, network=network, security=security,
        flags_used=tuple(fl.used), **_common(node),
    )


def _p_cmd(node: Node, fl: _Flags) -> Instruction:
    fl.parse()
    return CmdInstruction(
        command=_json_args(node), prepend_shell=not node.json, heredocs=node.heredocs,
        **_common(node),
    )


def _p_entrypoint(node: Node, fl: _Flags) -> Instruction:
    fl.parse()
    cmd = _json_args(node)
    return EntrypointInstruction(
        command=cmd or None, prepend_shell=not node.json, heredocs=node.heredocs,
        **_common(node),
    )


_MIN_DURATION = 1_000_000  # 1ms, container.MinimumDuration


def _interval(fl: _Flags, name: str) -> Optional[int]:
    s = fl.get(name)
    if s == "":
        return None
    d, msg = _go.parse_duration(s)
    if d is None:
        raise _Err(msg)
    if d == 0:
        return 0
    if d < _MIN_DURATION:
        raise _Err(f"Interval {_go.quote(name)} cannot be less than 1ms")
    return d


def _p_healthcheck(node: Node, fl: _Flags) -> Instruction:
    if not node.args:
        raise _err_at_least_one("HEALTHCHECK")
    typ = node.args[0].upper()
    args = node.args[1:]
    if typ == "NONE":
        if args:
            raise _Err("HEALTHCHECK NONE takes no arguments")
        return HealthcheckInstruction(test=("NONE",), **_common(node))
    for f in ("interval", "timeout", "start-period", "start-interval", "retries"):
        fl.add_string(f)
    fl.parse()
    if typ != "CMD":
        raise _Err(f"Unknown type {_go.quote(typ)} in HEALTHCHECK (try CMD)")
    if not args:
        raise _Err("Missing command after HEALTHCHECK CMD")
    cmd = args if node.json else (" ".join(args),)
    test = ("CMD", *cmd) if node.json else ("CMD-SHELL", *cmd)
    interval = _interval(fl, "interval")
    timeout = _interval(fl, "timeout")
    start_period = _interval(fl, "start-period")
    start_interval = _interval(fl, "start-interval")
    retries: Optional[int] = None
    if fl.get("retries") != "":
        retries, msg = _go.parse_int(fl.get("retries"), 32)
        if retries is None:
            raise _Err(msg)
        if retries < 0:
            raise _Err(f"--retries cannot be negative ({retries})")
    return HealthcheckInstruction(
        test=test, interval=interval, timeout=timeout, start_period=start_period,
        start_interval=start_interval, retries=retries, **_common(node),
    )


def _p_expose(node: Node, fl: _Flags) -> Instruction:
    if not node.args:
        raise _err_at_least_one("EXPOSE")
    fl.parse()
    return ExposeInstruction(ports=tuple(sorted(node.args)), **_common(node))


def _p_user(node: Node, fl: _Flags) -> Instruction:
    if len(node.args) != 1:
        raise _err_exactly_one("USER")
    fl.parse()
    return UserInstruction(user=node.args[0], **_common(node))


def _p_volume(node: Node, fl: _Flags) -> Instruction:
    if not node.args:
        raise _err_at_least_one("VOLUME")
    fl.parse()
    vols = []
    for v in node.args:
        v = _go.trim_space(v)
        if v == "":
            raise _Err("VOLUME specified can not be an empty string")
        vols.append(v)
    return VolumeInstruction(volumes=tuple(vols), **_common(node))


def _p_stopsignal(node: Node, fl: _Flags) -> Instruction:
    if len(node.args) != 1:
        raise _err_exactly_one("STOPSIGNAL")
    return StopsignalInstruction(signal=node.args[0], **_common(node))


def _p_arg(node: Node, fl: _Flags) -> Instruction:
    if not node.args:
        raise _err_at_least_one("ARG")
    defs = []
    for a in node.args:
        k, has_eq, v = a.partition("=")
        if has_eq:
            if k == "":
                raise _err_blank_names("ARG")
            defs.append(ArgDef(k, v))
        else:
            defs.append(ArgDef(a))
    return ArgInstruction(args=tuple(defs), **_common(node))


def _p_shell(node: Node, fl: _Flags) -> Instruction:
    fl.parse()
    args = _json_args(node)
    if not args:
        raise _err_at_least_one("SHELL")
    if not node.json:
        raise _Err("SHELL requires the arguments to be in JSON form")
    return ShellInstruction(shell=args, **_common(node))


_PARSERS: Dict[str, Callable[..., Instruction]] = {
    "env": _p_env,
    "maintainer": _p_maintainer,
    "label": _p_label,
    "add": _p_add,
    "copy": _p_copy,
    "from": _p_from,
    "onbuild": _p_onbuild,
    "workdir": _p_workdir,
    "run": _p_run,
    "cmd": _p_cmd,
    "healthcheck": _p_healthcheck,
    "entrypoint": _p_entrypoint,
    "expose": _p_expose,
    "user": _p_user,
    "volume": _p_volume,
    "stopsignal": _p_stopsignal,
    "arg": _p_arg,
    "shell": _p_shell,
}
_NEEDS_ESCAPE = frozenset(("add", "copy", "run", "onbuild"))


def parse_instruction(node: Node, escape: str = "\\") -> Instruction:
    """Type one parsed node; errors are :class:`BakeryError` at the node."""
    kw = node.value.lower()
    fn = _PARSERS.get(kw)
    if fn is None:
        raise BakeryError(
            _go.with_suggestion(f"unknown instruction: {node.value}", node.value, INSTRUCTIONS, False),
            node.pos,
        )
    fl = _Flags(node.flags)
    try:
        if kw in _NEEDS_ESCAPE:
            return fn(node, fl, escape)
        return fn(node, fl)
    except _Err as e:
        raise BakeryError(str(e), node.pos) from None


def parse_instructions(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text into global ARGs and stages (split at FROM)."""
    ast = parse(text, filename)
    meta: List[ArgInstruction] = []
    stages: List[Tuple[FromInstruction, List[Instruction]]] = []
    for node in ast.nodes:
        instr = parse_instruction(node, ast.escape)
        if not stages and isinstance(instr, ArgInstruction):
            meta.append(instr)
            continue
        if isinstance(instr, FromInstruction):
            stages.append((instr, []))
            continue
        if not stages:
            raise BakeryError("no build stage in current context", node.pos)
        stages[-1][1].append(instr)
    return Dockerfile(
        filename=filename,
        escape=ast.escape,
        directives=ast.directives,
        meta_args=tuple(meta),
        stages=tuple(Stage(i, f, tuple(cmds)) for i, (f, cmds) in enumerate(stages)),
        warnings=ast.warnings,
        ast=ast,
    )


def to_data(obj: Any, *, with_source: bool = False) -> Any:
    """A JSON-able view of instructions/stages (for dumps and golden tests)."""
    if isinstance(obj, Pos):
        return f"{obj.line}:{obj.col}"
    if isinstance(obj, Stage):
        return {
            "index": obj.index,
            "from": to_data(obj.from_, with_source=with_source),
            "commands": [to_data(c, with_source=with_source) for c in obj.commands],
        }
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: Dict[str, Any] = {}
        if isinstance(obj, Instruction):
            out["kind"] = obj.name
        for f in dataclasses.fields(obj):
            if f.name in ("source", "original", "keyword") and not with_source:
                continue
            if f.name == "ast":
                continue
            out[f.name.rstrip("_")] = to_data(getattr(obj, f.name), with_source=with_source)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_data(x, with_source=with_source) for x in obj]
    return obj
