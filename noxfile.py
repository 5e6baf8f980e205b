"""Developer sessions: ``nox -s tests lint typecheck`` (and ``bench``)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PY_FILES = ["bakery", "tests", "benchmarks", "examples", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (integration ones skip what the machine lacks)."""
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["tests"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", *PY_FILES)


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".", "mypy", "types-PyYAML")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Plan benchmark on a generated 1,000-target bake file."""
    session.install("-e", ".")
    session.run("python", "benchmarks/plan_bench.py", *session.posargs)
