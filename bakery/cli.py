"""The ``bakery`` command line: parse arguments, call the layers, map errors.

Exit codes: 0 ok; 1 a user error (bad input, failed build); 2 an internal
error (a bug: reported as one, with a hint to rerun with ``--debug``);
130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import traceback
from typing import Any, Dict, List, Optional, Sequence

from bakery import __version__
from bakery.errors import BakeryError

__all__ = ["main"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f", "--file", action="append", default=[], metavar="FILE",
        help="bake file (HCL, JSON, TOML or compose); repeatable; '-' reads stdin "
        "(default: docker-bake.hcl and the other standard names that exist)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="PATTERN.KEY[+]=VALUE",
        help="override a target attribute, e.g. --set '*.platform=linux/arm64' "
        "or --set app.args.VERSION=2 (repeatable)",
    )
    p.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE",
        help="set a bake variable (above the environment; repeatable)",
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help="targets or groups (globs allowed)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bakery",
        description="A declarative, bake-style build tool for container images.",
    )
    p.add_argument("--version", action="version", version=f"bakery {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    plan = sub.add_parser(
        "plan", help="resolve the bake files and show what would be built (dry run)",
        description="Resolve bake files into targets without building anything.",
    )
    _common(plan)
    plan.add_argument(
        "--print", action="store_true", dest="print_json",
        help="print the resolved targets as JSON, exactly as `docker buildx bake --print`",
    )
    plan.add_argument(
        "--format", choices=("text", "json", "dot", "mermaid", "html", "github-matrix", "matrix"),
        default="text",
        help="how to show the merged build graph (default: text); github-matrix (alias matrix) "
        "is a GitHub Actions strategy.matrix",
    )
    plan.add_argument(
        "--split", choices=("targets", "platforms"), default=None,
        help="github-matrix: one entry per target (default) or per target and platform "
        "(matrix, the older name, splits by platform unless told)",
    )
    plan.add_argument(
        "--resolve", action="store_true",
        help="resolve base images through their registries (their configs shape the steps, so "
        "keys then match `bakery run` and cached steps show as cached)",
    )
    plan.add_argument(
        "--shard", metavar="I/N",
        help="only the I-th of N balanced shards of the requested targets (1-based); "
        "targets that need each other stay in one shard",
    )

    run = sub.add_parser(
        "run", help="build the targets on the embedded engine",
        description="Build targets (default: the default group) and write their outputs.",
    )
    _common(run)
    run.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2,
                     help="steps to run at once (default: the number of CPUs)")
    run.add_argument("--keep-going", action="store_true",
                     help="let independent targets go on when one fails")
    run.add_argument("--outputs-on-failure", action="store_true",
                     help="with --keep-going, write the outputs of the targets that built even "
                     "when others failed (default: no output unless every target succeeded)")
    run.add_argument("--no-cache", action="store_true", help="run every step, ignoring the cache")
    run.add_argument("--driver", choices=("embedded", "docker", "buildkit"), default="embedded",
                     help="who builds: bakery's embedded engine (default), the BuildKit of a "
                     "Docker engine (DOCKER_HOST or --docker-host) or a buildkitd through buildctl "
                     "(BUILDKIT_HOST or --buildkit-addr)")
    run.add_argument("--builder", metavar="NAME",
                     help="build on the nodes of a named builder (see `bakery builder ls`)")
    run.add_argument("--buildkit-addr", metavar="URL",
                     help="the buildkitd for --driver buildkit (default: $BUILDKIT_HOST, else "
                     "unix:///run/buildkit/buildkitd.sock)")
    run.add_argument("--docker-host", metavar="URL",
                     help="the Docker engine for --driver docker (default: $DOCKER_HOST, else "
                     "unix:///var/run/docker.sock)")
    run.add_argument("--push", action="store_true", help="shorthand for --set '*.output=type=registry'")
    run.add_argument("--load", action="store_true",
                     help="shorthand for --set '*.output=type=docker' (load into $DOCKER_HOST)")
    run.add_argument("--metadata-file", metavar="FILE",
                     help="write the build result metadata (image digests, descriptors, names) "
                     "to FILE as JSON, per target, as `docker buildx bake --metadata-file`")
    run.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                     help="grant an entitlement (network.host)")
    run.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                     help="talk plain HTTP to this registry (loopback registries always may)")
    run.add_argument("--cache-dir", metavar="DIR", help="the store (default: $BAKERY_CACHE_DIR or ~/.cache/bakery)")
    run.add_argument("--progress", choices=("auto", "tty", "plain", "json", "quiet"), default="auto",
                     help="auto (tty on a terminal, else plain), tty (bars), plain (BuildKit's "
                     "numbered lines), json (one event per line on stdout), quiet (errors and result)")
    run.add_argument("--pull", action="store_true",
                     help="base image tags must be resolved by their registry (default: when the "
                     "registry cannot be reached, the tag's last resolution is used)")
    run.add_argument("--shard", metavar="I/N",
                     help="build only the I-th of N balanced shards of the requested targets "
                     "(1-based; as `bakery plan --shard I/N` shows)")

    _builder_parser(sub)

    sub.add_parser("info", help="show the sandbox, snapshotter and store bakery uses, and why")

    login = sub.add_parser(
        "login", help="log in to a registry (credentials go to Docker's config.json)",
        description="Check the credentials against the registry, then store them the Docker way: "
        "in the credential helper config.json names (credsStore/credHelpers), else base64 in "
        "its auths.  $DOCKER_CONFIG chooses the directory.")
    login.add_argument("server", nargs="?", metavar="REGISTRY", help="host[:port] (default: Docker Hub)")
    login.add_argument("-u", "--username", help="the user name")
    login.add_argument("-p", "--password", help="the password (insecure: prefer --password-stdin)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--insecure-registry", action="store_true",
                       help="talk plain HTTP to this registry (loopback registries always may)")
    logout = sub.add_parser("logout", help="forget the credentials of a registry")
    logout.add_argument("server", nargs="?", metavar="REGISTRY", help="host[:port] (default: Docker Hub)")

    setup = sub.add_parser("setup", help="prepare this machine (as root): emulation for foreign platforms")
    ssub = setup.add_subparsers(dest="setup_command", metavar="ACTION")
    emu = ssub.add_parser("emulation", help="register qemu-user-static's binfmt_misc handlers "
                          "(with the fix-binary flag) so RUN steps of other platforms can run")
    emu.add_argument("--arch", action="append", default=[], metavar="ARCH",
                     help="only this architecture (arm64, riscv64... or linux/arm64); repeatable")

    cache = sub.add_parser("cache", help="inspect or prune the shared build cache")
    csub = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    csub.add_parser("du", help="disk usage by kind, and by target where known")
    prune = csub.add_parser("prune", help="remove cache records (least recently used first) and unused blobs")
    prune.add_argument("--all", action="store_true", help="everything, cache mounts included")
    prune.add_argument("--keep-storage", metavar="SIZE", help="keep at most SIZE (e.g. 10GB)")
    prune.add_argument("--older-than", metavar="DURATION", help="records unused for DURATION (e.g. 24h, 7d)")

    ls = sub.add_parser("ls", help="list targets, groups and variables",
                        description="List the targets, groups and variables of the bake files.")
    _common(ls)
    ls.add_argument("--format", choices=("text", "json"), default="text")
    return p


def _builder_parser(sub: Any) -> None:
    b = sub.add_parser("builder", help="manage named builders (nodes for --builder)",
                       description="Named builders live in builders.toml under $BAKERY_CONFIG_DIR "
                       "(else $XDG_CONFIG_HOME/bakery, else ~/.config/bakery).")
    bsub = b.add_subparsers(dest="builder_command", metavar="ACTION")
    bsub.add_parser("ls", help="list builders and their nodes")
    add = bsub.add_parser("add", help="add a builder, or append a node to one")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--driver", required=True, choices=("docker", "buildkit"))
    add.add_argument("--endpoint", required=True, metavar="URL",
                     help="unix://, tcp:// (ssh:// for docker, kube-pod:// for buildkit)")
    add.add_argument("--platform", action="append", default=[], metavar="PLATFORMS",
                     help="platforms the node serves natively (comma-separated; repeatable)")
    add.add_argument("--node", metavar="NAME", help="the node's name (default: NAME<i>)")
    for k in ("tlscacert", "tlscert", "tlskey"):
        add.add_argument(f"--{k}", default="", metavar="FILE",
                         help=f"{k} for a buildkit tcp:// endpoint (mTLS)")
    rm = bsub.add_parser("rm", help="remove a builder, or one of its nodes")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--node", metavar="NODE", help="remove only this node")
    inspect = bsub.add_parser("inspect", help="show a builder's nodes")
    inspect.add_argument("name", metavar="NAME")


def cmd_builder(args: argparse.Namespace) -> int:
    from bakery.drivers import builders as B

    path = B.config_path(os.environ)
    current = B.load_builders(path)
    if args.builder_command == "ls":
        if not current:
            print(f"no builders in {path}")
            return 0
        rows = B.node_table(current)
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:<{width[2]}}  {r[3]}".rstrip())
        return 0
    if args.builder_command == "inspect":
        print("\n".join(B.describe(B.get_builder(current, args.name, path))))
        return 0
    if args.builder_command == "add":
        node = B.Node(name=args.node or B.next_node_name(current, args.name), driver=args.driver,
                      endpoint=args.endpoint,
                      platforms=B.parse_node_platforms(",".join(args.platform)),
                      tlscacert=_abspath(args.tlscacert), tlscert=_abspath(args.tlscert),
                      tlskey=_abspath(args.tlskey))
        updated = B.add_node(current, args.name, node)
        B.save_builders(path, updated)
        verb = "appended node" if args.name in current else "created builder " + args.name + " with node"
        print(f"{verb} {node.name} ({path})")
        return 0
    if args.builder_command == "rm":
        B.save_builders(path, B.remove(current, args.name, args.node))
        print(f"removed {'node ' + args.node + ' of ' if args.node else ''}builder {args.name}")
        return 0
    raise BakeryError("bakery builder needs an action", hint="bakery builder ls | add | rm | inspect")


def _abspath(p: str) -> str:
    return os.path.abspath(p) if p else ""


def _vars(specs: Sequence[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for s in specs:
        name, sep, value = s.partition("=")
        if not sep or not name:
            raise BakeryError(f"invalid --var {s!r}", hint="write --var NAME=VALUE")
        out[name] = value
    return out


def _load(args: argparse.Namespace):
    from bakery.bakefile.loader import load

    cfg = load(
        files=args.file,
        cli_vars=_vars(args.var),
        env=os.environ,
        cwd=os.getcwd(),
    )
    for w in cfg.warnings:
        sys.stderr.write(w + "\n")
    return cfg


def cmd_plan(args: argparse.Namespace) -> int:
    if args.print_json:
        from bakery.bakefile.files import read_files
        from bakery.bakefile.loader import plan_print

        files = read_files(args.file, os.getcwd())
        text, warnings = plan_print(
            files, _vars(args.var), os.environ, os.getcwd(), args.targets, args.set
        )
        for w in warnings:
            sys.stderr.write(w + "\n")
        sys.stdout.write(text + "\n")
        return 0

    from bakery.bakefile.loader import resolve_targets
    from bakery.graph.build import build_graph
    from bakery.graph.render import render
    from bakery.graph.shard import parse_shard, shard

    which = parse_shard(args.shard) if args.shard else None
    cfg = _load(args)
    resolved = resolve_targets(cfg, args.targets, args.set, os.environ, os.getcwd())
    with _target_positions(cfg):
        resolver: Any = _no_image_config  # plan never touches the network...
        if args.resolve:  # ...unless asked to
            from bakery.engine.run import RegistryPuller
            from bakery.engine.store import Store as _Store

            resolver = RegistryPuller(_Store()).image_config
        graph = build_graph(resolved.targets, _requested(args, resolved), os.getcwd(),
                            resolver, groups=resolved.groups)
    if which is not None:
        # only this shard's targets: their own graph (shared counts within the shard)
        graph = build_graph(resolved.targets, shard(graph, *which), os.getcwd(), resolver)
    cached = None
    if args.format == "text":
        from bakery.engine.store import Store

        store = Store()

        def in_store(key: str) -> bool:
            return store.get_record(key, touch=False) is not None

        cached = in_store
    sys.stdout.write(render(graph, args.format, cached=cached, split=args.split))
    return 0


def _no_image_config(img: Any) -> None:
    return None


@contextlib.contextmanager
def _target_positions(cfg):
    """Errors about a target ("target NAME: ...") point at its block."""
    try:
        yield
    except BakeryError as e:
        m = re.match(r"target ([A-Za-z0-9_-]+): ", e.message)
        if e.pos is None and m and ("target", m.group(1)) in cfg.positions:
            e.pos = cfg.positions[("target", m.group(1))]
        raise


def _requested(args: argparse.Namespace, resolved) -> List[str]:
    """The names the user asked for, as the graph sees them."""
    if args.targets:
        return [t.replace(".", "_") for t in args.targets]
    return ["default"] if "default" in resolved.groups else sorted(resolved.targets)


def cmd_ls(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.format == "json":
        doc = {
            "targets": [
                {"name": t.name, "description": t.description or ""} for t in cfg.targets
            ],
            "groups": [
                {"name": g.name, "description": g.description, "targets": list(g.targets)}
                for g in cfg.groups
            ],
            "variables": [
                {"name": v.name, "description": v.description, "value": v.value, "type": v.type}
                for v in cfg.variables
            ],
        }
        print(json.dumps(doc, indent=2))
        return 0
    rows: List[List[str]] = []
    for t in cfg.targets:
        rows.append(["target", t.name, t.description or ""])
    for g in cfg.groups:
        rows.append(["group", g.name, g.description or ", ".join(g.targets)])
    for v in cfg.variables:
        shown = "null" if v.value is None else json.dumps(v.value) if not isinstance(v.value, str) else v.value
        desc = f" ({v.description})" if v.description else ""
        rows.append(["variable", v.name, f"= {shown}{desc}"])
    width = [max((len(r[i]) for r in rows), default=0) for i in range(2)]
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}".rstrip())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bakery.bakefile.loader import resolve_targets
    from bakery.engine.sandbox import detect_sandbox
    from bakery.ui.progress import make_progress

    if args.cache_dir:
        os.environ["BAKERY_CACHE_DIR"] = os.path.abspath(args.cache_dir)
    cfg = _load(args)
    resolved = resolve_targets(cfg, args.targets, args.set, os.environ, os.getcwd())
    if args.builder and args.driver != "embedded":
        raise BakeryError(f"--builder {args.builder} and --driver {args.driver} both say who builds",
                          hint="a builder's nodes name their drivers: drop --driver")
    if args.metadata_file and (args.builder or args.driver != "embedded"):
        raise BakeryError(f"--metadata-file is not supported with "
                          f"{'--builder' if args.builder else '--driver ' + args.driver} yet",
                          hint="use the embedded driver, or drop --metadata-file")
    if args.builder or args.driver == "buildkit":
        return _run_builder(args, resolved)
    if args.driver == "docker":
        return _run_docker(args, resolved)
    allow_host = "network.host" in args.allow or any(
        "network.host" in (t.entitlements or []) for t in resolved.targets.values())
    sandbox, why = detect_sandbox(allow_network_host=allow_host)
    progress = make_progress(args.progress, sys.stderr, sys.stdout)
    try:
        return _run_embedded(args, cfg, resolved, sandbox, why, allow_host, progress)
    except BakeryError as e:
        progress.error(e.message, e.hint)
        raise
    except KeyboardInterrupt:
        progress.error("interrupted")
        raise
    finally:
        progress.close()


def _run_embedded(args: argparse.Namespace, cfg: Any, resolved: Any, sandbox: Any, why: str,
                  allow_host: bool, progress: Any) -> int:
    from bakery.engine.run import run_targets
    from bakery.engine.store import Store

    progress.note(f"sandbox: {why}")
    secrets = _secrets(resolved.targets.values())
    requested = _requested(args, resolved)
    if args.shard:
        from bakery.graph.build import build_graph
        from bakery.graph.shard import parse_shard, shard

        i, n = parse_shard(args.shard)  # bad specs fail here, before anything is built
        requested = shard(build_graph(resolved.targets, requested, os.getcwd(),
                                      groups=resolved.groups), i, n)
        progress.note(f"shard {i}/{n}: {', '.join(requested) or 'no targets'}")
        if not requested:
            return 0
    from bakery.engine.sandbox.ssh import SSHAgents, plan_ssh

    ssh_entries = [(getattr(s, "id", ""), tuple(getattr(s, "paths", ()) or ()))
                   for t in resolved.targets.values() for s in (getattr(t, "ssh", None) or [])]
    with _target_positions(cfg), SSHAgents.start(plan_ssh(ssh_entries, os.environ)) as agents:
        report = run_targets(
            resolved.targets, requested, resolved.groups, os.getcwd(), Store(),
            sandbox, jobs=max(1, args.jobs), keep_going=args.keep_going, no_cache=args.no_cache,
            progress=progress, secrets=secrets, allow_network_host=allow_host,
            insecure=args.insecure_registry, push=True if args.push else None,
            outputs_on_failure=args.outputs_on_failure, load=args.load, ssh=agents.sockets,
            pull=args.pull,
        )
    if args.metadata_file:
        from bakery.export import write_metadata_file

        write_metadata_file(args.metadata_file, report.metadata)
    for line in report.outputs:
        progress.result(line)
    summary = f"done: {report.executed} steps run, {report.cached} from the cache"
    if args.progress in ("json", "quiet"):
        progress.result(summary)
    else:
        progress.note(summary)
    return 0


def _driver_targets(args: argparse.Namespace, resolved) -> Dict[str, Any]:
    """The resolved targets, with --push applied to their outputs (as buildx's --push)."""
    if not args.push:
        return dict(resolved.targets)
    import dataclasses

    from bakery.bakefile.buildflags import set_push

    return {n: dataclasses.replace(t, output=set_push(t.output or [], True))
            for n, t in resolved.targets.items()}


def _run_builder(args: argparse.Namespace, resolved, builder: Any = None) -> int:
    from bakery.drivers import builders as B
    from bakery.drivers.multinode import BuilderDriver

    if builder is not None:
        pass
    elif args.builder:
        path = B.config_path(os.environ)
        builder = B.get_builder(B.load_builders(path), args.builder, path)
    else:
        addr = args.buildkit_addr or os.environ.get("BUILDKIT_HOST") or \
            "unix:///run/buildkit/buildkitd.sock"
        builder = B.Builder("buildkit", (B.check_node(B.Node("buildkit0", "buildkit", addr)),))
    order = _driver_order(args, resolved)

    def show(target: str, line: str) -> None:
        if args.progress != "quiet":
            sys.stderr.write(f"[{target}] {line.rstrip()}\n")

    docker = os.environ.get("BAKERY_DOCKER", "/usr/bin/docker")
    driver = BuilderDriver(builder, cwd=os.getcwd(), docker=docker,
                           insecure_registries=args.insecure_registry)
    results = driver.run(_driver_targets(args, resolved), order, max(1, args.jobs), show)
    for name in order:
        nodes = sorted({f"{n} ({p})" if p else n for t, p, n in driver.assignments if t == name})
        print(f"{name}: {results.get(name) or 'built'} (builder {builder.name}: "
              f"{', '.join(nodes)})")
    return 0


def _driver_order(args: argparse.Namespace, resolved) -> List[str]:
    names = _requested(args, resolved)
    order: List[str] = []
    for n in names:
        members = resolved.groups[n].targets if n in resolved.groups and n not in resolved.targets else [n]
        for m in members:
            if m in resolved.targets and m not in order:
                order.append(m)
    for n in resolved.targets:  # linked targets (target: contexts): the drivers build them as needed
        if n not in order and not resolved.targets[n].linked:
            order.append(n)
    return order


def _run_docker(args: argparse.Namespace, resolved) -> int:
    from bakery.drivers.docker import DockerDriver

    host = args.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    order = _driver_order(args, resolved)
    if any(len(resolved.targets[n].build_platforms or []) > 1 for n in order):
        # one engine as a one-node builder: each platform built on it (emulated where it
        # is not native), the images joined into one index
        from bakery.drivers import builders as B

        node = B.check_node(B.Node("docker0", "docker", host))
        return _run_builder(args, resolved, B.Builder("docker", (node,)))

    def show(target: str, line: str) -> None:
        if args.progress != "quiet":
            sys.stderr.write(f"[{target}] {line.rstrip()}\n")

    docker = os.environ.get("BAKERY_DOCKER", "/usr/bin/docker")
    images = DockerDriver(host, docker=docker, cwd=os.getcwd()).run(
        _driver_targets(args, resolved), order, max(1, args.jobs), show)
    for name in order:
        print(f"{name}: {images.get(name) or 'built'} (docker driver, {host})")
    return 0


def _secrets(targets) -> dict:
    """Secret values by id, from the targets' env/file sources (never logged)."""
    out = {}
    for t in targets:
        for s in t.secret or []:
            sid = getattr(s, "id", "")
            env = getattr(s, "env", "") or ""
            src = getattr(s, "src", "") or getattr(s, "file_path", "") or ""
            if env and env in os.environ:
                out[sid] = os.environ[env].encode()
            elif src and os.path.isfile(src):
                with open(src, "rb") as fh:
                    out[sid] = fh.read()
            elif not env and not src and sid in os.environ:
                out[sid] = os.environ[sid].encode()
            elif not env and not src and os.path.isfile(sid):
                with open(sid, "rb") as fh:
                    out[sid] = fh.read()
    return out


def cmd_info(args: argparse.Namespace) -> int:
    from bakery.bakefile.files import local_platform
    from bakery.engine.sandbox import detect_sandbox
    from bakery.engine.snapshots import detect_mode
    from bakery.engine.store import Store

    store = Store()
    _, why = detect_sandbox()
    mode, mwhy = detect_mode(os.path.join(store.root, "tmp"))
    print(f"bakery {__version__}")
    print(f"platform:    {local_platform()}")
    print(f"sandbox:     {why}")
    print(f"snapshotter: {mode} ({mwhy})")
    from bakery.engine.emulation import emulation_status

    print(f"emulation:   {emulation_status()}")
    print(f"store:       {store.root}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from bakery.engine.emulation import setup_emulation

    if args.setup_command != "emulation":
        raise BakeryError("bakery setup needs an action", hint="bakery setup emulation")
    for line in setup_emulation(args.arch):
        print(line)
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_cache(args: argparse.Namespace) -> int:
    from bakery.engine.store import Store, parse_duration, parse_size

    store = Store()
    if args.cache_command == "du":
        du = store.du()
        records = sum(1 for _ in store.records())
        for kind, size in du.items():
            print(f"{kind:<8} {_human(size):>10}")
        print(f"{'total':<8} {_human(sum(du.values())):>10}   ({records} cache records) in {store.root}")
        per = store.du_by_target()
        if per:
            print("by target (layers of the steps built for it; shared layers count for each):")
            width = max(len(t or "(unknown)") for t in per)
            for t, (size, n) in per.items():
                print(f"  {t or '(unknown)':<{width}} {_human(size):>10}   ({n} records)")
        return 0
    if args.cache_command == "prune":
        if not (args.all or args.keep_storage or args.older_than):
            raise BakeryError("say what to prune", hint="use --all, --keep-storage SIZE or --older-than DURATION")
        dropped, freed = store.prune(
            keep_storage=parse_size(args.keep_storage) if args.keep_storage else None,
            older_than=parse_duration(args.older_than) if args.older_than else None,
            everything=args.all,
        )
        print(f"removed {dropped} cache records, freed {_human(freed)}")
        return 0
    raise BakeryError("bakery cache needs an action", hint="bakery cache du | bakery cache prune --all")


def cmd_login(args: argparse.Namespace) -> int:
    import getpass

    from bakery.oci.auth import normalize_server, store_credentials
    from bakery.oci.registry import Credentials, RegistryClient, RegistryOptions

    server = normalize_server(args.server)
    if args.password and args.password_stdin:
        raise BakeryError("--password and --password-stdin are mutually exclusive")
    user = args.username
    if not user:
        if args.password_stdin or not sys.stdin.isatty():
            raise BakeryError("give the user name with --username",
                              hint="bakery login --username USER --password-stdin REGISTRY")
        user = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
        password = args.password
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise BakeryError("no password", hint="pipe it in with --password-stdin")
    if not user or not password:
        raise BakeryError("a user name and a password are needed to log in")
    opts = {server: RegistryOptions(insecure=True)} if args.insecure_registry else {}
    creds = Credentials(user, password)
    RegistryClient(options=opts, use_docker_config=False, retries=1).check_login(server, creds)
    where = store_credentials(server, creds)
    sys.stderr.write(f"credentials for {server} saved in {where}\n")
    print("Login Succeeded")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from bakery.oci.auth import erase_credentials, normalize_server

    server = normalize_server(args.server)
    if erase_credentials(server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0


COMMANDS = {"login": cmd_login, "logout": cmd_logout, "plan": cmd_plan, "ls": cmd_ls, "run": cmd_run,
            "info": cmd_info, "cache": cmd_cache, "builder": cmd_builder,
            "setup": cmd_setup}


class _Terminated(KeyboardInterrupt):
    """SIGTERM: stop as Ctrl-C does (running steps are cancelled and their
    containers, mounts and temporary directories removed)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: Optional[Sequence[str]] = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.command in ("run", "info", "cache"):
            # not root, with subordinate ids: again, inside a user namespace
            from bakery.engine.sandbox.userns import reexec

            code = reexec(list(sys.argv[1:] if argv is None else argv))
            if code is not None:
                return code
        return COMMANDS[args.command](args)
    except BakeryError as e:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(e.render() + "\n")
        return 1
    except _Terminated:
        sys.stderr.write("terminated\n")
        return 143
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception:
        if args.debug:
            traceback.print_exc()
        else:
            etype, value, _ = sys.exc_info()
            sys.stderr.write(
                f"internal error: {etype.__name__ if etype else 'error'}: {value}\n"
                "This is a bug in bakery. Rerun with --debug for the traceback and "
                "report it with the bake files that caused it.\n"
            )
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
