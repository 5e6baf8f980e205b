"""Dockerfile -> build operations, following BuildKit's ``dockerfile2llb``.

:func:`convert` turns a :class:`~bakery.dockerfile.request.BuildRequest`
(the Dockerfile text, its context, build args, platforms, named contexts)
into an :class:`~bakery.graph.ops.Export`: the root filesystem of the target
stage as a DAG of operations, and the image config BuildKit would write.
It is pure: the only outside input is the ``image_config`` callback, which
is asked for the config of the base images of the stages that are built
(and nothing else).

Behaviour re-implemented from BuildKit (not copied), in its order:

1. **Global scope.**  The automatic platform args (``BUILDPLATFORM``,
   ``BUILDOS``, ``BUILDOSVERSION``, ``BUILDARCH``, ``BUILDVARIANT``, the same
   with ``TARGET``, and ``TARGETSTAGE``; build args override them), then the
   ARGs before the first FROM (a build arg overrides a default; defaults
   are expanded with what is defined so far).  They are visible in FROM
   (image and ``--platform``) only.
2. **Stages.**  A stage named like a named context *is* that context (its
   instructions are skipped).  ``FROM <name>`` uses the stage of that name
   only when it was defined *before* (otherwise it is an image, so
   ``FROM a AS b`` / ``FROM b AS a`` is not a cycle: ``b`` is image ``a``).
   ``COPY --from`` takes a stage name, an index or an image;
   ``RUN --mount from=`` a stage name or an image.  Cycles through
   ``--from`` are errors (``circular dependency detected on stage: x``);
   copying from a stage defined later is an error.
3. **Pruning.**  Only the stages reachable from the target stage (through
   FROM, ``COPY --from``, ``RUN --mount from=`` and base-image ONBUILD
   triggers) are converted, and only their base images are looked up.
4. **Dispatch.**  Each stage starts from its base's filesystem, config and
   environment (the environment of a stage built on another stage keeps
   that stage's ARG values, as in BuildKit); instructions then change the
   filesystem (RUN, COPY, ADD, WORKDIR) or the config, and add history
   entries with BuildKit's ``created_by`` texts.

Deliberate approximations (the operation contract has no place for them):

* ``ADD <url>`` gives an ``HttpSource`` and ``ADD <git ref>`` a
  ``GitSource`` (see bakery.dockerfile.gitref); what they fetch is only
  known when the engine runs them, which pins the steps after them to it.
* ``--chown`` is resolved to ``uid:gid`` only when numeric (``1000`` ->
  ``1000:1000``); user and group *names* are kept as written and resolved
  by the engine from the ``/etc/passwd`` and ``/etc/group`` of the
  destination, as BuildKit does when it runs the copy
  (bakery.engine.fileops.parse_chown).  WORKDIR's mkdir gets the stage's
  USER the same way.
* Proxy build args (``HTTP_PROXY``, ``HTTPS_PROXY``, ``FTP_PROXY``,
  ``NO_PROXY``, ``ALL_PROXY``, any case) need no ARG: they go into
  ``Exec.proxy_env`` (upper and lower case, as BuildKit's executor sets
  them), which is not part of the key, nor of the image config or history.
  Declared with ARG they are ordinary args (env, key and history), as in
  BuildKit.
* ``MAINTAINER`` sets the image *Author* in BuildKit; ImageConfig has no
  such field, so only the history entry is kept.
* The image history holds this build's entries only (base images' history
  is not available through the config callback: the engine prepends it).
* Cache mount ids are kept as written (BuildKit prefixes them with the
  ``BUILDKIT_CACHE_MOUNT_NS`` namespace); ``RUN --mount from=`` a stage
  defined later is an error here (BuildKit mounts an undefined state).
* Progress names are BuildKit's (``[stage 2/5] RUN ...``) without the
  multi-platform prefix; FROM steps have no description (ImageSource has
  no field for it).
* A named context that is a local directory or another target's result
  has no image config (BuildKit gets the result's config from buildx).
* Duplicate stage names are allowed, the last one winning, as in BuildKit
  (a lint warning there); with ``# check=error=true`` they are an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import posixpath
import re
import urllib.parse
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

from bakery.errors import BakeryError, Pos
from bakery.graph.ops import (
    Copy,
    Exec,
    Export,
    FileAction,
    FileOp,
    GitSource,
    HttpSource,
    ImageConfig,
    ImageSource,
    LocalSource,
    Merge,
    Mkdir,
    Mkfile,
    Mount,
    Platform,
    Ref,
    ScratchSource,
    SourceLocation,
    parse_checksum,
)
from bakery.oci.media import normalize_arch

from . import _go
from .expand import ExpansionError, Lex
from .gitref import is_git_ref, parse_git_ref
from .instructions import (
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    HealthcheckInstruction,
    Instruction,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    Stage,
    StopsignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    _Err,
    parse_chmod,
    parse_instruction,
    parse_instructions,
    parse_mount,
)
from .instructions import Mount as MountSpec
from .parser import parse, parse_heredoc
from .request import BuildRequest, ImageConfigResolver, NamedContext

__all__ = [
    "DEFAULT_PATH",
    "convert",
    "normalize_image_ref",
    "parse_platform",
    "walk",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SCRATCH = "scratch"
# args BuildKit never puts in the environment
_NON_ENV_ARGS = frozenset(("BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"))
_PROXY_ARGS = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy")


def _no_config(img: ImageSource) -> None:
    return None


def convert(request: BuildRequest, image_config: ImageConfigResolver = _no_config) -> Export:
    """Convert ``request`` to the operations and image config BuildKit would
    produce; errors are :class:`BakeryError` with a Dockerfile position."""
    cache: Dict[ImageSource, Optional[Mapping[str, object]]] = {}

    def resolve(img: ImageSource) -> Optional[Mapping[str, object]]:
        if img not in cache:
            cache[img] = image_config(img)
        return cache[img]

    # The context's LocalSource names the paths the build reads, which are
    # only known once every stage is dispatched: dispatch, then dispatch
    # again with the final LocalSource (conversion is pure and cheap).
    first = _Converter(request, resolve, ())
    export = first.run()
    include = first.context_include()
    if include == ():
        return export
    return _Converter(request, resolve, include).run()


# ---------------------------------------------------------------------------
# Image references and platforms


_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_HEX64 = re.compile(r"[a-f0-9]{64}")


class _RefError(Exception):
    pass


def _split_docker_domain(name: str) -> Tuple[str, str]:
    i = name.find("/")
    first = name[:i]
    if i == -1 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = "docker.io", name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    return domain, remainder


def _parse_normalized(s: str) -> Tuple[str, str, str]:
    """reference.ParseNormalizedNamed: (name, tag, digest)."""
    if _HEX64.fullmatch(s):
        raise _RefError(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise _RefError(f"invalid reference format: repository name ({remote}) must be lowercase")
    full = domain + "/" + remainder
    m = _REFERENCE.fullmatch(full)
    if not m:
        if _REFERENCE.fullmatch(full.lower()):
            raise _RefError("invalid reference format: repository name must be lowercase")
        raise _RefError("invalid reference format")
    if len(m.group(1)) > 255:
        raise _RefError("repository name must not be more than 255 characters")
    return m.group(1), m.group(2) or "", m.group(3) or ""


def normalize_image_ref(s: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest`` (TagNameOnly of
    the normalised name; digests kept).  Raises ValueError."""
    try:
        name, tag, digest = _parse_normalized(s)
    except _RefError as e:
        raise ValueError(str(e)) from None
    return _ref_string(name, tag, digest)


