"""Bake-level evaluation: variables, functions and blocks → raw targets.

This is buildx's ``hclparser.Parse`` in Python.  Input is the parsed bodies
of every HCL/JSON/TOML bake file, in order; output is a :class:`Config`: the
targets (one per name, same-named blocks merged in file order) and groups,
before ``inherits``, overrides and defaults are applied (see
:mod:`bakery.bakefile.resolve`).

Everything is evaluated lazily and at most once, as buildx does:

* a variable's value is computed the first time an expression names it
  (top-level attribute definitions win over a variable block's default;
  ``--var`` and the environment override variables, typed by the variable's
  ``type`` or, without one, by its default's type);
* ``target.NAME.ATTR`` and ``group.NAME.ATTR`` references evaluate just that
  attribute of the named block (with cycle detection);
* matrix targets expand into one instance per combination, named by their
  ``name`` expression, and the original name becomes a group of them.

Example::

    variable "TAG" { default = "latest" }
    target "app" { tags = ["app:${TAG}"] }

gives one target ``app`` with ``tags = ["app:latest"]`` (or ``app:dev`` with
``TAG=dev`` in the environment).
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from bakery.bakefile import buildflags, hcl
from bakery.bakefile.functions import FUNCTIONS
from bakery.bakefile.model import FIELD_BY_KEY, Config, Group, Target, VariableInfo
from bakery.bakefile.values import (
    ConvertError,
    FunctionError,
    Value,
    is_number,
    to_bool,
    to_number,
    to_string,
    type_name,
)
from bakery.errors import BakeryError, Pos, closest

__all__ = ["Config", "VariableInfo", "evaluate_bodies", "validate_name"]

BLOCK_TYPES = ("group", "target")
# functions whose result is not determined by their arguments (the clock,
# randomness, the user's home directory): a Config using them is not cached
IMPURE_FUNCTIONS = frozenset({"timestamp", "uuidv4", "bcrypt", "homedir"})
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")


def validate_name(name: str, pos: Optional[Pos]) -> None:
    if not NAME_RE.match(name):
        raise BakeryError(
            f'invalid name "{name}": only "[a-zA-Z0-9_-]+" are allowed',
            pos,
            hint="use letters, digits, '_' and '-' in target and group names",
        )


# --------------------------------------------------------------------------
# Types (variable ``type = ...``)


def type_to_str(t: Any) -> str:
    kind = t[0]
    if kind == "primitive":
        return str(t[1])
    if kind == "any":
        return "any"
    if kind in ("list", "set", "map"):
        return f"{kind}({type_to_str(t[1])})"
    if kind == "tuple":
        return "tuple([" + ", ".join(type_to_str(x) for x in t[1]) + "])"
    if kind == "object":
        return "object({" + ", ".join(f"{k}={type_to_str(v[0])}" for k, v in t[1].items()) + "})"
    return str(t)


def convert(value: Value, t: Any, ctx: Optional[hcl.EvalContext] = None) -> Value:
    """Convert ``value`` to type ``t`` as cty's convert does; ConvertError if it can't."""
    kind = t[0]
    if kind == "any":
        return value
    if value is None:
        return None
    if kind == "primitive":
        prim = t[1]
        if prim == "string":
            return to_string(value)
        if prim == "number":
            return to_number(value)
        if prim == "bool":
            return to_bool(value)
        raise ConvertError(f"unknown type {prim}")
    if kind in ("list", "set"):
        if isinstance(value, Mapping) or not isinstance(value, (list, tuple)):
            raise ConvertError(f"{type_to_str(t)} required, got {type_name(value)}")
        items = [convert(v, t[1], ctx) for v in value]
        if kind == "set":
            out: List[Value] = []
            for v in items:
                if v not in out:
                    out.append(v)
            with contextlib.suppress(TypeError):
                out.sort(key=lambda v: (not isinstance(v, str), v))
            return out
        return items
    if kind == "tuple":
        if not isinstance(value, (list, tuple)):
            raise ConvertError(f"tuple required, got {type_name(value)}")
        if len(value) != len(t[1]):
            raise ConvertError(f"tuple required with {len(t[1])} elements, got {len(value)}")
        return [convert(v, et, ctx) for v, et in zip(value, t[1])]
    if kind == "map":
        if not isinstance(value, Mapping):
            raise ConvertError(f"map required, got {type_name(value)}")
        return {str(k): convert(v, t[1], ctx) for k, v in value.items()}
    if kind == "object":
        if not isinstance(value, Mapping):
            raise ConvertError(f"object required, got {type_name(value)}")
        result: Dict[str, Value] = {}
        for name, spec in t[1].items():
            at, optional, default = spec[0], spec[1], spec[2] if len(spec) > 2 else None
            if name in value and value[name] is not None:
                result[name] = convert(value[name], at, ctx)
            elif optional:
                dv = None
                if default is not None and ctx is not None:
                    dv = convert(hcl.evaluate(default, ctx), at, ctx)
                result[name] = dv
            else:
                raise ConvertError(f'attribute "{name}" is required')
        return result
    raise ConvertError(f"unsupported type {type_to_str(t)}")


def _is_primitive_type(t: Any) -> bool:
    return bool(t[0] == "primitive")


def _parse_go_bool(s: str) -> bool:
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{s}": invalid syntax')


def _parse_go_float(s: str) -> Value:
    try:
        n = float(s.replace("_", "") if False else s)
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{s}": invalid syntax') from None
    if n != n or n in (float("inf"), float("-inf")):
        raise ValueError("invalid number value")
    return to_number(n)


def _csv_fields(s: str) -> List[str]:
    if s == "":
        return []
    rows = list(csv.reader([s], strict=True))
    return rows[0] if rows else []


def parse_override(name: str, raw: str, t: Any) -> Value:
    """A typed variable's override from the environment / --var (CSV form)."""
    kind = t[0]
    if kind == "primitive" or kind == "any":
        prim = t[1] if kind == "primitive" else "string"
        if prim == "string":
            return raw
        if prim == "number":
            return _parse_go_float(raw)
        return _parse_go_bool(raw)
    if kind in ("list", "set"):
        if not _is_primitive_type(t[1]) and t[1][0] != "any":
            raise ValueError(f"unsupported type {type_to_str(t)} for CSV override; use {name}_JSON")
        return convert([parse_override(name, f, t[1]) for f in _csv_fields(raw)], t)
    if kind == "tuple":
        fields_ = _csv_fields(raw)
        if len(fields_) != len(t[1]):
            raise ValueError(f"expected {len(t[1])} values for {type_to_str(t)}, got {len(fields_)}")
        return [parse_override(name, f, et) for f, et in zip(fields_, t[1])]
    if kind in ("map", "object"):
        out: Dict[str, Value] = {}
        for f in _csv_fields(raw):
            k, sep, v = f.partition("=")
            if not sep:
                raise ValueError(f'expected key=value, got "{f}"')
            if kind == "map":
                et = t[1]
            else:
                spec = t[1].get(k)
                if spec is None:
                    raise ValueError(f'unexpected attribute "{k}" for {type_to_str(t)}')
                et = spec[0]
            if not _is_primitive_type(et):
                raise ValueError(f"unsupported type {type_to_str(t)} for CSV override; use {name}_JSON")
            out[k] = parse_override(name, v, et)
        return convert(out, t)
    raise ValueError(f"unsupported type {type_to_str(t)}")


