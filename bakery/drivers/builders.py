"""Named builders: one or more nodes (a Docker engine or a ``buildkitd``),
each with a driver, an endpoint and the platforms it serves.

They live in ``builders.toml`` under the user's config directory
(``$BAKERY_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/bakery``, else
``~/.config/bakery``)::

    [builder.fleet]

    [[builder.fleet.node]]
    name = "fleet0"
    driver = "docker"
    endpoint = "unix:///run/docker.sock"
    platforms = ["linux/amd64"]

    [[builder.fleet.node]]
    name = "fleet1"
    driver = "buildkit"
    endpoint = "tcp://10.0.0.2:1234"
    platforms = ["linux/arm64"]
    tlscacert = "/etc/bakery/ca.pem"   # mTLS for tcp:// (buildkit only)
    tlscert = "/etc/bakery/cert.pem"
    tlskey = "/etc/bakery/key.pem"

:func:`parse_builders` and :func:`format_builders` are pure (text in,
records out and back; errors carry file:line); :func:`add_node` and
:func:`remove` return new mappings.  Only :func:`load_builders` and
:func:`save_builders` touch the file (the write is atomic).

Example::

    builders = load_builders(config_path(os.environ))
    builders = add_node(builders, "fleet", Node("fleet0", "docker", "unix:///run/docker.sock",
                                                ("linux/amd64",)))
    save_builders(config_path(os.environ), builders)
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.errors import BakeryError, Pos, register_source
from bakery.fsutil import atomic_write
from bakery.oci.media import parse_platform

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DRIVERS",
    "Builder",
    "Node",
    "add_node",
    "config_dir",
    "config_path",
    "format_builders",
    "load_builders",
    "parse_builders",
    "parse_node_platforms",
    "remove",
    "save_builders",
]

CONFIG_FILE = "builders.toml"
DRIVERS = ("docker", "buildkit")
# endpoint schemes each driver understands
SCHEMES: Dict[str, Tuple[str, ...]] = {
    "docker": ("unix", "tcp", "ssh"),
    "buildkit": ("unix", "tcp", "kube-pod"),
}
TLS_KEYS = ("tlscacert", "tlscert", "tlskey")
NODE_KEYS = ("name", "driver", "endpoint", "platforms", *TLS_KEYS)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_BUILDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # a bare TOML key


@dataclass(frozen=True)
class Node:
    """One place that builds: ``driver`` at ``endpoint``, serving ``platforms``
    (normalised, e.g. ``linux/arm64``; empty: only what it builds by default).
    ``tls*`` are file paths for a buildkit ``tcp://`` endpoint with mTLS."""

    name: str
    driver: str
    endpoint: str
    platforms: Tuple[str, ...] = ()
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""


@dataclass(frozen=True)
class Builder:
    name: str
    nodes: Tuple[Node, ...]


def config_dir(env: Mapping[str, str]) -> str:
    if env.get("BAKERY_CONFIG_DIR"):
        return env["BAKERY_CONFIG_DIR"]
    if env.get("XDG_CONFIG_HOME"):
        return os.path.join(env["XDG_CONFIG_HOME"], "bakery")
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".config", "bakery")


def config_path(env: Mapping[str, str]) -> str:
    return os.path.join(config_dir(env), CONFIG_FILE)


# -- validation (shared by the file reader and `bakery builder add`) ----------------------


def check_name(name: str, what: str, pos: Optional[Pos] = None) -> str:
    pattern = _BUILDER_NAME if what == "builder" else _NAME
    if not isinstance(name, str) or not pattern.match(name):
        allowed = "'_' and '-'" if what == "builder" else "'_', '.' and '-'"
        raise BakeryError(f"invalid {what} name {name!r}", pos,
                          hint=f"use letters, digits, {allowed}, starting with a letter or digit")
    return name