def _ref_string(name: str, tag: str, digest: str) -> str:
    if not tag and not digest:
        tag = "latest"
    return name + (":" + tag if tag else "") + ("@" + digest if digest else "")


def _familiar(name: str, tag: str, digest: str) -> str:
    if name.startswith("docker.io/"):
        name = name[len("docker.io/"):]
        if name.startswith("library/") and "/" not in name[len("library/"):]:
            name = name[len("library/"):]
    return name + (":" + tag if tag else "") + ("@" + digest if digest else "")


def named_context_key(name: str) -> Optional[str]:
    """``name`` (of ``FROM``, ``--from``) as BuildKit looks it up among the
    named contexts: the familiar image name with ``:latest`` dropped; None
    for ``scratch``, ``context`` and what is no image name."""
    if not name or name.lower() in (_SCRATCH, "context"):
        return None
    try:
        ref, tag, digest = _parse_normalized(name)
    except _RefError:
        return None
    fam = _familiar(ref, tag, digest)
    return fam[: -len(":latest")] if fam.endswith(":latest") else fam


_KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
))
_KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
))
_PLATFORM_PART = re.compile(r"[A-Za-z0-9_.-]+")


def parse_platform(spec: str, host: Platform) -> Platform:
    """containerd's platforms.Parse followed by Normalize (``linux/arm`` ->
    ``linux/arm/v7``, ``linux/arm64/v8`` -> ``linux/arm64``).  ``host``
    fills in what a one-part specifier leaves out.  Raises ValueError."""
    bad = f"{_go.quote(spec)}: unknown operating system or architecture: invalid argument"
    parts = spec.split("/")
    if not spec or len(parts) > 3 or not all(_PLATFORM_PART.fullmatch(p) for p in parts):
        raise ValueError(bad)
    os_ = parts[0].lower()
    if os_ == "macos":
        os_ = "darwin"
    if len(parts) == 1:
        if os_ in _KNOWN_OS:
            return Platform(os_, host.architecture, host.variant)
        arch, variant = normalize_arch(parts[0], "")
        if arch not in _KNOWN_ARCH:
            raise ValueError(bad)
        return Platform(host.os, arch, variant)
    arch, variant = normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
    return Platform(os_, arch, variant)


# ---------------------------------------------------------------------------
# Small Go-isms


def _go_clean(p: str) -> str:
    """path.Clean."""
    if p == "":
        return "."
    out = posixpath.normpath(p)
    if out.startswith("//"):
        out = "/" + out.lstrip("/")
    return out


def _go_join(*elems: str) -> str:
    """path.Join."""
    parts = [e for e in elems if e]
    if not parts:
        return ""
    return _go_clean("/".join(parts))


def _normalize_path(parent: str, new: str, keep_slash: bool) -> str:
    """BuildKit's system.NormalizePath for Linux."""
    orig = new
    if parent == "":
        parent = "/"
    if not parent.startswith("/"):
        parent = _go_join("/", parent)
    if new == "":
        new = parent
    if not new.startswith("/"):
        new = _go_join(parent, new)
    if keep_slash:
        if orig.endswith("/") and not new.endswith("/"):
            new += "/"
        elif orig.endswith("/."):
            if new != "/":
                new += "/"
            new += "."
    return new


def _go_duration(ns: int) -> str:
    """time.Duration.String."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)

    def frac(v: int, prec: int) -> str:
        whole, rest = divmod(v, 10 ** prec)
        digits = str(rest).rjust(prec, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{frac(u, 3)}\u00b5s"
    if u < 1_000_000_000:
        return f"{sign}{frac(u, 6)}ms"
    minute = 60 * 1_000_000_000
    out = frac(u % minute, 9) + "s"
    mins = u // minute
    if mins:
        hours, mins = divmod(mins, 60)
        out = (f"{hours}h" if hours else "") + f"{mins}m" + out
    return sign + out


def _go_list(items: Sequence[str]) -> str:
    """fmt's %v of a []string."""
    return "[" + " ".join(items) + "]"


_SIGNALS = frozenset((
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
    "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
    "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
    "XFSZ", "RTMIN", "RTMAX",
    *(f"RTMIN+{i}" for i in range(1, 16)),
    *(f"RTMAX-{i}" for i in range(1, 15)),
))


def _check_signal(sig: str) -> None:
    """moby/sys/signal.ParseSignal's acceptance."""
    n, _ = _go.parse_int(sig, 64)
    if n is not None:
        if n == 0:
            raise ValueError(f"Invalid signal: {sig}")
        return
    name = sig.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name not in _SIGNALS:
        raise ValueError(f"Invalid signal: {sig}")


def _resolve_chown(spec: str) -> str:
    """``--chown`` value -> ``uid:gid`` when numeric, else as written."""
    if not spec:
        return ""
    user, sep, group = spec.partition(":")
    uid = _go.parse_uint(user, 10, 32)
    if not sep:
        return f"{uid}:{uid}" if uid is not None else spec
    gid = _go.parse_uint(group, 10, 32)
    if uid is not None and gid is not None:
        return f"{uid}:{gid}"
    return spec


def _is_git(src: str) -> bool:
    return is_git_ref(src)


def _is_http(src: str) -> bool:
    return src.startswith(("http://", "https://")) and not _is_git(src)


def _summarize_heredoc(doc: str) -> str:
    lines = _go.trim_space(doc).replace("\r\n", "\n").split("\n")
    return lines[0] + ("..." if len(lines) > 1 else "")


def _uppercase_cmd(s: str) -> str:
    head, sep, rest = s.partition(" ")
    return head.upper() + sep + rest


# ---------------------------------------------------------------------------
# Mutable build state (BuildKit's llb.State + image config per stage)


class _Env:
    """An llb.EnvList: setting a key moves it to the end."""

    def __init__(self, items: Optional[Dict[str, str]] = None) -> None:
        self.items: Dict[str, str] = dict(items or {})

    def set(self, key: str, value: str) -> None:
        self.items.pop(key, None)
        self.items[key] = value

    def get(self, key: str) -> Optional[str]:
        return self.items.get(key)

    def copy(self) -> _Env:
        return _Env(self.items)

    def to_list(self) -> List[str]:
        return [f"{k}={v}" for k, v in self.items.items()]


@dataclasses.dataclass
class _Image:
    """The image config being built (dockerspec.DockerOCIImage's parts)."""

    env: List[str] = dataclasses.field(default_factory=list)
    cmd: Optional[List[str]] = None
    entrypoint: Optional[List[str]] = None
    workdir: str = ""
    user: str = ""
    labels: Dict[str, str] = dataclasses.field(default_factory=dict)
    exposed_ports: Set[str] = dataclasses.field(default_factory=set)
    volumes: Set[str] = dataclasses.field(default_factory=set)
    stop_signal: str = ""
    healthcheck: Optional[Dict[str, object]] = None
    shell: Optional[List[str]] = None
    onbuild: List[str] = dataclasses.field(default_factory=list)
    history: List[Tuple[str, bool]] = dataclasses.field(default_factory=list)
    author: str = ""
    os: str = "linux"

    def clone(self) -> _Image:
        return dataclasses.replace(
            self,
            env=list(self.env),
            cmd=None if self.cmd is None else list(self.cmd),
            entrypoint=None if self.entrypoint is None else list(self.entrypoint),
            labels=dict(self.labels),
            exposed_ports=set(self.exposed_ports),
            volumes=set(self.volumes),
            healthcheck=None if self.healthcheck is None else dict(self.healthcheck),
            shell=None if self.shell is None else list(self.shell),
            onbuild=list(self.onbuild),
            history=list(self.history),
        )

    def add_env(self, key: str, value: str) -> None:
        for i, e in enumerate(self.env):
            if e.split("=", 1)[0] == key:
                self.env[i] = f"{key}={value}"
                return
        self.env.append(f"{key}={value}")

    def has_env(self, key: str) -> bool:
        return any(e.split("=", 1)[0] == key for e in self.env)


