"""An evaluator for the part of Airtable's formula language that clients send in `filterByFormula`.

It covers what `pyairtable.formulas` and common hand-written filters produce: field references
`{Name}` (with `\\}` escapes) or a one-word name without braces, string literals in either quote
with backslash escapes, numbers, `= != < > <= >=`, `&`, `+ - * /`, the functions in `FUNCTIONS`,
and `LAST_MODIFIED_TIME()` (whose optional arguments must be field references, so the parser
handles it itself). Anything else is a
`FormulaError`, which the sandbox answers with Airtable's 422 `INVALID_FILTER_BY_FORMULA`, never
with a silent match. Values follow Airtable's coercions: a blank cell equals "", 0 and FALSE(),
numbers and numeric strings compare as numbers, dates compare as instants. A cell that holds an error
(`CELL_ERROR`, from a failed formula field) makes any formula that reads it an error too.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any


class FormulaError(Exception):
    """The formula cannot be parsed or uses something unsupported (an Airtable 422)."""


class _EvalError(Exception):
    """A value error while evaluating one record (Airtable's #Error!: the record does not match)."""


@dataclass
class EvalContext:
    """One record as a formula sees it: cell values by field name, and the record's metadata."""

    fields: dict[str, Any]
    record_id: str = ""
    created_time: datetime | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: When each field (by name) was last written; a field never written is absent.
    modified_times: dict[str, datetime] = field(default_factory=dict)

    def last_modified(self, names: Iterable[str] | None = None) -> datetime | None:
        """The latest write to any field (or to one of `names`); None if none was ever written."""
        times = self.modified_times
        chosen = [t for n, t in times.items() if names is None or n in names]
        return max(chosen) if chosen else None


# ---------------------------------------------------------------------------------------------- lexer

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>!=|<=|>=|<>|=|<|>|&|\+|-|\*|/|\(|\)|,)
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


@dataclass
class _Tok:
    kind: str  # num, str, field, name, op, end
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            j, out = i + 1, []
            while True:
                if j >= n:
                    raise FormulaError(f"Unterminated string starting at character {i + 1}.")
                c = text[j]
                if c == "\\" and j + 1 < n:
                    out.append(_ESCAPES.get(text[j + 1], text[j + 1]))
                    j += 2
                    continue
                if c == ch:
                    break
                out.append(c)
                j += 1
            toks.append(_Tok("str", "".join(out), i))
            i = j + 1
            continue
        if ch == "{":
            j, out = i + 1, []
            while True:
                if j >= n:
                    raise FormulaError(f"Unterminated field reference starting at character {i + 1}.")
                c = text[j]
                if c == "\\" and j + 1 < n and text[j + 1] == "}":
                    out.append("}")
                    j += 2
                    continue
                if c == "}":
                    break
                out.append(c)
                j += 1
            toks.append(_Tok("field", "".join(out), i))
            i = j + 1
            continue
        m = _TOKEN_RE.match(text, i)
        if m is None:
            raise FormulaError(f"Unexpected character {ch!r} at character {i + 1}.")
        kind = m.lastgroup or ""
        if kind != "ws":
            value: Any = m.group()
            if kind == "num":
                value = float(value) if any(c in value for c in ".eE") else int(value)
            toks.append(_Tok(kind, value, i))
        i = m.end()
    toks.append(_Tok("end", None, n))
    return toks


# --------------------------------------------------------------------------------------------- parser

Node = Callable[[EvalContext], Any]