# --------------------------------------------------------------------------
# Block instances


_UNSET = object()


class _Instance:
    """One evaluated instance of a target or group block (one matrix entry)."""

    def __init__(self, ev: _Evaluator, block: Any, ctx: hcl.EvalContext, name: str):
        self.ev = ev
        self.block = block
        self.ctx = ctx
        self.name = name
        self.values: Dict[str, Any] = {}  # decoded attribute values
        self.progress: set = set()

    def attr(self, key: str) -> Any:
        """The decoded value of attribute ``key`` (None when not set)."""
        if key in self.values:
            return self.values[key]
        attr = self.block.body.attributes.get(key)
        if attr is None or key in ("matrix", "name") or not _known(self.block.type, key):
            return None
        if key in self.progress:
            raise BakeryError(
                f"reference cycle not allowed for {self.block.type}.{self.name}.{key}",
                attr.pos,
            )
        self.progress.add(key)
        try:
            raw = hcl.evaluate(attr.expr, self.ctx)
            value = self.ev.decode(self.block.type, key, raw, attr)
        finally:
            self.progress.discard(key)
        self.values[key] = value
        return value

    def reference_value(self, key: str) -> Value:
        """The attribute as seen through ``target.NAME.key`` (cty shape)."""
        v = self.attr(key)
        f = FIELD_BY_KEY.get(key)
        if v is None:
            return None
        if (f is not None and f.merge == "flags") or key in ("cache-to", "output", "policy"):
            return [e.to_json() if hasattr(e, "to_json") else e for e in v]
        if isinstance(v, tuple):
            return list(v)
        return v