def _empty_image(platform: Platform) -> _Image:
    img = _Image(workdir="/", os=platform.os)
    if platform.os != "windows":
        img.env = [f"PATH={DEFAULT_PATH}"]
    return img


def _str_list(v: object) -> Optional[List[str]]:
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return None


def _image_from_config(cfg: Mapping[str, object], platform: Platform) -> _Image:
    img = _Image(os=platform.os)
    img.env = _str_list(cfg.get("Env")) or []
    img.cmd = _str_list(cfg.get("Cmd")) or None
    img.entrypoint = _str_list(cfg.get("Entrypoint")) or None
    img.workdir = str(cfg.get("WorkingDir") or "")
    img.user = str(cfg.get("User") or "")
    labels = cfg.get("Labels")
    if isinstance(labels, Mapping):
        img.labels = {str(k): str(v) for k, v in labels.items()}
    for key, attr in (("ExposedPorts", "exposed_ports"), ("Volumes", "volumes")):
        value = cfg.get(key)
        if isinstance(value, Mapping):
            setattr(img, attr, {str(k) for k in value})
    img.stop_signal = str(cfg.get("StopSignal") or "")
    hc = cfg.get("Healthcheck")
    if isinstance(hc, Mapping):
        img.healthcheck = dict(hc)
    img.shell = _str_list(cfg.get("Shell")) or None
    img.onbuild = _str_list(cfg.get("OnBuild")) or []
    return img


class _LLB:
    """What BuildKit keeps in an llb.State: the filesystem and the
    process defaults of the next RUN."""

    def __init__(self, ref: Ref, platform: Optional[Platform] = None) -> None:
        self.ref = ref
        self.env = _Env()
        self.dir: Optional[str] = None
        self.user = ""
        self.platform = platform
        self.network = "default"

    def copy(self) -> _LLB:
        out = _LLB(self.ref, self.platform)
        out.env = self.env.copy()
        out.dir = self.dir
        out.user = self.user
        out.network = self.network
        return out


_SCRATCH_REF = Ref(ScratchSource())


@dataclasses.dataclass(eq=False)
class _Command:
    instr: Instruction
    sources: List[Optional[_State]] = dataclasses.field(default_factory=list)
    is_onbuild: bool = False


@dataclasses.dataclass(eq=False)
class _State:
    """BuildKit's dispatchState."""

    base_name: str
    pos: Pos
    end_line: int
    stage: Optional[Stage] = None
    name: str = ""  # stage name as declared (lower case), "" for none
    stage_name: str = ""  # for progress names ("stage-N" when unnamed)
    platform: Optional[Platform] = None
    base: Optional[_State] = None
    named: Optional[Tuple[str, NamedContext]] = None
    deps: Dict[_State, Instruction] = dataclasses.field(default_factory=dict)
    commands: List[_Command] = dataclasses.field(default_factory=list)
    dispatched: bool = False
    resolved: bool = False
    onbuild_init: bool = False
    unregistered: bool = False
    st: Optional[_LLB] = None
    image: _Image = dataclasses.field(default_factory=_Image)
    base_img: Optional[ImageSource] = None
    build_args: List[Tuple[str, Optional[str]]] = dataclasses.field(default_factory=list)
    cmd_total: int = 0
    cmd_index: int = 0
    cmd_set: bool = False  # CMD seen in this stage (ENTRYPOINT keeps it)


# ---------------------------------------------------------------------------
# The converter