def parse_node_platforms(spec: Any, pos: Optional[Pos] = None) -> Tuple[str, ...]:
    """``"linux/amd64,linux/arm64"`` or a list of them -> normalised, deduplicated."""
    if isinstance(spec, str):
        items: List[Any] = [p for p in (x.strip() for x in spec.split(",")) if p]
    elif isinstance(spec, list):
        items = spec
    else:
        raise BakeryError("platforms must be a list of strings", pos,
                          hint='e.g. platforms = ["linux/amd64", "linux/arm64"]')
    out: List[str] = []
    for p in items:
        if not isinstance(p, str):
            raise BakeryError(f"platforms must be a list of strings, not one holding {p!r}", pos,
                              hint='e.g. platforms = ["linux/amd64", "linux/arm64"]')
        try:
            norm = str(parse_platform(p))
        except BakeryError as e:
            raise BakeryError(e.message, pos, hint=e.hint) from None
        if norm not in out:
            out.append(norm)
    return tuple(out)


def _check_driver(node: Node, pos: Optional[Pos]) -> None:
    if node.driver not in DRIVERS:
        raise BakeryError(f"node {node.name}: unknown driver {node.driver!r}", pos,
                          hint="use one of: " + ", ".join(DRIVERS))


def _check_endpoint(node: Node, pos: Optional[Pos]) -> None:
    scheme, sep, rest = node.endpoint.partition("://")
    if not sep or not rest or scheme not in SCHEMES[node.driver]:
        raise BakeryError(f"node {node.name}: endpoint {node.endpoint!r} is not one the "
                          f"{node.driver} driver can reach", pos,
                          hint="use " + ", ".join(f"{s}://..." for s in SCHEMES[node.driver]))


def _check_tls(node: Node, pos: Optional[Pos]) -> None:
    tls = [k for k in TLS_KEYS if getattr(node, k)]
    if tls and (node.driver != "buildkit" or not node.endpoint.startswith("tcp://")):
        raise BakeryError(f"node {node.name}: {', '.join(tls)} apply only to a buildkit node at "
                          "a tcp:// endpoint", pos)


def check_node(node: Node, pos: Optional[Pos] = None) -> Node:
    """``node`` with its platforms normalised; a BakeryError for a bad name,
    driver, endpoint or TLS setting."""
    check_name(node.name, "node", pos)
    _check_driver(node, pos)
    _check_endpoint(node, pos)
    _check_tls(node, pos)
    return replace(node, platforms=parse_node_platforms(list(node.platforms), pos))


# -- reading --------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r'^\s*("[^"]*"|\'[^\']*\'|[A-Za-z0-9_-]+)\s*=')


class _Lines:
    """Line numbers of the tables and keys of ``builders.toml`` (tomllib has
    none): ``[[builder.B.node]]`` occurrences are counted, so the i-th node of
    B and its keys have their own lines."""

    def __init__(self, text: str, file: str):
        self.file = file
        self.tables: Dict[Tuple[str, int], int] = {}
        self.keys: Dict[Tuple[str, int, str], int] = {}
        counts: Dict[str, int] = {}
        table, idx = "", 0
        for i, line in enumerate(text.splitlines(), 1):
            m = _HEADER.match(line)
            if m:
                table = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
                if m.group(1) == "[[":
                    idx = counts.get(table, 0)
                    counts[table] = idx + 1
                else:
                    idx = 0
                self.tables.setdefault((table, idx), i)
                continue
            km = _KEY.match(line)
            if km:
                self.keys.setdefault((table, idx, km.group(1).strip("\"'")), i)

    def table(self, table: str, idx: int = 0) -> Pos:
        line = self.tables.get((table, idx))
        if line is None:  # defined only through its sub-tables ([[builder.B.node]])
            heads = [ln for (t, _), ln in self.tables.items() if t.startswith(table + ".")]
            line = min(heads) if heads else 1
        return Pos(self.file, line, 1)

    def key(self, table: str, idx: int, key: str) -> Pos:
        line = self.keys.get((table, idx, key))
        if line is None:  # a sub-table: its first header
            sub = f"{table}.{key}" if table else key
            heads = [ln for (t, _), ln in self.tables.items()
                     if t == sub or t.startswith(sub + ".")]
            line = min(heads) if heads else None
        return Pos(self.file, line, 1) if line is not None else self.table(table, idx)