class _Parser:
    def __init__(self, text: str, known_fields: set[str] | None) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.known = known_fields
        self.unknown_fields: list[str] = []
        self.unknown_functions: list[str] = []

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect_op(self, op: str) -> None:
        tok = self.next()
        if tok.kind != "op" or tok.value != op:
            raise FormulaError(f"Expected {op!r} at character {tok.pos + 1}.")

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise FormulaError("The formula is empty.")
        node = self.comparison()
        tok = self.peek()
        if tok.kind != "end":
            raise FormulaError(f"Unexpected {tok.value!r} at character {tok.pos + 1}.")
        return node

    def comparison(self) -> Node:
        left = self.concat()
        while self.peek().kind == "op" and self.peek().value in _COMPARE:
            op = self.next().value
            right = self.concat()
            left = _binary(_COMPARE[op], left, right)
        return left

    def concat(self) -> Node:
        left = self.additive()
        while self.peek().kind == "op" and self.peek().value == "&":
            self.next()
            right = self.additive()
            left = _binary(lambda a, b: _text(a) + _text(b), left, right)
        return left

    def additive(self) -> Node:
        left = self.term()
        while self.peek().kind == "op" and self.peek().value in "+-":
            op = self.next().value
            right = self.term()
            left = _binary(_add if op == "+" else _sub, left, right)
        return left

    def term(self) -> Node:
        left = self.unary()
        while self.peek().kind == "op" and self.peek().value in "*/":
            op = self.next().value
            right = self.unary()
            left = _binary(_mul if op == "*" else _div, left, right)
        return left

    def unary(self) -> Node:
        if self.peek().kind == "op" and self.peek().value in "+-":
            op = self.next().value
            operand = self.unary()
            if op == "+":
                return operand
            return lambda ctx: -_number(operand(ctx))
        return self.primary()

    def primary(self) -> Node:
        tok = self.next()
        if tok.kind in ("num", "str"):
            value = tok.value
            return lambda ctx: value
        if tok.kind == "field":
            return self.field_ref(tok.value)
        if tok.kind == "op" and tok.value == "(":
            node = self.comparison()
            self.expect_op(")")
            return node
        if tok.kind == "name":
            name = tok.value.upper()
            if not (self.peek().kind == "op" and self.peek().value == "("):
                if name in ("TRUE", "FALSE"):
                    constant = name == "TRUE"
                    return lambda ctx: constant
                # Airtable reads a one-word name without braces as a field reference ("Unknown field names" if
                # the table has no such field).
                return self.field_ref(tok.value)
            self.next()
            if name == "LAST_MODIFIED_TIME":
                return self.last_modified_time()
            args: list[Node] = []
            if not (self.peek().kind == "op" and self.peek().value == ")"):
                args.append(self.comparison())
                while self.peek().kind == "op" and self.peek().value == ",":
                    self.next()
                    args.append(self.comparison())
            self.expect_op(")")
            return self.call(name, tok, args)
        if tok.kind == "end":
            raise FormulaError("The formula ends too early.")
        raise FormulaError(f"Unexpected {tok.value!r} at character {tok.pos + 1}.")

    def last_modified_time(self) -> Node:
        """`LAST_MODIFIED_TIME()` or `LAST_MODIFIED_TIME({A}, {B}, ...)`: its arguments must be field references."""
        names: list[str] = []
        while not (self.peek().kind == "op" and self.peek().value == ")"):
            if names:
                self.expect_op(",")
            tok = self.next()
            if tok.kind != "field":
                where = f"at character {tok.pos + 1}" if tok.kind != "end" else "at the end"
                raise FormulaError(f"LAST_MODIFIED_TIME() takes only field references, not {tok.value!r} {where}.")
            self.field_ref(tok.value)
            names.append(tok.value)
        self.expect_op(")")
        if not names:
            return lambda ctx: ctx.last_modified()
        chosen = frozenset(names)
        return lambda ctx: ctx.last_modified(chosen)

    def field_ref(self, name: str) -> Node:
        if self.known is not None and name not in self.known:
            self.unknown_fields.append(name)

        def read(ctx: EvalContext) -> Any:
            value = ctx.fields.get(name)
            if value is CELL_ERROR:
                raise _EvalError(f"the field {name!r} holds an error")
            return value

        return read

    def call(self, name: str, tok: _Tok, args: list[Node]) -> Node:
        spec = FUNCTIONS.get(name)
        if spec is None:
            self.unknown_functions.append(name)
            return lambda ctx: None
        low, high, impl = spec
        if not low <= len(args) <= (high if high >= 0 else len(args)):
            raise FormulaError(f"{name}() at character {tok.pos + 1} got {len(args)} arguments.")
        if name in _LAZY:
            return lambda ctx: impl(ctx, *args)
        return lambda ctx: impl(ctx, *(a(ctx) for a in args))