class _Converter:
    def __init__(
        self,
        request: BuildRequest,
        resolve: Callable[[ImageSource], Optional[Mapping[str, object]]],
        include: Tuple[str, ...],
    ) -> None:
        self.req = request
        self.resolve = resolve
        self.file = request.dockerfile_name
        self.context = LocalSource(
            name="context",
            path=request.context,
            include=include,
            exclude=tuple(request.dockerignore),
        )
        self.ctx_ref = Ref(self.context)
        self.ctx_paths: Set[str] = set()
        self.states: List[_State] = []
        self.by_name: Dict[str, _State] = {}
        self.global_args = _Env()
        self.escape = "\\"
        self.lex = Lex()
        self.proxy_env: List[str] = []

    # -- helpers ------------------------------------------------------------

    def context_include(self) -> Tuple[str, ...]:
        """BuildKit's normalizeContextPaths: () means the whole context."""
        if not self.ctx_paths or "/" in self.ctx_paths:
            return ()
        return tuple(sorted(_go_join(".", p) for p in self.ctx_paths))

    def err(self, msg: str, pos: Pos, hint: Optional[str] = None) -> BakeryError:
        return BakeryError(msg, pos, hint=hint)

    def expand(self, word: str, env: Mapping[str, str], pos: Pos) -> str:
        try:
            return self.lex.process_word(word, env)
        except ExpansionError as e:
            raise self.err(str(e), pos) from None

    def location(self, instr: Instruction) -> SourceLocation:
        return SourceLocation(self.file, instr.pos.line, instr.end_line)

    def prefix(self, d: _State, text: str, is_onbuild: bool) -> str:
        """BuildKit's prefixCommand (without the platform)."""
        if d.cmd_total == 0:
            return text
        out = "["
        if d.stage_name:
            out += d.stage_name + " "
        d.cmd_index += 1
        width = int(1 + math.log10(d.cmd_total))
        out += f"{d.cmd_index:>{width}}/{d.cmd_total}] "
        if is_onbuild:
            out += "ONBUILD "
        return out + text

    def cmd_name(self, lex: Lex, text: str, env: Mapping[str, str]) -> str:
        with contextlib.suppress(ExpansionError):
            text = lex.process_word(text, env)
        return _uppercase_cmd(text)

    def commit(self, d: _State, msg: str, layer: bool, buildkit: bool = False) -> None:
        if buildkit:
            msg += " # buildkit"
        d.image.history.append((msg, not layer))

    # -- entry point ----------------------------------------------------------

    def run(self) -> Export:
        df = parse_instructions(self.req.dockerfile, self.file)
        self.escape = df.escape
        self.lex = Lex(df.escape)
        if not df.stages:  # pragma: no cover - parse_instructions rejects it
            raise BakeryError("dockerfile contains no stages to build")
        self._check_stage_names(df.stages, df.check)
        target_name = self.req.stage or df.stages[-1].name or ""
        self._global_args(target_name, df.meta_args)
        self._proxy_env()
        self._build_states(df.stages)
        target = self._resolve_target()
        self._build_graph()
        reachable = self._resolve_stages(target)
        self._dispatch_stages(reachable)
        return self._finalize(target)

    def _check_stage_names(self, stages: Sequence[Stage], check: Optional[str]) -> None:
        error = False
        skip: Set[str] = set()
        for part in (check or "").split(";"):
            key, _, value = part.partition("=")
            key = key.strip().lower()
            if key == "skip":
                skip = {s.strip().lower() for s in value.split(",")}
            elif key == "error":
                error = _go.parse_bool(value.strip()) is True
        if not error or "all" in skip or "duplicatestagename" in skip:
            return
        seen: Set[str] = set()
        for st in stages:
            if st.name:
                if st.name in seen:
                    raise self.err(
                        f"Duplicate stage name {_go.quote(st.name)}, stage names should be unique",
                        st.from_.pos,
                    )
                seen.add(st.name)

    def _global_args(self, target_name: str, meta: Sequence[ArgInstruction]) -> None:
        bp, tp = self.req.build_platform, self.req.platform
        env = _Env()
        for key, value in (
            ("BUILDPLATFORM", str(bp)),
            ("BUILDOS", bp.os),
            ("BUILDOSVERSION", ""),
            ("BUILDARCH", bp.architecture),
            ("BUILDVARIANT", bp.variant),
            ("TARGETPLATFORM", str(tp)),
            ("TARGETOS", tp.os),
            ("TARGETOSVERSION", ""),
            ("TARGETARCH", tp.architecture),
            ("TARGETVARIANT", tp.variant),
            ("TARGETSTAGE", target_name),
        ):
            env.set(key, self.req.build_args.get(key, value))
        for cmd in meta:
            for a in cmd.args:
                if a.key in self.req.build_args:
                    env.set(a.key, self.req.build_args[a.key])
                elif a.value is not None:
                    env.set(a.key, self.expand(a.value, env.items, cmd.pos))
        self.global_args = env

    def _proxy_env(self) -> None:
        values: Dict[str, str] = {}
        for k in sorted(self.req.build_args):
            if k.lower() in _PROXY_ARGS:
                values[k.lower()] = self.req.build_args[k]
        out: List[str] = []
        for name in _PROXY_ARGS:
            v = values.get(name)
            if v:
                out += [f"{name.upper()}={v}", f"{name}={v}"]
        self.proxy_env = out

    # -- stages ---------------------------------------------------------------

    def _add_state(self, d: _State) -> None:
        self.states.append(d)
        base = self.by_name.get(d.base_name)
        if base is not None:
            d.base = base
        if d.name:
            self.by_name[d.name] = d

    def _build_states(self, stages: Sequence[Stage]) -> None:
        for i, st in enumerate(stages):
            pos = st.from_.pos
            base = self.expand(st.base, self.global_args.items, pos)
            if base == "":
                raise self.err(f"base name ({st.base}) should not be blank", pos)
            d = _State(base_name=base, pos=pos, end_line=st.from_.end_line, stage=st,
                       name=st.name or "", stage_name=st.name or "")
            if st.platform:
                value = self.expand(st.platform, self.global_args.items, pos)
                if value == "":
                    raise self.err(f"empty platform value from expression {st.platform}", pos)
                try:
                    d.platform = parse_platform(value, self.req.build_platform)
                except ValueError as e:
                    raise self.err(f"failed to parse platform {st.platform}: {e}", pos) from None
            if st.name:
                nc = self._named_context(st.name, d.platform)
                if nc is not None:
                    d.named = nc
                    self._add_state(d)
                    d.base = None
                    continue
            else:
                d.stage_name = f"stage-{i}"
            self._add_state(d)
            total = 1 if d.base_name != _SCRATCH and d.base is None else 0
            for c in st.commands:
                if isinstance(c, (AddInstruction, CopyInstruction, RunInstruction,
                                  WorkdirInstruction)):
                    total += 1
            d.cmd_total = total

    def _named_context(
        self, name: str, platform: Optional[Platform]
    ) -> Optional[Tuple[str, NamedContext]]:
        contexts = self.req.named_contexts
        fam = named_context_key(name) if contexts else None
        if fam is None:
            return None
        p = platform or self.req.platform
        for key in (f"{fam}::{p}", fam):
            if key in contexts:
                return key.split("::", 1)[0], contexts[key]
        return None

    def _find_by_name(self, name: str) -> Optional[_State]:
        return self.by_name.get(name.lower())

    def _resolve_target(self) -> _State:
        if not self.req.stage:
            return self.states[-1]
        d = self._find_by_name(self.req.stage)
        if d is None:
            names = [s.stage_name for s in self.states if s.stage_name]
            msg = _go.with_suggestion(
                f"target stage {_go.quote(self.req.stage)} could not be found",
                self.req.stage, names, True,
            )
            named = [s.name for s in self.states if s.name]
            raise BakeryError(
                msg, None,
                hint=("available stages: " + ", ".join(named)) if named else "the Dockerfile has no named stages",
            )
        return d

    def _unregistered(self, name: str, pos: Pos, end_line: int) -> _State:
        return _State(base_name=name, pos=pos, end_line=end_line, unregistered=True)

    def _to_command(self, instr: Instruction) -> _Command:
        cmd = _Command(instr)
        if isinstance(instr, CopyInstruction) and instr.from_:
            try:
                res = Lex(self.escape).process_word(instr.from_, {})
            except ExpansionError:
                res = None
            if res != instr.from_:
                raise self.err(
                    "variable expansion is not supported for --from, define a new stage with "
                    "FROM using ARG from global scope as a workaround", instr.pos)
            index, _ = _go.parse_int(instr.from_, 64)
            if index is None:
                src = self._find_by_name(instr.from_)
                if src is None:
                    src = self._unregistered(instr.from_, instr.pos, instr.end_line)
            else:
                if index < 0 or index >= len(self.states):
                    raise self.err(f"invalid stage index {index}", instr.pos)
                src = self.states[index]
            cmd.sources = [src]
        elif isinstance(instr, RunInstruction):
            sources: List[Optional[_State]] = []
            for m in instr.mounts:
                frm = m.from_
                if frm == "" and m.type == "cache":
                    frm = _SCRATCH
                if frm == "" or m.type == "tmpfs":
                    sources.append(None)
                    continue
                src = self._find_by_name(frm)
                if src is None:
                    src = self._unregistered(frm, instr.pos, instr.end_line)
                sources.append(src)
            cmd.sources = sources
        return cmd

    def _add_deps(self, d: _State, cmd: _Command) -> None:
        for src in cmd.sources:
            if src is not None:
                d.deps[src] = cmd.instr
                if src.unregistered and src not in self.states:
                    self._add_state(src)

    def _build_graph(self) -> None:
        for d in list(self.states):
            if d.stage is None:
                continue
            d.commands = []
            for instr in d.stage.commands:
                cmd = self._to_command(instr)
                d.commands.append(cmd)
                self._add_deps(d, cmd)
        self._check_cycles()
        if len(self.states) == 1:
            self.states[0].stage_name = ""

    def _check_cycles(self) -> None:
        visited: Set[_State] = set()
        path: Set[_State] = set()

        def visit(s: _State, current: List[Instruction]) -> Optional[List[Instruction]]:
            if s in visited:
                return None
            visited.add(s)
            path.add(s)
            for dep, c in s.deps.items():
                nxt = [*current, c]
                if dep in path:
                    return nxt
                found = visit(dep, nxt)
                if found is not None:
                    return found
            path.discard(s)
            return None

        for s in self.states:
            cmds = visit(s, [])
            if cmds is not None:
                raise self.err(f"circular dependency detected on stage: {s.stage_name}",
                               cmds[0].pos)

    def _reachable(self, target: _State) -> List[_State]:
        seen: Dict[_State, None] = {}

        def add(s: _State) -> None:
            if s in seen:
                return
            seen[s] = None
            if s.base is not None:
                add(s.base)
            for dep in s.deps:
                add(dep)

        add(target)
        return list(seen)

    def _resolve_stages(self, target: _State) -> Set[_State]:
        while True:
            reachable = set(self._reachable(target))
            for d in list(self.states):
                if d.base is None and not d.dispatched and not d.resolved:
                    ok = d in reachable
                    d.resolved = ok
                    if d.base_name == _SCRATCH and d.named is None:
                        d.st = _LLB(_SCRATCH_REF)
                        d.image = _empty_image(self.req.platform)
                        d.platform = self.req.platform
                        if d.unregistered:
                            d.dispatched = True
                        continue
                    self._resolve_base_image(d, ok)
            new_deps = False
            for d in [s for s in self.states if s in reachable]:
                if d.base is not None:
                    onbuilds: List[str] = []
                else:
                    onbuilds = list(d.image.onbuild)
                if d.base is not None and not d.onbuild_init:
                    for c in d.base.commands:
                        if isinstance(c.instr, OnbuildInstruction):
                            onbuilds.append(c.instr.expression)
                    d.onbuild_init = True
                if onbuilds:
                    if self._init_onbuild(d, onbuilds):
                        new_deps = True
                    d.image.onbuild = []
            if not new_deps:
                return reachable

    def _init_onbuild(self, d: _State, triggers: Sequence[str]) -> bool:
        has_new = False
        commands: List[_Command] = []
        for trigger in triggers:
            try:
                ast = parse(trigger, self.file + " (ONBUILD)")
                if len(ast.nodes) != 1:
                    raise self.err("onbuild trigger should be a single expression", d.pos)
                node = dataclasses.replace(
                    ast.nodes[0], start_line=d.pos.line, end_line=d.end_line,
                    col=d.pos.col, filename=self.file,
                )
                if node.keyword == "from":  # BuildKit: a Stage is no command
                    raise self.err("*instructions.Stage is not a command type", d.pos)
                instr = parse_instruction(node, "\\")
            except BakeryError as e:
                raise self.err(e.message, d.pos) from None
            cmd = self._to_command(instr)
            cmd.is_onbuild = True
            if any(s is not None for s in cmd.sources):
                has_new = True
            commands.append(cmd)
            self._add_deps(d, cmd)
        d.commands = commands + d.commands
        d.cmd_total += len(commands)
        return has_new

    def _resolve_base_image(self, d: _State, reachable: bool) -> None:
        orig = d.base_name
        try:
            name, tag, digest = _parse_normalized(d.base_name)
        except _RefError as e:
            raise self.err(f"failed to parse stage name {_go.quote(orig)}: {e}", d.pos) from None
        platform = d.platform or self.req.platform
        ref = _ref_string(name, tag, digest)
        d.base_name = ref
        if d.unregistered:
            d.dispatched = True
        if reachable:
            if d.named is not None:
                key, value = d.named
                st, img, src = self._load_named(key, value, platform)
                d.dispatched = True
                d.st = st
                d.image = img if img is not None else _Image(os=platform.os)
                d.base_img = src
                d.platform = platform
                return
            nc = self._named_context(ref, platform)
            if nc is not None:
                st, img, src = self._load_named(nc[0], nc[1], platform)
                d.image = img if img is not None else _empty_image(platform)
                d.base_img = src
                d.st = st
                d.platform = platform
                return
            source = ImageSource(ref, platform)
            cfg = self.resolve(source)
            pinned = getattr(cfg, "digest", "")
            if pinned:  # a ResolvedConfig: build on exactly that manifest
                source = dataclasses.replace(source, digest=pinned)
            d.image = (_image_from_config(cfg, platform) if cfg is not None
                       else _Image(os=platform.os))
            d.base_img = source
            d.st = _LLB(Ref(source), platform)
        else:
            d.st = _LLB(Ref(ImageSource(ref, platform)), platform)
        if d.cmd_total:
            d.cmd_index = 1  # "[1/N] FROM ..."
        d.platform = platform

    def _load_named(
        self, key: str, value: NamedContext, platform: Platform
    ) -> Tuple[_LLB, Optional[_Image], Optional[ImageSource]]:
        if isinstance(value, ImageSource):
            src = dataclasses.replace(value, platform=platform)
            cfg = self.resolve(src)
            if getattr(cfg, "digest", ""):
                src = dataclasses.replace(src, digest=cfg.digest)  # type: ignore[union-attr]
            img = _image_from_config(cfg, platform) if cfg is not None else None
            return _LLB(Ref(src), platform), img, src
        if isinstance(value, Ref):
            return _LLB(value, platform), None, None
        return _LLB(Ref(LocalSource(name=key, path=value)), platform), None, None

    # -- dispatch -------------------------------------------------------------

    def _init_state(self, d: _State) -> None:
        base = d.base
        if base is None:
            return
        assert base.st is not None
        d.st = base.st.copy()
        d.platform = base.platform
        d.image = base.image.clone()
        d.image.onbuild = []
        d.base_img = base.base_img
        d.build_args = d.build_args + base.build_args

    def _dispatch_stages(self, reachable: Set[_State]) -> None:
        for d in self.states:
            if d not in reachable or d.dispatched:
                continue
            self._init_state(d)
            d.dispatched = True
            if d.platform is None:
                d.platform = self.req.platform
            if d.st is None:  # pragma: no cover - every reachable state is resolved
                d.st = _LLB(_SCRATCH_REF)
            d.st.platform = d.platform
            d.image.os = d.platform.os
            if not d.image.has_env("PATH") and d.platform.os != "windows":
                d.image.env.append(f"PATH={DEFAULT_PATH}")
            for e in d.image.env:
                k, _, v = e.partition("=")
                d.st.env.set(k, v)
            if d.image.workdir:
                self._workdir(d, d.image.workdir, None, False)
            if d.image.user:
                d.st.user = d.image.user
            d.st.network = self.req.network
            for cmd in d.commands:
                self._dispatch(d, cmd)

    def _dispatch(self, d: _State, cmd: _Command) -> None:
        c = cmd.instr
        assert d.st is not None
        env = d.st.env.items
        pos = c.pos

        def exp(word: str) -> str:
            return self.expand(word, env, pos)

        if isinstance(c, MaintainerInstruction):
            d.image.author = c.maintainer
            self.commit(d, f"MAINTAINER {c.maintainer}", False)
        elif isinstance(c, EnvInstruction):
            pairs = [(exp(kv.key), exp(kv.value)) for kv in c.env]
            msg = "ENV"
            for k, v in pairs:
                msg += f" {k}={v}"
                d.st.env.set(k, v)
                d.image.add_env(k, v)
            self.commit(d, msg, False)
        elif isinstance(c, RunInstruction):
            self._run(d, c, cmd)
        elif isinstance(c, WorkdirInstruction):
            self._workdir(d, exp(c.path), cmd, True)
        elif isinstance(c, (AddInstruction, CopyInstruction)):
            self._copy(d, c, cmd)
        elif isinstance(c, LabelInstruction):
            msg = "LABEL"
            for kv in c.labels:
                k, v = exp(kv.key), exp(kv.value)
                d.image.labels[k] = v
                msg += f" {k}={v}"
            self.commit(d, msg, False)
        elif isinstance(c, OnbuildInstruction):
            d.image.onbuild.append(c.expression)
        elif isinstance(c, CmdInstruction):
            args = list(c.command)
            if c.prepend_shell:
                args = self._with_shell(d, args)
            d.image.cmd = args
            d.cmd_set = True
            self.commit(d, f"CMD {_go.quote_list(args)}", False)
        elif isinstance(c, EntrypointInstruction):
            args = list(c.command or ())
            if c.prepend_shell and c.command is not None:
                args = self._with_shell(d, args)
            d.image.entrypoint = args or None
            if not d.cmd_set:
                d.image.cmd = None
            self.commit(d, f"ENTRYPOINT {_go.quote_list(args)}", False)
        elif isinstance(c, HealthcheckInstruction):
            self._healthcheck(d, c)
        elif isinstance(c, ExposeInstruction):
            self._expose(d, c)
        elif isinstance(c, UserInstruction):
            user = exp(c.user)
            d.st.user = user
            d.image.user = user
            self.commit(d, f"USER {user}", False)
        elif isinstance(c, VolumeInstruction):
            vols = [exp(v) for v in c.volumes]
            for v in vols:
                if v == "":
                    raise self.err("VOLUME specified can not be an empty string", pos)
                d.image.volumes.add(v)
            self.commit(d, f"VOLUME {_go_list(vols)}", False)
        elif isinstance(c, StopsignalInstruction):
            sig = exp(c.signal)
            try:
                _check_signal(sig)
            except ValueError as e:
                raise self.err(str(e), pos) from None
            d.image.stop_signal = sig
            self.commit(d, f"STOPSIGNAL {sig}", False)
        elif isinstance(c, ShellInstruction):
            d.image.shell = list(c.shell)
            self.commit(d, f"SHELL {_go_list(c.shell)}", False)
        elif isinstance(c, ArgInstruction):
            self._arg(d, c)

    # -- instructions -------------------------------------------------------

    def _with_shell(self, d: _State, args: Sequence[str]) -> List[str]:
        if d.image.shell:
            shell = list(d.image.shell)
        elif d.image.os == "windows":
            shell = ["cmd", "/S", "/C"]
        else:
            shell = ["/bin/sh", "-c"]
        return [*shell, " ".join(args)]

    def _arg(self, d: _State, c: ArgInstruction) -> None:
        assert d.st is not None
        parts: List[str] = []
        for a in c.args:
            value = a.value
            has_value = a.key in self.req.build_args
            if value is None and not has_value:
                value = self.global_args.get(a.key)
            if has_value:
                value = self.req.build_args[a.key]
            elif a.value is not None:
                value = self.expand(a.value, d.st.env.items, c.pos)
            if value is not None and a.key not in _NON_ENV_ARGS:
                d.st.env.set(a.key, value)
            d.build_args.append((a.key, value))
            parts.append(a.key if value is None else f"{a.key}={value}")
        self.commit(d, "ARG " + " ".join(parts), False)

    def _workdir(self, d: _State, path: str, cmd: Optional[_Command], commit: bool) -> None:
        assert d.st is not None and d.platform is not None
        wd = _normalize_path(d.image.workdir, path, False)
        d.image.workdir = wd
        d.st.dir = wd
        if not commit or cmd is None:
            return
        c = cmd.instr
        layer = False
        if wd != "/":
            user = d.image.user
            name = self.prefix(
                d, self.cmd_name(self.lex, _go.trim_space(c.original), d.st.env.items),
                cmd.is_onbuild,
            )
            op = FileOp(
                base=d.st.ref,
                actions=(Mkdir(wd, 0o755, True, chown=_resolve_chown(user)),),
                platform=d.platform,
                description=name,
                location=self.location(c),
            )
            d.st.ref = Ref(op)
            layer = True
        self.commit(d, f"WORKDIR {wd}", layer)

    def _healthcheck(self, d: _State, c: HealthcheckInstruction) -> None:
        hc: Dict[str, object] = {"Test": list(c.test)}
        for key, value in (("Interval", c.interval), ("Timeout", c.timeout),
                           ("StartPeriod", c.start_period),
                           ("StartInterval", c.start_interval), ("Retries", c.retries)):
            if value:
                hc[key] = value
        d.image.healthcheck = hc
        text = (
            f"{{Test:{_go_list(c.test)} Interval:{_go_duration(c.interval or 0)} "
            f"Timeout:{_go_duration(c.timeout or 0)} "
            f"StartPeriod:{_go_duration(c.start_period or 0)} "
            f"StartInterval:{_go_duration(c.start_interval or 0)} Retries:{c.retries or 0}}}"
        )
        self.commit(d, f"HEALTHCHECK {text}", False)

    def _expose(self, d: _State, c: ExposeInstruction) -> None:
        assert d.st is not None
        ports: List[str] = []
        for p in c.ports:
            try:
                ports += self.lex.process_words(p, d.st.env.items)
            except ExpansionError as e:
                raise self.err(str(e), c.pos) from None
        specs: List[str] = []
        for p in ports:
            try:
                specs += _parse_port_spec(p)
            except ValueError as e:
                raise self.err(str(e), c.pos) from None
        d.image.exposed_ports.update(specs)
        self.commit(d, f"EXPOSE {_go_list(specs)}", False)

    def _run(self, d: _State, c: RunInstruction, cmd: _Command) -> None:
        assert d.st is not None and d.platform is not None
        args = list(c.command)
        custom = _go.trim_space(c.original)
        mounts: List[Mount] = []
        if c.heredocs:
            if len(args) != 1 or not c.prepend_shell:
                raise self.err(
                    f"parsing produced an invalid run command: {_go_list(args)}", c.pos)
            try:
                single = parse_heredoc(args[0])
            except Exception:  # a malformed word is "not a heredoc" here
                single = None
            if single is not None:
                f = c.heredocs[0]
                data = f.text()
                if d.image.os != "windows" and data.startswith("#!"):
                    doc = FileOp(
                        base=None,
                        actions=(Mkfile(_go_join("/", f.name), data.encode(), 0o755),),
                        platform=d.platform,
                        description="preparing inline document",
                    )
                    mounts.append(Mount(type="bind", target="/dev/pipes/", source=Ref(doc),
                                        readonly=True))
                    args = [_go_join("/dev/pipes/", f.name)]
                else:
                    args = [data]
                custom += f" ({_summarize_heredoc(f.content)})"
            else:
                args = [args[0] + "".join("\n" + h.content + h.name for h in c.heredocs)]
        if c.prepend_shell:
            args = self._with_shell(d, args)
        mounts += self._run_mounts(d, c, cmd)
        env = d.st.env.items
        masked = dict(env)
        for m in mounts:
            if m.type == "secret" and m.env:
                masked.pop(m.env, None)
                masked[m.env] = "****"
        raw = Lex(self.escape, raw_quotes=True, skip_unset_env=True)
        name = self.prefix(d, self.cmd_name(raw, custom, masked), cmd.is_onbuild)
        full_env = d.st.env.to_list()
        network = c.network if c.network != "default" else d.st.network
        op = Exec(
            rootfs=d.st.ref,
            args=tuple(args),
            env=tuple(full_env),
            cwd=d.st.dir or "/",
            platform=d.platform,
            user=d.st.user,
            mounts=tuple(mounts),
            network=network,
            security=c.security,
            extra_hosts=tuple(self.req.extra_hosts),
            shm_size=self.req.shm_size,
            ulimits=tuple(self.req.ulimits),
            proxy_env=tuple(self.proxy_env),
            description=name,
            location=self.location(c),
        )
        history = "RUN " + self._run_command_string(args, d.build_args, env)
        d.st.ref = Ref(op)
        self.commit(d, history, True, buildkit=True)

    @staticmethod
    def _run_command_string(
        args: Sequence[str], build_args: Sequence[Tuple[str, Optional[str]]],
        env: Mapping[str, str],
    ) -> str:
        tmp: Dict[str, str] = {}
        for key, value in build_args:
            v = env.get(key)
            if v is None:
                v = value or ""
            tmp[key] = f"{key}={v}"
        parts = list(tmp.values())
        if parts:
            parts.insert(0, f"|{len(parts)}")
        return " ".join([*parts, *args])

    def _run_mounts(self, d: _State, c: RunInstruction, cmd: _Command) -> List[Mount]:
        assert d.st is not None
        out: List[Mount] = []
        env = d.st.env.items
        ssh_index = 0
        for i, spec in enumerate(c.mount_specs):
            try:
                m = parse_mount(spec, lambda w: self.expand(w, env, c.pos), self.escape)
            except _Err as e:
                raise self.err(str(e), c.pos) from None
            frm = m.from_
            if frm == "" and m.type == "cache":
                frm = _SCRATCH
            src_state = cmd.sources[i] if i < len(cmd.sources) else None
            if m.type == "secret":
                out.append(self._secret_mount(m, c.pos))
                continue
            if m.type == "ssh":
                if m.source:
                    raise self.err("ssh does not support source", c.pos)
                mode, uid, gid = m.mode, m.uid, m.gid
                if mode is not None or uid is not None or gid is not None:
                    mode = 0o600 if mode is None else mode
                    uid, gid = uid or 0, gid or 0
                out.append(Mount(
                    type="ssh", target=m.target or f"/run/buildkit/ssh_agent.{ssh_index}",
                    secret_id=m.id or "default", required=m.required,
                    mode=mode, uid=uid, gid=gid,
                ))
                ssh_index += 1
                continue
            source: Optional[Ref] = None
            if m.type == "tmpfs":
                source = None
            elif frm:
                if src_state is None:
                    source = None
                else:
                    if not src_state.dispatched or src_state.st is None:
                        raise self.err(
                            f"cannot mount from stage {_go.quote(frm)}, it needs to be defined "
                            f"before current stage {_go.quote(d.stage_name)}", c.pos)
                    source = src_state.st.ref
                    if m.type == "cache" and source == _SCRATCH_REF:
                        source = None
            else:
                source = self.ctx_ref
            cache_id = ""
            if m.type == "cache":
                cache_id = m.id or _go_clean(m.target)
            target = m.target
            if not _go_clean(target).startswith("/"):
                target = _go_join("/", d.st.dir or "/", target)
            if target == "/":
                raise self.err(f"invalid mount target {_go.quote(target)}", c.pos)
            src_path = _go_join("/", m.source)
            out.append(Mount(
                type=m.type,
                target=target,
                source=source,
                selector=src_path if src_path != "/" else "",
                readonly=m.readonly,
                cache_id=cache_id,
                sharing=(m.sharing or "shared") if m.type == "cache" else "shared",
                mode=m.mode, uid=m.uid, gid=m.gid,
                size=m.size if m.type == "tmpfs" else None,
            ))
            if frm == "":
                self.ctx_paths.add(_go_join("/", m.source))
        return out

    def _secret_mount(self, m: MountSpec, pos: Pos) -> Mount:
        ident = m.source or m.id
        target = m.target
        if not ident:
            if not target:
                raise self.err("one of source, target required", pos)
            ident = posixpath.basename(target)
        if m.env is None:
            target = target or "/run/secrets/" + posixpath.basename(ident)
        if m.required and ident not in self.req.secrets:
            raise self.err(f"secret {ident}: not found", pos,
                           hint=f"give the build a secret with id {_go.quote(ident)}")
        mode, uid, gid = m.mode, m.uid, m.gid
        if mode is not None or uid is not None or gid is not None:
            mode = 0o400 if mode is None else mode
            uid, gid = uid or 0, gid or 0
        return Mount(type="secret", target=target, secret_id=ident, env=m.env or "",
                     required=m.required, mode=mode, uid=uid, gid=gid)

    def _copy(self, d: _State, c: Union[AddInstruction, CopyInstruction], cmd: _Command) -> None:
        assert d.st is not None and d.platform is not None
        is_add = isinstance(c, AddInstruction)
        env = d.st.env.items

        def exp(word: str) -> str:
            return self.expand(word, env, c.pos)

        sources = [exp(s) for s in c.sources]
        dest = exp(c.dest)
        chown = exp(c.chown)
        chmod = exp(c.chmod)
        excludes = tuple(exp(e) for e in c.excludes)
        checksum = exp(c.checksum) if isinstance(c, AddInstruction) else ""
        raw = Lex("\\", skip_process_quotes=True)
        contents: List[Tuple[str, str]] = []
        for sc in c.contents:
            data = sc.data
            if sc.expand:
                try:
                    data = raw.process_word(data, env)
                except ExpansionError as e:
                    raise self.err(str(e), c.pos) from None
            contents.append((sc.path, data))

        dest_path = self._relative_to_workdir(d, dest)
        if chmod:
            try:
                parse_chmod(chmod)
            except ValueError as e:
                raise self.err(str(e), c.pos) from None
        if checksum:
            if len(sources) != 1:
                raise self.err("checksum can't be specified for multiple sources", c.pos)
            if not _is_http(sources[0]) and not _is_git(sources[0]):
                raise self.err("checksum requires HTTP(S) or Git sources", c.pos)
            if _is_http(sources[0]):
                try:
                    parse_checksum(checksum)
                except ValueError as e:
                    raise self.err(str(e), c.pos,
                                   hint="write --checksum=sha256:<64 hex digits>") from None

        msg = "ADD" if is_add else "COPY"
        parents = isinstance(c, CopyInstruction) and c.parents
        if parents:
            msg += " --parents"
        if chown:
            msg += f" --chown={chown}"
        if chmod:
            msg += f" --chmod={chmod}"
        name = self.cmd_name(self.lex, _go.trim_space(c.original), env)
        pg = self.prefix(d, name, cmd.is_onbuild)

        from_state: Optional[_State] = None
        if isinstance(c, CopyInstruction) and c.from_:
            from_state = cmd.sources[0] if cmd.sources else None
            if from_state is None or not from_state.dispatched or from_state.st is None:
                raise self.err(
                    f"cannot copy from stage {_go.quote(c.from_)}, it needs to be defined "
                    f"before current stage {_go.quote(d.stage_name)}", c.pos)
        source_ref = from_state.st.ref if from_state is not None and from_state.st else self.ctx_ref
        owner = _resolve_chown(chown)
        unpack_flag = c.unpack if isinstance(c, AddInstruction) else None
        actions: List[FileAction] = []
        for src in sources:
            msg += " " + src
            if _is_git(src) or _is_http(src):
                kind = "git ref" if _is_git(src) else "URL"
                if not is_add:
                    raise self.err(f"source can't be a {kind} for COPY", c.pos)
                actions.append(self._remote_copy(d, c, src, dest_path, owner, chmod, checksum,
                                                 pg, unpack_flag))
                continue
            patterns: Tuple[str, ...] = ()
            path = src
            if parents:
                parent, sep, pattern = path.partition("/./")
                if not sep:
                    pattern, path = path, "/"
                else:
                    path = parent
                pattern = _normalize_path("/", pattern, False)
                patterns = (pattern[1:] if pattern.startswith("/") else pattern,)
            path = _normalize_path("/", path, False)
            actions.append(Copy(
                source=source_ref,
                src=(path,),
                dest=dest_path,
                chown=owner,
                chmod=chmod,
                include=patterns,
                exclude=excludes,
                follow_symlinks=True,
                dir_contents_only=True,
                create_dest_path=True,
                allow_wildcard=True,
                allow_empty_wildcard=True,
                parents=parents,
                unpack=is_add if unpack_flag is None else unpack_flag,
            ))
        for path, data in contents:
            msg += " <<" + path
            f = _go_join("/", path)
            doc = FileOp(
                base=None,
                actions=(Mkfile(f, data.encode(), 0o644),),
                platform=d.platform,
                description="preparing inline document",
            )
            actions.append(Copy(
                source=Ref(doc),
                src=(f,),
                dest=dest_path,
                chown=owner,
                chmod=chmod,
                exclude=excludes,
                follow_symlinks=False,
                dir_contents_only=False,
                create_dest_path=True,
                allow_wildcard=False,
                allow_empty_wildcard=False,
            ))
        msg += " " + dest

        loc = self.location(c)
        if c.link and not chmod:
            layer = FileOp(base=None, actions=tuple(actions), platform=d.platform,
                           description=pg, location=loc)
            d.cmd_index -= 1 if d.cmd_total else 0
            link_name = self.prefix(d, "LINK " + name, cmd.is_onbuild)
            d.st.ref = Ref(Merge(inputs=(d.st.ref, Ref(layer)), description=link_name))
        else:
            d.st.ref = Ref(FileOp(base=d.st.ref, actions=tuple(actions), platform=d.platform,
                                  description=pg, location=loc))
        if from_state is None:
            for src in sources:
                if is_add and (_is_http(src) or _is_git(src)):
                    continue
                self.ctx_paths.add(_go_join("/", src))
        self.commit(d, msg, True, buildkit=True)

    def _remote_copy(self, d: _State, c: Union[AddInstruction, CopyInstruction], src: str,
                     dest: str, owner: str, chmod: str, checksum: str, pg: str,
                     unpack: Optional[bool]) -> Copy:
        """The copy of an ``ADD <url>`` or ``ADD <git ref>`` source: BuildKit's
        llb.HTTP (file name from the URL path, never unpacked unless
        ``--unpack``) or llb.Git (the tree at the ref, ``.git`` only with
        ``--keep-git-dir``) copied to ``dest``."""
        loc = self.location(c)
        if _is_git(src):
            try:
                ref = parse_git_ref(src)
            except ValueError as e:
                raise self.err(str(e), c.pos) from None
            assert ref is not None
            commit_pin = ref.commit
            if checksum and commit_pin and checksum != commit_pin:
                raise self.err(f"checksum mismatch {_go.quote(checksum)} != {_go.quote(commit_pin)}",
                               c.pos)
            keep = isinstance(c, AddInstruction) and bool(c.keep_git_dir)
            git = GitSource(remote=ref.remote, ref=ref.ref, subdir=ref.subdir.strip("/"),
                            keep_git_dir=keep, checksum=checksum or commit_pin,
                            description=pg, location=loc)
            return Copy(source=Ref(git), src=("/",), dest=dest, chown=owner, chmod=chmod,
                        follow_symlinks=True, dir_contents_only=True, create_dest_path=True,
                        allow_wildcard=False, allow_empty_wildcard=False)
        path = urllib.parse.urlsplit(src).path
        f = "__unnamed__"
        base = posixpath.basename(posixpath.normpath(path)) if path else ""
        if base not in ("", ".", "/"):
            f = base
        http = HttpSource(url=src, filename=f, checksum=checksum, description=pg, location=loc)
        return Copy(source=Ref(http), src=(f,), dest=dest, chown=owner, chmod=chmod,
                    follow_symlinks=False, dir_contents_only=False, create_dest_path=True,
                    allow_wildcard=False, allow_empty_wildcard=False, unpack=bool(unpack))

    def _relative_to_workdir(self, d: _State, p: str) -> str:
        assert d.st is not None
        if p.startswith("/"):
            return _normalize_path("/", p, True)
        if p in (".", ""):
            p = "./"
        return _normalize_path(d.st.dir or "", p, True)

    # -- result ---------------------------------------------------------------

    def _finalize(self, target: _State) -> Export:
        img = target.image
        labels = dict(img.labels)
        labels.update(self.req.labels)
        assert target.st is not None
        config = ImageConfig(
            platform=self.req.platform,
            env=tuple(img.env),
            cmd=tuple(img.cmd) if img.cmd else None,
            entrypoint=tuple(img.entrypoint) if img.entrypoint else None,
            workdir=img.workdir,
            user=img.user,
            labels=tuple(sorted(labels.items())),
            exposed_ports=tuple(sorted(img.exposed_ports)),
            volumes=tuple(sorted(img.volumes)),
            stop_signal=img.stop_signal,
            healthcheck=dict(img.healthcheck) if img.healthcheck is not None else None,
            shell=tuple(img.shell) if img.shell else None,
            onbuild=tuple(img.onbuild),
            history=tuple(img.history),
            base=target.base_img,
        )
        return Export(target=self.req.target, platform=self.req.platform,
                      rootfs=target.st.ref, config=config)