def parse_builders(text: str, file: str) -> Dict[str, Builder]:
    """The builders of a ``builders.toml`` text (``file`` names it in errors)."""
    register_source(file, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        pos = Pos(file, int(m.group(1)), int(m.group(2))) if m else Pos(file, 1, 1)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise BakeryError(f"invalid TOML: {msg}", pos) from None
    lines = _Lines(text, file)
    for key in doc:
        if key != "builder":
            raise BakeryError(f"unknown key {key!r} in the builders file", lines.key("", 0, key),
                              hint="the file holds only [builder.NAME] tables")
    section = doc.get("builder", {})
    if not isinstance(section, dict):
        raise BakeryError("builder must be a table of named builders", lines.key("", 0, "builder"),
                          hint="write [builder.NAME] tables")
    out: Dict[str, Builder] = {}
    all_nodes: Dict[str, str] = {}
    for bname, body in section.items():
        path = f"builder.{bname}"
        bpos = lines.table(path)
        check_name(bname, "builder", bpos)
        if not isinstance(body, dict):
            raise BakeryError(f"builder {bname} must be a table", bpos)
        for key in body:
            if key != "node":
                raise BakeryError(f"builder {bname}: unknown key {key!r}", lines.key(path, 0, key),
                                  hint=f"nodes are [[{path}.node]] tables")
        raw_nodes = body.get("node", [])
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise BakeryError(f"builder {bname} has no nodes", bpos,
                              hint=f"add a [[{path}.node]] table with driver and endpoint")
        nodes: List[Node] = []
        for i, raw in enumerate(raw_nodes):
            npath = f"{path}.node"
            npos = lines.table(npath, i)
            if not isinstance(raw, dict):
                raise BakeryError(f"builder {bname}: node {i + 1} must be a table", npos)
            for key, value in raw.items():
                kpos = lines.key(npath, i, key)
                if key not in NODE_KEYS:
                    raise BakeryError(f"builder {bname}: unknown node key {key!r}", kpos,
                                      hint="node keys: " + ", ".join(NODE_KEYS))
                if key != "platforms" and not isinstance(value, str):
                    raise BakeryError(f"builder {bname}: node key {key} must be a string", kpos)
            for key in ("driver", "endpoint"):
                if key not in raw:
                    raise BakeryError(f"builder {bname}: node {i + 1} has no {key}", npos,
                                      hint=f'add {key} = "..."')
            name = raw.get("name", f"{bname}{i}")
            node = Node(name=name, driver=raw["driver"], endpoint=raw["endpoint"],
                        platforms=parse_node_platforms(raw.get("platforms", []),
                                                       lines.key(npath, i, "platforms")),
                        **{k: raw.get(k, "") for k in TLS_KEYS})
            check_name(node.name, "node", lines.key(npath, i, "name"))
            _check_driver(node, lines.key(npath, i, "driver"))
            _check_endpoint(node, lines.key(npath, i, "endpoint"))
            _check_tls(node, npos)
            node = check_node(node, npos)
            if node.name in all_nodes:
                raise BakeryError(f"builder {bname}: node name {node.name} is already used (by "
                                  f"builder {all_nodes[node.name]})", lines.key(npath, i, "name"),
                                  hint="node names are unique across builders")
            all_nodes[node.name] = bname
            nodes.append(node)
        out[bname] = Builder(bname, tuple(nodes))
    return out


def load_builders(path: str) -> Dict[str, Builder]:
    """The builders in ``path`` ({} when the file does not exist)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise BakeryError(f"cannot read {path}: {e}") from None
    return parse_builders(text, path)


# -- writing --------------------------------------------------------------------------------


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_builders(builders: Mapping[str, Builder]) -> str:
    """``builders`` as the TOML text that :func:`parse_builders` reads back."""
    parts = ["# bakery builders (`bakery builder add|rm` rewrite this file; comments are not "
             "kept)\n"]
    for b in builders.values():
        parts.append(f"\n[builder.{b.name}]\n")
        for n in b.nodes:
            parts.append(f"\n[[builder.{b.name}.node]]\n")
            parts.append(f"name = {_toml_str(n.name)}\n")
            parts.append(f"driver = {_toml_str(n.driver)}\n")
            parts.append(f"endpoint = {_toml_str(n.endpoint)}\n")
            parts.append("platforms = [" + ", ".join(_toml_str(p) for p in n.platforms) + "]\n")
            for k in TLS_KEYS:
                if getattr(n, k):
                    parts.append(f"{k} = {_toml_str(getattr(n, k))}\n")
    return "".join(parts)


def save_builders(path: str, builders: Mapping[str, Builder]) -> None:
    """Write ``builders`` to ``path`` atomically (temp file + rename)."""
    text = format_builders(builders)
    d = os.path.dirname(path) or "."
    try:
        os.makedirs(d, exist_ok=True)
        atomic_write(path, text, mode=0o644)
    except OSError as e:
        raise BakeryError(f"cannot write {path}: {e}") from None


# -- editing --------------------------------------------------------------------------------


def add_node(builders: Mapping[str, Builder], builder: str, node: Node) -> Dict[str, Builder]:
    """``builders`` with ``node`` appended to ``builder`` (created when new)."""
    check_name(builder, "builder")
    node = check_node(node)
    for b in builders.values():
        for n in b.nodes:
            if n.name == node.name:
                raise BakeryError(f"builder {b.name} already has a node {node.name}",
                                  hint=f"remove it first (bakery builder rm {b.name} --node "
                                  f"{node.name}) or choose another --node name")
    out = dict(builders)
    old = out.get(builder)
    out[builder] = Builder(builder, (*(old.nodes if old else ()), node))
    return out


def remove(builders: Mapping[str, Builder], builder: str,
           node: Optional[str] = None) -> Dict[str, Builder]:
    """``builders`` without ``builder``, or without its node ``node`` (a
    builder left with no node is removed)."""
    if builder not in builders:
        raise BakeryError(f"no builder named {builder}", hint=_known(builders))
    out = dict(builders)
    if node is None:
        del out[builder]
        return out
    b = builders[builder]
    kept = tuple(n for n in b.nodes if n.name != node)
    if len(kept) == len(b.nodes):
        raise BakeryError(f"builder {builder} has no node {node}",
                          hint="its nodes: " + ", ".join(n.name for n in b.nodes))
    if kept:
        out[builder] = Builder(builder, kept)
    else:
        del out[builder]
    return out


def get_builder(builders: Mapping[str, Builder], name: str, path: str) -> Builder:
    if name not in builders:
        raise BakeryError(f"no builder named {name} in {path}", hint=_known(builders))
    return builders[name]


def _known(builders: Mapping[str, Builder]) -> str:
    if not builders:
        return ("no builders are configured: bakery builder add NAME --driver docker "
                "--endpoint unix:///var/run/docker.sock")
    return "builders: " + ", ".join(sorted(builders))


def next_node_name(builders: Mapping[str, Builder], builder: str) -> str:
    """``BUILDER<i>`` with the first free ``i`` (buildx names nodes this way)."""
    used = {n.name for b in builders.values() for n in b.nodes}
    i = 0
    while f"{builder}{i}" in used:
        i += 1
    return f"{builder}{i}"


def describe(b: Builder) -> List[str]:
    """Human lines for ``bakery builder inspect``."""
    lines = [f"Name:   {b.name}", f"Nodes:  {len(b.nodes)}"]
    for n in b.nodes:
        lines += ["", f"  Name:      {n.name}", f"  Driver:    {n.driver}",
                  f"  Endpoint:  {n.endpoint}",
                  f"  Platforms: {', '.join(n.platforms) or '(its default platform)'}"]
        for k in TLS_KEYS:
            if getattr(n, k):
                lines.append(f"  {k}: {getattr(n, k)}")
    return lines


def node_table(builders: Mapping[str, Builder]) -> List[Sequence[str]]:
    """Rows for ``bakery builder ls``."""
    rows: List[Sequence[str]] = [("NAME/NODE", "DRIVER", "ENDPOINT", "PLATFORMS")]
    for b in builders.values():
        rows.append((b.name, "", "", ""))
        for n in b.nodes:
            rows.append((f"  \\_ {n.name}", n.driver, n.endpoint, ", ".join(n.platforms) or "-"))
    return rows
