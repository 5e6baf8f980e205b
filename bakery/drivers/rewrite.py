"""Named contexts for engines without ``--build-context``: rewrite the
Dockerfile so every reference to a named context names an image instead.

Docker 20.10's ``docker build`` cannot pass named contexts to its BuildKit.
The docker driver builds each context into an image under a temporary tag
(a ``target:`` result, a local directory) or takes the image a
``docker-image://REF`` context names, then builds the dependent target
with a Dockerfile in which those references are replaced:

* ``FROM <name>`` (after expanding the ARGs declared before the first FROM,
  build args overriding their defaults, as BuildKit does);
* a stage *named* like a context (``FROM x AS <name>``): BuildKit replaces
  the whole stage by the context, so its FROM names the image and its other
  instructions are blanked out;
* ``COPY --from=<name>`` and ``RUN --mount=...,from=<name>``.

Names are compared as BuildKit compares them: as normalised image names
(``docker.io/library/x:latest`` is ``x``), stage names case-insensitively.
Only the words are replaced, in place: every line keeps its number (a
replaced stage's lines become blank lines), so the engine's errors point
at the user's Dockerfile lines.  A reference the rewrite cannot find in the
text (an unusual quoting) is an error, never left pointing at nothing.

Pure: text in, text out.

Example::

    rewrite_dockerfile("FROM base\\nRUN true\\n", {"base": "bakery-ctx/base:1a2b"})
    # -> "FROM bakery-ctx/base:1a2b\\nRUN true\\n"
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from bakery.dockerfile.convert import named_context_key
from bakery.dockerfile.expand import ExpansionError, Lex
from bakery.dockerfile.parser import Node, parse
from bakery.errors import BakeryError, Pos

__all__ = ["context_key", "rewrite_dockerfile"]


def context_key(name: str) -> Optional[str]:
    """``name`` as BuildKit looks it up among named contexts (the familiar
    image name, ``:latest`` dropped), or None when it is no image name."""
    return named_context_key(name)


def _global_args(nodes: Tuple[Node, ...], build_args: Mapping[str, Optional[str]],
                 lex: Lex) -> Dict[str, str]:
    """The ARGs declared before the first FROM, as FROM sees them."""
    env: Dict[str, str] = {}
    for n in nodes:
        if n.keyword == "from":
            break
        if n.keyword != "arg":
            continue
        for a in n.args:
            key, eq, default = a.partition("=")
            given = build_args.get(key)
            if given is not None:
                env[key] = given
            elif eq:
                try:
                    env[key] = lex.process_word(default, env)
                except ExpansionError:
                    continue
    return env


def _flag(node: Node, name: str) -> List[str]:
    pre = f"--{name}="
    return [f[len(pre):] for f in node.flags if f.startswith(pre)]


def _mount_from(spec: str) -> Optional[str]:
    for field in spec.split(","):
        k, eq, v = field.strip().partition("=")
        if eq and k.strip().lower() == "from":
            return v.strip().strip("\"'")
    return None


class _Text:
    """The Dockerfile's physical lines, edited in place."""

    def __init__(self, text: str, esc: str, filename: str):
        self.lines = text.split("\n")
        self.esc = re.escape(esc)
        self.filename = filename

    def replace(self, node: Node, pattern: str, repl: Callable[[str], str], what: str) -> None:
        """Replace the first whitespace-delimited word matching ``pattern``
        in ``node``'s lines (after its keyword) by ``repl(word)``."""
        rx = re.compile(rf"(?:^|(?<=\s))(?:{pattern})(?=\s|{self.esc}\s*$|$)")
        for i in range(node.start_line - 1, min(node.end_line, len(self.lines))):
            line = self.lines[i]
            start = 0
            if i == node.start_line - 1:  # skip the keyword itself
                m0 = re.match(r"\s*\S+", line)
                start = m0.end() if m0 else 0
            m = rx.search(line, start)
            if m is not None:
                self.lines[i] = line[:m.start()] + repl(m.group(0)) + line[m.end():]
                return
        raise BakeryError(f"{what}: the reference could not be rewritten in place (the docker "
                          "driver names the context's image there)",
                          pos=Pos(self.filename, node.start_line, 1),
                          hint="write it without quotes or escapes, or use a buildkit driver")

    def blank(self, node: Node) -> None:
        for i in range(node.start_line - 1, min(node.end_line, len(self.lines))):
            self.lines[i] = ""


def rewrite_dockerfile(text: str, refs: Mapping[str, str],
                       build_args: Optional[Mapping[str, Optional[str]]] = None,
                       filename: str = "Dockerfile") -> str:
    """``text`` with every reference to a named context in ``refs`` (context
    name -> image reference) replaced by that image (see the module doc).
    The result has exactly the lines of ``text``."""
    keys: Dict[str, str] = {}
    for name, ref in refs.items():
        k = context_key(name)
        if k is None:
            raise BakeryError(f"named context {name!r} is not a valid image or stage name",
                              hint="name contexts like images: lowercase letters, digits, . _ - /")
        keys[k] = ref
    pr = parse(text, filename)
    lex = Lex(pr.escape)
    env = _global_args(pr.nodes, build_args or {}, lex)
    out = _Text(text, pr.escape, filename)
    replaced_stage = False
    for node in pr.nodes:
        kw = node.keyword
        if kw == "from":
            replaced_stage = False
            if not node.args:
                continue
            base = node.args[0]
            stage = node.args[2].lower() if len(node.args) >= 3 and \
                node.args[1].lower() == "as" else ""
            try:
                expanded = lex.process_word(base, env)
            except ExpansionError:
                expanded = base
            key = context_key(expanded)
            stage_key = context_key(stage) if stage else None
            target: Optional[str] = None
            if stage_key is not None and stage_key in keys:
                target = keys[stage_key]
                replaced_stage = True
            elif key is not None and key in keys:
                # (a stage of that name defined before is replaced by the context too)
                target = keys[key]
            if target is not None:
                out.replace(node, re.escape(base), _const(target), f"FROM {base}")
            continue
        if replaced_stage:
            out.blank(node)  # the stage is the context: its instructions do not run
            continue
        if kw == "copy":
            for value in _flag(node, "from"):
                key = context_key(value)
                if value.isdigit() or key is None or key not in keys:
                    continue
                ref = keys[key]
                out.replace(node, rf"--from=([\"']?){re.escape(value)}\1", _const("--from=" + ref),
                            f"COPY --from={value}")
        elif kw == "run":
            for spec in _flag(node, "mount"):
                mfrom = _mount_from(spec)
                mkey = context_key(mfrom) if mfrom else None
                if mfrom is None or mkey is None or mkey not in keys:
                    continue
                out.replace(node, rf"--mount=(?:\S*?,)?from=([\"']?){re.escape(mfrom)}\1"
                            r"(?=[,\s]|$)\S*", _mount_repl(mfrom, keys[mkey]),
                            f"RUN --mount=from={mfrom}")
    return "\n".join(out.lines)


def _const(text: str) -> Callable[[str], str]:
    return lambda _word: text


def _mount_repl(value: str, ref: str) -> Callable[[str], str]:
    """Replaces the ``from=`` field of one ``--mount=`` word."""
    rx = re.compile(rf"((?:^--mount=|,)from=)([\"']?){re.escape(value)}\2(?=,|\s|$)")

    def repl(word: str) -> str:
        return rx.sub(lambda m: m.group(1) + ref, word, count=1)
    return repl