def _binary(fn: Callable[[Any, Any], Any], left: Node, right: Node) -> Node:
    return lambda ctx: fn(left(ctx), right(ctx))


def compile_formula(text: str, known_fields: Iterable[str] | None = None) -> Node:
    """Parse `text` once; the result evaluates it for a record context.

    With `known_fields`, a reference to another field is a FormulaError (Airtable rejects it).
    """
    parser = _Parser(text, set(known_fields) if known_fields is not None else None)
    node = parser.parse()
    if parser.unknown_functions:
        names = ", ".join(dict.fromkeys(parser.unknown_functions))
        raise FormulaError(f"Unknown function names: {names}")
    if parser.unknown_fields:
        names = ", ".join(dict.fromkeys(parser.unknown_fields))
        raise FormulaError(f"Unknown field names: {names}")
    return node


class _CellError:
    """The value of a cell whose formula failed (Airtable's #ERROR!); reading it in a formula is an error too."""

    def __repr__(self) -> str:
        return "#ERROR!"


CELL_ERROR = _CellError()


def evaluate_cell(node: Node, ctx: EvalContext) -> Any:
    """The value of a compiled formula as a cell holds it: `CELL_ERROR` where Airtable shows #ERROR!."""
    try:
        return node(ctx)
    except (_EvalError, ArithmeticError, ValueError, OverflowError):
        return CELL_ERROR


def evaluate(node: Node, ctx: EvalContext) -> Any:
    """The value of a compiled formula, or None where Airtable would show #Error!."""
    try:
        return node(ctx)
    except (_EvalError, ArithmeticError, ValueError, OverflowError):
        return None


def matches(node: Node, ctx: EvalContext) -> bool:
    """Whether a record passes a filter: not 0, FALSE, "", NaN, blank, [] or an error."""
    return is_truthy(evaluate(node, ctx))


def is_truthy(value: Any) -> bool:
    if value is None or value is False or value == "" or value == []:
        return False
    if isinstance(value, int | float) and (value == 0 or math.isnan(value)):
        return False
    return True


# ------------------------------------------------------------------------------------ value coercion


def _number(v: Any) -> float | int:
    if v is None or v == "":
        return 0
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            raise _EvalError(f"not a number: {v!r}") from None
        return int(f) if f.is_integer() and "." not in v else f
    raise _EvalError(f"not a number: {v!r}")


def _format_number(v: float | int) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return str(v)


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int | float):
        return _format_number(v)
    if isinstance(v, datetime):
        return _iso(v)
    if isinstance(v, list):
        return ", ".join(_text(x) for x in v)
    return str(v)


def _iso(d: datetime) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_datetime(v: Any) -> datetime | None:
    """An ISO 8601 date or date-time as an aware UTC datetime; None if it is not one."""
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=UTC)
    if not isinstance(v, str):
        return None
    s = v.strip()
    if not _ISO_RE.match(s):
        return None
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d.astimezone(UTC) if d.tzinfo else d.replace(tzinfo=UTC)


def _date(v: Any) -> datetime:
    d = parse_datetime(v)
    if d is None:
        raise _EvalError(f"not a date: {v!r}")
    return d


