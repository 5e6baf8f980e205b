"""HCL native syntax: a fast hand-written parser and evaluator.

Follows hashicorp/hcl v2's hclsyntax (and go-cty's conversion rules) on
plain Python values::

    >>> from bakery.bakefile import hcl
    >>> body = hcl.parse('x = "a-${y + 1}"\\n', "a.hcl")
    >>> hcl.evaluate(body.attributes["x"].expr, hcl.EvalContext({"y": 1}, {}))
    'a-2'

All errors are :class:`bakery.errors.BakeryError` with a position; the
message is HCL's diagnostic, "Summary; Detail".
"""

from __future__ import annotations

import gc

from bakery.bakefile.hcl.ast import Attribute, Block, Body, Expr
from bakery.bakefile.hcl.evaluate import EvalContext, evaluate
from bakery.bakefile.hcl.parser import parse_body, parse_expr, parse_template_text
from bakery.bakefile.hcl.static import source_text, static_names, type_expr, variables_of
from bakery.errors import register_source

__all__ = [
    "Attribute",
    "Block",
    "Body",
    "EvalContext",
    "Expr",
    "evaluate",
    "parse",
    "parse_expression",
    "parse_template",
    "source_text",
    "static_names",
    "type_expr",
    "variables_of",
]


def parse(text: str, filename: str) -> Body:
    """Parse a whole HCL file into its top-level body."""
    register_source(filename, text)
    # the parse allocates many small objects and frees none: the collector
    # would only rescan them (about 15% of the time for a big file)
    enabled = gc.isenabled()
    gc.disable()
    try:
        return parse_body(text, filename)
    finally:
        if enabled:
            gc.enable()


def parse_template(text: str, filename: str, line: int = 1, col: int = 1) -> Expr:
    """Parse ``text`` as a standalone template (as HCL's JSON syntax does for strings).

    ``line``/``col`` are where ``text`` starts in ``filename``.
    """
    return parse_template_text(text, filename, line, col)


def parse_expression(text: str, filename: str, line: int = 1, col: int = 1) -> Expr:
    """Parse ``text`` as one expression (newlines are insignificant)."""
    return parse_expr(text, filename, line, col)