class _BlockRef(Mapping):
    """``target.NAME``: the attributes of the block(s) named NAME, lazily."""

    def __init__(self, kind: str, instances: List[_Instance]):
        self.kind = kind
        self.instances = instances

    def _keys(self) -> List[str]:
        if self.kind == "group":
            return ["description", "name", "targets"]
        return sorted([*FIELD_BY_KEY, "inherits", "name"])

    def __getitem__(self, key: str) -> Value:
        if key not in self._keys():
            raise KeyError(key)
        if key == "name":
            return self.instances[-1].name
        value: Value = None
        for inst in self.instances:
            value = inst.reference_value(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


class _Namespace(Mapping):
    """``target`` / ``group`` as a variable: names → :class:`_BlockRef`."""

    def __init__(self, ev: _Evaluator, kind: str):
        self.ev = ev
        self.kind = kind

    def __getitem__(self, name: str) -> Value:
        insts = self.ev.instances_by_name[self.kind].get(name)
        if not insts:
            raise KeyError(name)
        return _BlockRef(self.kind, insts)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.ev.instances_by_name[self.kind]))

    def __len__(self) -> int:
        return len(self.ev.instances_by_name[self.kind])


class _Scope(Mapping):
    """The root scope: variables, top-level attributes, built-ins and blocks."""

    def __init__(self, ev: _Evaluator):
        self.ev = ev

    def __getitem__(self, name: str) -> Value:
        ev = self.ev
        if name in ev.values:
            return ev.values[name]
        if name in BLOCK_TYPES:
            return ev.namespaces[name]
        if name in ev.attrs or name in ev.vars or name in ev.builtins:
            return ev.resolve_value(name)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        ev = self.ev
        return (
            name in ev.values
            or name in BLOCK_TYPES
            or name in ev.attrs
            or name in ev.vars
            or name in ev.builtins
        )

    def __iter__(self) -> Iterator[str]:
        names = set(self.ev.attrs) | set(self.ev.vars) | set(self.ev.builtins) | set(BLOCK_TYPES)
        return iter(sorted(names))

    def __len__(self) -> int:
        return len(list(iter(self)))


class _Functions(Mapping):
    """Built-in functions first (as buildx), then the file's ``function`` blocks."""

    def __init__(self, ev: _Evaluator):
        self.ev = ev

    def __getitem__(self, name: str) -> Callable[..., Value]:
        fn = FUNCTIONS.get(name)
        if fn is not None:
            if name in IMPURE_FUNCTIONS:
                self.ev.impure = True
            return fn
        return self.ev.resolve_function(name)

    def __contains__(self, name: object) -> bool:
        return name in FUNCTIONS or name in self.ev.funcs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(FUNCTIONS) | set(self.ev.funcs)))

    def __len__(self) -> int:
        return len(set(FUNCTIONS) | set(self.ev.funcs))


# --------------------------------------------------------------------------