def _unify(a: Any, b: Any) -> tuple[Any, Any]:
    """Coerce two operands to comparable values the way Airtable does."""
    if isinstance(a, list):
        a = _text(a)
    if isinstance(b, list):
        b = _text(b)
    if a is None and b is None:
        return 0, 0
    if isinstance(a, datetime) or isinstance(b, datetime):
        if a is None or b is None:
            return (0, 1) if a is None else (1, 0)
        return _date(a), _date(b)
    if a is None:
        a = "" if isinstance(b, str) else 0
    if b is None:
        b = "" if isinstance(a, str) else 0
    numeric = (bool, int, float)
    if isinstance(a, numeric) and isinstance(b, numeric):
        return _number(a), _number(b)
    if isinstance(a, numeric) or isinstance(b, numeric):
        try:
            return _number(a), _number(b)
        except _EvalError:
            return _text(a), _text(b)
    return _text(a), _text(b)


def _eq(a: Any, b: Any) -> bool:
    x, y = _unify(a, b)
    return bool(x == y)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": _eq,
    "!=": lambda a, b: not _eq(a, b),
    "<>": lambda a, b: not _eq(a, b),
    "<": lambda a, b: bool((u := _unify(a, b))[0] < u[1]),
    ">": lambda a, b: bool((u := _unify(a, b))[0] > u[1]),
    "<=": lambda a, b: bool((u := _unify(a, b))[0] <= u[1]),
    ">=": lambda a, b: bool((u := _unify(a, b))[0] >= u[1]),
}


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, datetime) or isinstance(b, datetime):
        raise _EvalError("use DATEADD to add to a date")
    return _number(a) + _number(b)


def _sub(a: Any, b: Any) -> Any:
    return _number(a) - _number(b)


def _mul(a: Any, b: Any) -> Any:
    return _number(a) * _number(b)


def _div(a: Any, b: Any) -> Any:
    divisor = _number(b)
    if divisor == 0:
        raise _EvalError("division by zero")
    return _number(a) / divisor


# ------------------------------------------------------------------------------------------ functions

_UNITS = {
    "milliseconds": "ms",
    "millisecond": "ms",
    "ms": "ms",
    "seconds": "s",
    "second": "s",
    "s": "s",
    "minutes": "m",
    "minute": "m",
    "m": "m",
    "hours": "h",
    "hour": "h",
    "h": "h",
    "days": "d",
    "day": "d",
    "d": "d",
    "weeks": "w",
    "week": "w",
    "w": "w",
    "months": "M",
    "month": "M",
    "M": "M",
    "quarters": "Q",
    "quarter": "Q",
    "Q": "Q",
    "years": "y",
    "year": "y",
    "y": "y",
}
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _unit(v: Any) -> str:
    text = _text(v).strip()
    unit = _UNITS.get(text) or _UNITS.get(text.lower())
    if unit is None:
        raise _EvalError(f"unknown unit {v!r}")
    return unit


def _add_months(d: datetime, months: int) -> datetime:
    total = d.month - 1 + months
    year, month = d.year + total // 12, total % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day)


def _dateadd(ctx: EvalContext, d: Any, count: Any, unit: Any) -> datetime:
    base, n, u = _date(d), _number(count), _unit(unit)
    if u in ("M", "Q", "y"):
        return _add_months(base, int(n) * {"M": 1, "Q": 3, "y": 12}[u])
    return base + timedelta(seconds=n * _UNIT_SECONDS[u])


def _datetime_diff(ctx: EvalContext, a: Any, b: Any, unit: Any = "seconds") -> int | float:
    x, y, u = _date(a), _date(b), _unit(unit)
    if u in ("M", "Q", "y"):
        months = (x.year - y.year) * 12 + (x.month - y.month)
        if months > 0 and (x.day, x.time()) < (y.day, y.time()):
            months -= 1
        elif months < 0 and (x.day, x.time()) > (y.day, y.time()):
            months += 1
        return int(months / {"M": 1, "Q": 3, "y": 12}[u])
    seconds = (x - y).total_seconds()
    return seconds * 1000 if u == "ms" else int(seconds / _UNIT_SECONDS[u])


