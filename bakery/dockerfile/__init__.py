"""bakery's Dockerfile frontend: parsing, instruction typing, expansion and
.dockerignore matching, following BuildKit's Dockerfile frontend.

* :mod:`.parser` — text to instruction nodes (directives, continuations,
  flags, JSON/shell forms, heredocs);
* :mod:`.instructions` — typed, frozen instructions and stages;
* :mod:`.expand` — BuildKit's shell-like word expansion;
* :mod:`.dockerignore` — ``.dockerignore`` reading and matching.
"""

from __future__ import annotations

from .dockerignore import IgnoreMatcher, ignore_file_for, read_ignore_patterns
from .expand import process_word, process_words
from .instructions import Dockerfile, Stage, parse_instructions
from .parser import parse

__all__ = [
    "Dockerfile",
    "IgnoreMatcher",
    "Stage",
    "ignore_file_for",
    "parse",
    "parse_instructions",
    "process_word",
    "process_words",
    "read_ignore_patterns",
]