class _Evaluator:
    def __init__(
        self,
        bodies: Sequence[Any],
        lookup: Callable[[str], Optional[str]],
        builtins: Mapping[str, str],
    ):
        self.lookup = lookup
        self.impure = False
        self.builtins = dict(builtins)
        self.values: Dict[str, Value] = {}
        self.progress: List[str] = []
        self.vars: Dict[str, Any] = {}  # name -> variable Block
        self.var_types: Dict[str, Any] = {}
        self.funcs: Dict[str, Any] = {}  # name -> function Block
        self.user_funcs: Dict[str, Callable[..., Value]] = {}
        self.func_progress: set = set()
        self.attrs: Dict[str, Any] = {}  # top-level attributes
        self.blocks: List[Any] = []  # target and group blocks, in order
        reserved = set(BLOCK_TYPES) | set(self.builtins)
        for body in bodies:
            for b in body.blocks:
                if b.type == "variable":
                    self._check_labels(b)
                    if b.labels[0] not in reserved:
                        self.vars[b.labels[0]] = b
                elif b.type == "function":
                    self._check_labels(b)
                    if b.labels[0] not in reserved:
                        self.funcs[b.labels[0]] = b
                elif b.type in BLOCK_TYPES:
                    self.blocks.append(b)
                # other block types are ignored, as buildx does
            for name, a in body.attributes.items():
                if name in reserved or name == "function":
                    continue
                self.attrs[name] = a
        self.ctx = hcl.EvalContext(_Scope(self), _Functions(self))
        self.namespaces = {k: _Namespace(self, k) for k in BLOCK_TYPES}
        self.instances_by_name: Dict[str, Dict[str, List[_Instance]]] = {k: {} for k in BLOCK_TYPES}

    @staticmethod
    def _check_labels(b: Any) -> None:
        if len(b.labels) != 1:
            raise BakeryError(
                f"invalid block label: {b.labels}: a {b.type} block needs exactly one label",
                b.pos,
                hint=f'write it as {b.type} "name" {{ ... }}',
            )

    # -- variables ---------------------------------------------------------

    def _var_type(self, name: str) -> Any:
        if name in self.var_types:
            return self.var_types[name]
        t = None
        vb = self.vars.get(name)
        if vb is not None and "type" in vb.body.attributes:
            t = hcl.type_expr(vb.body.attributes["type"].expr)
        self.var_types[name] = t
        return t

    def _override(self, name: str) -> Tuple[Optional[str], bool]:
        """(raw value, is_json) from --var / the environment."""
        json_name = name + "_JSON"
        if json_name not in self.vars and json_name not in self.attrs:
            raw = self.lookup(json_name)
            if raw is not None:
                return raw, True
        return self.lookup(name), False

    def resolve_value(self, name: str) -> Value:
        if name in self.values:
            return self.values[name]
        if name in self.progress:
            chain = " -> ".join([*self.progress[self.progress.index(name):], name])
            pos = self._def_pos(name)
            raise BakeryError(f"variable cycle not allowed for {name}: {chain}", pos)
        self.progress.append(name)
        try:
            value = self._compute_value(name)
        finally:
            self.progress.pop()
        self.values[name] = value
        return value

    def _def_pos(self, name: str) -> Optional[Pos]:
        if name in self.attrs:
            return self.attrs[name].pos
        vb = self.vars.get(name)
        if vb is not None:
            d = vb.body.attributes.get("default")
            return d.expr.pos if d is not None else vb.pos
        return None

    def _compute_value(self, name: str) -> Value:
        is_var = name in self.vars
        definition = self.attrs.get(name)
        if definition is None and name not in self.builtins:
            definition = self.vars[name].body.attributes.get("default")
        vtype = self._var_type(name) if is_var else None
        vb = self.vars.get(name)
        pos = self._def_pos(name)

        if definition is None:
            if name in self.builtins:
                return self.builtins[name]
            raw, is_json = self._override(name)
            if vtype is None:
                return raw if raw is not None and not is_json else (
                    self._from_json(name, raw, ("any",), pos) if raw is not None else ""
                )
            if raw is None:
                return None
            return self._typed_override(name, raw, is_json, vtype, pos)

        value = hcl.evaluate(definition.expr, self.ctx)
        if vtype is not None and value is not None:
            try:
                value = convert(value, vtype, self.ctx)
            except ConvertError as e:
                raise BakeryError(
                    f'invalid default value for variable "{name}": {e}',
                    definition.pos,
                    hint=f"the variable's type is {type_to_str(vtype)}",
                ) from None
        if not is_var:
            return value
        raw, is_json = self._override(name)
        if raw is None:
            return value
        if vtype is not None:
            return self._typed_override(name, raw, is_json, vtype, pos)
        if is_json:
            return self._from_json(name, raw, ("any",), pos)
        # untyped: the default's type decides (buildx)
        try:
            if isinstance(value, bool):
                return _parse_go_bool(raw)
            if is_number(value):
                return _parse_go_float(raw)
        except ValueError as e:
            kind = "bool" if isinstance(value, bool) else "number"
            raise BakeryError(
                f"failed to parse {name} as {kind}: {e}",
                pos,
                hint=f"the default of {name} is a {kind}; give the override in that form",
            ) from None
        if value is None or isinstance(value, str):
            return raw
        raise BakeryError(
            f"unsupported type {type_name(value)} for variable {name}",
            vb.pos if vb is not None else pos,
            hint=f"give the variable a type (e.g. type = list(string)) to override it "
            f"from the environment, or use {name}_JSON",
        )

    def _from_json(self, name: str, raw: str, t: Any, pos: Optional[Pos]) -> Value:
        try:
            v = json.loads(raw)
        except ValueError as e:
            raise BakeryError(f"invalid JSON in {name}_JSON: {e}", pos) from None
        if isinstance(v, float):
            v = to_number(v)
        try:
            return convert(v, t, self.ctx)
        except ConvertError as e:
            raise BakeryError(f"invalid value in {name}_JSON: {e}", pos) from None

    def _typed_override(self, name: str, raw: str, is_json: bool, t: Any, pos: Optional[Pos]) -> Value:
        if is_json:
            return self._from_json(name, raw, t, pos)
        try:
            return parse_override(name, raw, t)
        except (ValueError, ConvertError, csv.Error) as e:
            raise BakeryError(
                f"invalid value for variable {name} ({type_to_str(t)}): {e}",
                pos,
                hint=f"set {name}_JSON to a JSON value instead",
            ) from None

    def validate_variables(self) -> None:
        for name, vb in self.vars.items():
            for b in vb.body.blocks:
                if b.type != "validation":
                    continue
                cond_attr = b.body.attributes.get("condition")
                msg_attr = b.body.attributes.get("error_message")
                if cond_attr is None or msg_attr is None:
                    raise BakeryError(
                        "a validation block needs condition and error_message", b.pos
                    )
                cond = hcl.evaluate(cond_attr.expr, self.ctx)
                try:
                    ok = to_bool(cond)
                except ConvertError as e:
                    raise BakeryError(
                        f"invalid validation condition for {name}: {e}", cond_attr.pos
                    ) from None
                if not ok:
                    msg = to_string(hcl.evaluate(msg_attr.expr, self.ctx))
                    raise BakeryError(f"validation failed: {msg}", cond_attr.pos)

    # -- functions ---------------------------------------------------------

    def resolve_function(self, name: str) -> Callable[..., Value]:
        fn = self.user_funcs.get(name)
        if fn is not None:
            return fn
        block = self.funcs.get(name)
        if block is None:
            raise KeyError(name)
        attrs = block.body.attributes
        if "result" not in attrs:
            raise BakeryError(f"empty result not allowed for {name}", block.pos,
                              hint="add result = <expression> to the function block")
        if "params" not in attrs:
            raise BakeryError(f"empty params not allowed for {name}", block.pos,
                              hint="add params = [] (or a list of names) to the function block")
        params = hcl.static_names(attrs["params"].expr)
        if params is None:
            raise BakeryError(
                "invalid param element: each parameter name must be an identifier",
                attrs["params"].pos,
            )
        variadic: Optional[str] = None
        if "variadic_params" in attrs:
            names = hcl.static_names(attrs["variadic_params"].expr, single=True)
            if not names:
                raise BakeryError(
                    "invalid param element: each parameter name must be an identifier",
                    attrs["variadic_params"].pos,
                )
            variadic = names[0]
        result = attrs["result"].expr
        root = self.ctx
        progress = self.func_progress

        def user_function(*args: Value) -> Value:
            if len(args) < len(params):
                raise FunctionError(
                    f"not enough arguments: function {name} expects "
                    f"{'at least ' if variadic else ''}{len(params)}, got {len(args)}"
                )
            if variadic is None and len(args) > len(params):
                raise FunctionError(
                    f"too many arguments: function {name} expects {len(params)}, got {len(args)}"
                )
            scope: Dict[str, Value] = dict(zip(params, args))
            if variadic is not None:
                scope[variadic] = list(args[len(params):])
            depth_key = name
            if len(progress) > 200:
                raise FunctionError(f"function cycle not allowed for {name}")
            progress.add(depth_key)
            try:
                return hcl.evaluate(result, root.child(scope))
            finally:
                progress.discard(depth_key)

        self.user_funcs[name] = user_function
        return user_function

    # -- blocks ------------------------------------------------------------

    def decode(self, kind: str, key: str, raw: Value, attr: Any) -> Any:
        """Convert an evaluated attribute to the model's type for ``key``."""
        try:
            if kind == "group":
                if key == "targets":
                    return _str_list(raw)
                if key == "description":
                    return "" if raw is None else to_string(raw)
                return None  # not evaluated: see _known
            if key == "inherits":
                return _str_list(raw)
            f = FIELD_BY_KEY.get(key)
            if f is None:
                return None  # not evaluated: see _known
            if raw is None:
                return None
            if f.kind == "str":
                return to_string(raw)
            if f.kind == "bool":
                return to_bool(raw)
            if f.kind == "list":
                return _str_list(raw)
            if f.kind in ("map", "strmap"):
                if not isinstance(raw, Mapping):
                    raise ConvertError(f"a map of strings is required, got {type_name(raw)}")
                out: Dict[str, Optional[str]] = {}
                for k, v in raw.items():
                    if v is None and f.kind == "map":
                        raise ConvertError(f'element "{k}": a null value cannot be used as a string')
                    out[str(k)] = None if v is None else to_string(v)
                return out
            # composable attributes: a list of CSV strings and/or objects
            if isinstance(raw, (str, Mapping)) or not isinstance(raw, (list, tuple)):
                raise ConvertError(f"a list is required, got {type_name(raw)}")
            return buildflags.parse_list(f.kind, list(raw))
        except ConvertError as e:
            raise BakeryError(f'inappropriate value for attribute "{key}": {e}', attr.expr.pos) from None
        except ValueError as e:
            raise BakeryError(f'invalid value for attribute "{key}": {e}', attr.expr.pos) from None

    def instances_of(self, block: Any) -> List[_Instance]:
        kind = block.type
        if len(block.labels) != 1:
            self._check_labels(block)
        label = block.labels[0]
        validate_name(label, block.label_pos[0] if block.label_pos else block.pos)
        attrs = block.body.attributes
        if kind == "group":
            for bad in ("matrix", "name"):
                if bad in attrs:
                    raise BakeryError(f"{bad} is not supported for groups", attrs[bad].pos)
            return [_Instance(self, block, self.ctx, label)]
        ctxs = [self.ctx]
        if "matrix" in attrs:
            m = hcl.evaluate(attrs["matrix"].expr, self.ctx)
            if not isinstance(m, Mapping):
                raise BakeryError("matrix must be a map", attrs["matrix"].expr.pos,
                                  hint='write matrix = { axis = ["a", "b"] }')
            combos: List[Dict[str, Value]] = [{}]
            for k in sorted(m):
                vals = m[k]
                if isinstance(vals, Mapping):
                    vals = [vals[x] for x in sorted(vals)]
                elif not isinstance(vals, (list, tuple)):
                    raise BakeryError("matrix values must be a list", attrs["matrix"].expr.pos,
                                      hint=f"matrix axis {k} is a {type_name(vals)}")
                combos = [{**c, k: v} for v in vals for c in combos]
            ctxs = [self.ctx.child(c) for c in combos]
        elif "name" in attrs:
            raise BakeryError("name requires matrix", attrs["name"].pos,
                              hint="add a matrix attribute, or remove name")
        out = []
        for c in ctxs:
            name = label
            if "name" in attrs:
                nv = hcl.evaluate(attrs["name"].expr, c)
                try:
                    name = to_string(nv)
                except ConvertError as e:
                    raise BakeryError(f"invalid name: {e}", attrs["name"].expr.pos) from None
                validate_name(name, attrs["name"].expr.pos)
            out.append(_Instance(self, block, c, name))
        seen: Dict[str, bool] = {}
        for inst in out:
            if inst.name in seen:
                where = attrs["name"].pos if "name" in attrs else block.pos
                raise BakeryError(
                    f'duplicate name "{inst.name}"',
                    where,
                    hint="give the matrix target a name that uses every matrix axis, "
                    'e.g. name = "app-${axis}"',
                )
            seen[inst.name] = True
        return out

    def run(self) -> Config:
        cfg = Config()
        for name in self.builtins:
            self.values.setdefault(name, self.builtins[name])
        for name in list(self.vars):
            self.resolve_value(name)
        self.validate_variables()
        for name in list(self.funcs):
            self.resolve_function(name)

        per_block: List[Tuple[Any, List[_Instance]]] = []
        renamed: Dict[Tuple[str, str], List[str]] = {}
        for b in self.blocks:
            insts = self.instances_of(b)
            per_block.append((b, insts))
            for inst in insts:
                self.instances_by_name[b.type].setdefault(inst.name, []).append(inst)
                renamed.setdefault((b.type, b.labels[0]), []).append(inst.name)

        targets: Dict[str, Target] = {}
        groups: Dict[str, Group] = {}
        for b, insts in per_block:
            for inst in insts:
                for key, a in b.body.attributes.items():
                    if not _known(b.type, key):
                        w = _unknown_warning(b.type, key, a)
                        if w not in cfg.warnings:
                            cfg.warnings.append(w)
                if b.type == "group":
                    for key in b.body.attributes:
                        inst.attr(key)
                    g = Group(
                        inst.name,
                        tuple(inst.attr("targets") or ()),
                        inst.attr("description") or "",
                    )
                    if inst.name not in groups:
                        cfg.positions[("group", inst.name)] = b.pos
                    groups[inst.name] = g  # a later group replaces an earlier one
                    continue
                values: Dict[str, Any] = {}
                for key in b.body.attributes:
                    if key in ("matrix", "name") or not _known(b.type, key):
                        continue
                    values[key] = inst.attr(key)
                for nb in b.body.blocks:
                    # buildx ignores blocks inside targets; `args { ... }` is a
                    # common slip for `args = { ... }`, so say so
                    w = (f"{nb.pos}: warning: block \"{nb.type}\" inside a target is ignored "
                         f"(as buildx does); did you mean {nb.type} = {{ ... }}?")
                    if w not in cfg.warnings:
                        cfg.warnings.append(w)
                t = _target_from_values(inst.name, values)
                if inst.name in targets:
                    from bakery.bakefile.resolve import merge_targets

                    targets[inst.name] = merge_targets(targets[inst.name], t)
                else:
                    targets[inst.name] = t
                    cfg.positions[("target", inst.name)] = b.pos

        # for matrix targets the original name becomes a group of the new names
        for (kind, old), new_names in renamed.items():
            if kind != "target":
                continue
            names = list(dict.fromkeys(new_names))
            if len(names) == 1 and names[0] == old:
                continue
            groups[old] = Group(old, tuple(names))
            cfg.positions.setdefault(("group", old), cfg.positions.get(("target", names[0]), Pos("", 0, 0)))

        # variables in file order, for `bakery ls`
        for name, vb in self.vars.items():
            d = vb.body.attributes.get("description")
            desc = ""
            if d is not None:
                dv = hcl.evaluate(d.expr, self.ctx)
                desc = "" if dv is None else to_string(dv)
            t = self._var_type(name)
            cfg.variables.append(
                VariableInfo(name, desc, self.values.get(name), type_to_str(t) if t else None, vb.pos)
            )
        cfg.targets = list(targets.values())
        cfg.groups = list(groups.values())
        cfg.impure = self.impure
        return cfg