# ---------------------------------------------------------------------------
# EXPOSE


def _parse_port_range(ports: str) -> Tuple[int, int]:
    if ports == "":
        raise ValueError("empty string specified for ports")
    if "-" not in ports:
        v = _go.parse_uint(ports, 10, 16)
        if v is None:
            raise ValueError(ports)
        return v, v
    parts = ports.split("-")
    if len(parts) != 2:
        raise ValueError(f"invalid port range format: {ports}")
    start = _go.parse_uint(parts[0], 10, 16)
    end = _go.parse_uint(parts[1], 10, 16)
    if start is None or end is None:
        raise ValueError(ports)
    if end < start:
        raise ValueError(f"invalid range specified for port: {ports}")
    return start, end


def _parse_port_spec(raw: str) -> List[str]:
    """BuildKit's parsePortSpec: ``[ip:][host:]port[-end][/proto]``."""
    parts = raw.split(":")
    if len(parts) == 1:
        ip, host, container = "", "", parts[0]
    elif len(parts) == 2:
        ip, host, container = "", parts[0], parts[1]
    else:
        ip, host, container = ":".join(parts[:-2]), parts[-2], parts[-1]
    port, _, proto = container.partition("/")
    if port == "":
        raise ValueError(f"no port specified: {container}<empty>")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise ValueError("invalid proto: " + proto)
    if ip.startswith("["):
        ip = ip[1:].split("]", 1)[0]
    if ip and not _is_ip(ip):
        raise ValueError("invalid IP address: " + ip)
    try:
        start, end = _parse_port_range(port)
    except ValueError:
        raise ValueError("invalid containerPort: " + port) from None
    if host:
        try:
            hstart, hend = _parse_port_range(host)
        except ValueError:
            raise ValueError("invalid hostPort: " + host) from None
        if (end - start) != (hend - hstart) and end != start:
            raise ValueError(
                f"invalid ranges specified for container and host Ports: {port} and {host}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _is_ip(s: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def walk(ref: Ref) -> Iterator[object]:
    """Every operation reachable from ``ref`` (each once, inputs first)."""
    seen: Set[int] = set()
    stack: List[Tuple[object, bool]] = [(ref.op, False)]
    while stack:
        op, expanded = stack.pop()
        if id(op) in seen:
            continue
        if expanded:
            seen.add(id(op))
            yield op
            continue
        stack.append((op, True))
        for child in reversed(_inputs(op)):
            if id(child.op) not in seen:
                stack.append((child.op, False))


def _inputs(op: object) -> List[Ref]:
    out: List[Ref] = []
    if isinstance(op, Exec):
        out.append(op.rootfs)
        out += [m.source for m in op.mounts if m.source is not None]
    elif isinstance(op, FileOp):
        if op.base is not None:
            out.append(op.base)
        out += [a.source for a in op.actions if isinstance(a, Copy)]
    elif isinstance(op, Merge):
        out += list(op.inputs)
    return out