_MOMENT = [
    ("YYYY", "%Y"),
    ("MM", "%m"),
    ("DD", "%d"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("M", "%m"),
    ("D", "%d"),
]


def _moment_to_strftime(fmt: str) -> str:
    out, i = "", 0
    while i < len(fmt):
        for token, code in _MOMENT:
            if fmt.startswith(token, i):
                out += code
                i += len(token)
                break
        else:
            out += fmt[i].replace("%", "%%")
            i += 1
    return out


def _datetime_parse(ctx: EvalContext, v: Any, fmt: Any = None, locale: Any = None) -> datetime:
    if fmt is not None and _text(fmt):
        try:
            d = datetime.strptime(_text(v), _moment_to_strftime(_text(fmt)))
        except ValueError:
            raise _EvalError(f"{v!r} does not match {fmt!r}") from None
        return d.replace(tzinfo=UTC)
    return _date(v)


def _datetime_format(ctx: EvalContext, v: Any, fmt: Any = None) -> str:
    d = _date(v)
    if fmt is None:
        return _iso(d)
    return d.strftime(_moment_to_strftime(_text(fmt)))


def _is_same(ctx: EvalContext, a: Any, b: Any, unit: Any = None) -> bool:
    x, y = _date(a), _date(b)
    if unit is None:
        return x == y
    u = _unit(unit)
    keys = {
        "y": lambda d: (d.year,),
        "Q": lambda d: (d.year, (d.month - 1) // 3),
        "M": lambda d: (d.year, d.month),
        "w": lambda d: d.isocalendar()[:2],
        "d": lambda d: (d.year, d.month, d.day),
        "h": lambda d: (d.year, d.month, d.day, d.hour),
        "m": lambda d: (d.year, d.month, d.day, d.hour, d.minute),
        "s": lambda d: (d.year, d.month, d.day, d.hour, d.minute, d.second),
        "ms": lambda d: d,
    }[u]
    return bool(keys(x) == keys(y))


def _find(ctx: EvalContext, needle: Any, haystack: Any, start: Any = None) -> int:
    offset = max(int(_number(start)) - 1, 0) if start is not None else 0
    return _text(haystack).find(_text(needle), offset) + 1


def _search(ctx: EvalContext, needle: Any, haystack: Any, start: Any = None) -> int | None:
    offset = max(int(_number(start)) - 1, 0) if start is not None else 0
    pos = _text(haystack).lower().find(_text(needle).lower(), offset) + 1
    return pos or None


def _if(ctx: EvalContext, cond: Node, then: Node, otherwise: Node | None = None) -> Any:
    if is_truthy(cond(ctx)):
        return then(ctx)
    return otherwise(ctx) if otherwise is not None else None


def _and(ctx: EvalContext, *args: Node) -> bool:
    return all(is_truthy(a(ctx)) for a in args)


def _or(ctx: EvalContext, *args: Node) -> bool:
    return any(is_truthy(a(ctx)) for a in args)


def _iserror(ctx: EvalContext, arg: Node) -> bool:
    try:
        arg(ctx)
    except (_EvalError, ArithmeticError, ValueError):
        return True
    return False


def _round(ctx: EvalContext, v: Any, digits: Any = 0) -> float | int:
    n, d = _number(v), int(_number(digits))
    factor = 10**d
    result = math.floor(abs(n) * factor + 0.5) / factor * (1 if n >= 0 else -1)
    return int(result) if d <= 0 else result


def _value(ctx: EvalContext, v: Any) -> float | int:
    cleaned = re.sub(r"[^0-9eE.+-]", "", _text(v))
    return _number(cleaned) if cleaned else 0


def _flat(args: Iterable[Any]) -> list[Any]:
    """Arguments with lists (a lookup's or a rollup's `values`) spread out, blanks left out."""
    out: list[Any] = []
    for a in args:
        out.extend(_flat(a) if isinstance(a, list) else [] if a is None else [a])
    return out


def _error() -> Any:
    raise _EvalError("ERROR()")


def _sqrt(v: Any) -> float:
    n = _number(v)
    return math.sqrt(n) if n >= 0 else math.nan


def _s(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Adapt a plain function of values to the (ctx, *values) signature."""
    return lambda ctx, *args: fn(*args)


#: name -> (min args, max args or -1, implementation); lazy ones receive unevaluated nodes.
FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "AND": (1, -1, _and),
    "OR": (1, -1, _or),
    "XOR": (1, -1, _s(lambda *a: sum(is_truthy(x) for x in a) % 2 == 1)),
    "NOT": (1, 1, _s(lambda a: not is_truthy(a))),
    "IF": (2, 3, _if),
    "ISERROR": (1, 1, _iserror),
    "BLANK": (0, 0, _s(lambda: None)),
    "TRUE": (0, 0, _s(lambda: True)),
    "FALSE": (0, 0, _s(lambda: False)),
    "ERROR": (0, 0, _s(_error)),
    "SQRT": (1, 1, _s(_sqrt)),
    "SUM": (1, -1, _s(lambda *a: sum(_number(x) for x in _flat(a)))),
    "MAX": (1, -1, _s(lambda *a: max((_number(x) for x in _flat(a)), default=0))),
    "MIN": (1, -1, _s(lambda *a: min((_number(x) for x in _flat(a)), default=0))),
    "COUNTA": (1, -1, _s(lambda *a: len([x for x in _flat(a) if x != ""]))),
    "ARRAYJOIN": (1, 2, _s(lambda a, sep=", ": _text(sep).join(_text(x) for x in _flat([a])))),
    "RECORD_ID": (0, 0, lambda ctx: ctx.record_id),
    "CREATED_TIME": (0, 0, lambda ctx: ctx.created_time),
    "FIND": (2, 3, _find),
    "SEARCH": (2, 3, _search),
    "LOWER": (1, 1, _s(lambda a: _text(a).lower())),
    "UPPER": (1, 1, _s(lambda a: _text(a).upper())),
    "LEN": (1, 1, _s(lambda a: len(_text(a)))),
    "TRIM": (1, 1, _s(lambda a: _text(a).strip())),
    "T": (1, 1, _s(lambda a: a if isinstance(a, str) else "")),
    "CONCATENATE": (1, -1, _s(lambda *a: "".join(_text(x) for x in a))),
    "LEFT": (2, 2, _s(lambda a, n: _text(a)[: max(int(_number(n)), 0)])),
    "RIGHT": (2, 2, _s(lambda a, n: _text(a)[-int(_number(n)) :] if int(_number(n)) > 0 else "")),
    "MID": (3, 3, _s(lambda a, s, n: _text(a)[max(int(_number(s)) - 1, 0) :][: max(int(_number(n)), 0)])),
    "SUBSTITUTE": (3, 3, _s(lambda a, old, new: _text(a).replace(_text(old), _text(new)))),
    "VALUE": (1, 1, _value),
    "ABS": (1, 1, _s(lambda a: abs(_number(a)))),
    "ROUND": (1, 2, _round),
    "INT": (1, 1, _s(lambda a: math.floor(_number(a)))),
    "NOW": (0, 0, lambda ctx: ctx.now),
    "TODAY": (0, 0, lambda ctx: ctx.now.replace(hour=0, minute=0, second=0, microsecond=0)),
    "DATETIME_PARSE": (1, 3, _datetime_parse),
    "DATETIME_FORMAT": (1, 2, _datetime_format),
    "DATEADD": (3, 3, _dateadd),
    "DATETIME_DIFF": (2, 3, _datetime_diff),
    "IS_AFTER": (2, 2, _s(lambda a, b: _date(a) > _date(b))),
    "IS_BEFORE": (2, 2, _s(lambda a, b: _date(a) < _date(b))),
    "IS_SAME": (2, 3, _is_same),
}
_LAZY = {"AND", "OR", "IF", "ISERROR"}