_GROUP_KEYS = ("targets", "description")


def _known(kind: str, key: str) -> bool:
    if kind == "group":
        return key in _GROUP_KEYS
    return key in FIELD_BY_KEY or key in ("inherits", "matrix", "name")


def _unknown_warning(kind: str, key: str, attr: Any) -> str:
    """buildx ignores attributes it does not know (without evaluating them);
    bakery does too, for compatibility, but says so."""
    names = _GROUP_KEYS if kind == "group" else [*FIELD_BY_KEY, "inherits", "matrix", "name"]
    hint = closest(key, names)
    return (
        f"{attr.pos}: warning: unknown {kind} attribute \"{key}\" is ignored (as buildx does)"
        + (f"; {hint}" if hint else "")
    )


def _str_list(raw: Value) -> Optional[List[str]]:
    if raw is None:
        return None
    if isinstance(raw, (str, Mapping)) or not isinstance(raw, (list, tuple)):
        raise ConvertError(f"a list of strings is required, got {type_name(raw)}")
    out = []
    for v in raw:
        if v is None:
            raise ConvertError("a null value cannot be used in a list of strings")
        out.append(to_string(v))
    return out


def _target_from_values(name: str, values: Dict[str, Any]) -> Target:
    kw: Dict[str, Any] = {}
    for key, v in values.items():
        if key == "inherits":
            kw["inherits"] = tuple(v or ())
            continue
        if v is None:
            continue
        f = FIELD_BY_KEY[key]
        kw[f.attr] = v
    return Target(name=name, **kw)


def evaluate_bodies(
    bodies: Sequence[Any],
    lookup: Callable[[str], Optional[str]],
    builtins: Mapping[str, str],
) -> Config:
    """Evaluate parsed bake bodies into a :class:`Config`.

    ``lookup(name)`` gives a variable's override (``--var``, then the
    environment) or None; ``builtins`` are BAKE_CMD_CONTEXT and friends.
    """
    return _Evaluator(bodies, lookup, builtins).run()
