"""Parse ADQL text and validate it against the catalogue.

* Syntax: sqlglot with the :class:`~gateway.adql.dialect.ADQL` dialect, plus token checks for
  invalid SQL sqlglot tolerates (``SELECT a, FROM t``, ``a > > b``).
* Allow-list: only ADQL 2.1 constructs (ADQL 2.1 §2) pass; anything else is a
  :class:`~gateway.faults.UsageFault` naming the construct and its line/column.
* Names: every table must exist in the catalogue and every column in a table in scope
  (TAP 1.1 §2.7.4 ``QUERY``); errors suggest the nearest existing name.
* ``SELECT *`` / ``t.*`` are expanded to explicit columns, so result FIELDs follow the declared
  column order, and each output column gets its FIELD name (TAP 1.1 §3: column name or alias).
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from ..faults import UsageFault
from ..schema import Column, Table
from .dialect import ADQL

#: ADQL 2.1 §2.4 geometry functions, in TAPRegExt declaration order (gateway/protocols/vosi.py)
GEOMETRY_ORDER = (
    "POINT",
    "CIRCLE",
    "BOX",
    "POLYGON",
    "CONTAINS",
    "INTERSECTS",
    "DISTANCE",
    "COORD1",
    "COORD2",
    "COORDSYS",
    "AREA",
    "CENTROID",
    "REGION",
)
GEOMETRY_FUNCTIONS = frozenset(GEOMETRY_ORDER)
GEOMETRY_VALUES = {"POINT": "point", "CIRCLE": "circle", "BOX": "polygon", "POLYGON": "polygon", "CENTROID": "point"}

ALLOWED = (
    exp.Select,
    exp.From,
    exp.Join,
    exp.Table,
    exp.TableAlias,
    exp.Alias,
    exp.Identifier,
    exp.Column,
    exp.Star,
    exp.Literal,
    exp.Null,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Offset,
    exp.Distinct,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.And,
    exp.Or,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.DPipe,
    exp.Like,
    exp.ILike,
    exp.In,
    exp.Between,
    exp.Is,
    exp.Exists,
    exp.Subquery,
    exp.Tuple,
    exp.Abs,
    exp.Ceil,
    exp.Degrees,
    exp.Exp,
    exp.Floor,
    exp.Ln,
    exp.Log,
    exp.Pow,
    exp.Radians,
    exp.Rand,
    exp.Round,
    exp.Sqrt,
    exp.Trunc,
    exp.Sin,
    exp.Cos,
    exp.Tan,
    exp.Asin,
    exp.Acos,
    exp.Atan,
    exp.Atan2,
    exp.Cot,
    exp.Pi,
    exp.Lower,
    exp.Upper,
    exp.Coalesce,
    exp.Cast,
    exp.DataType,
    exp.Count,
    exp.Sum,
    exp.Avg,
    exp.Min,
    exp.Max,
    exp.Contains,
    exp.Anonymous,
)
CAST_TYPES = {
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
    exp.DataType.Type.FLOAT,
    exp.DataType.Type.DOUBLE,
    exp.DataType.Type.CHAR,
    exp.DataType.Type.VARCHAR,
}
#: how a user wrote the types the ADQL dialect reads under other names (for messages)
CAST_NAMES = {
    exp.DataType.Type.ROWVERSION: "TIMESTAMP",
    exp.DataType.Type.BOOLEAN: "BOOLEAN",
    exp.DataType.Type.TEXT: "TEXT",
}
NAMES: dict[type, str] = {  # user-facing names of sqlglot nodes for error messages
    exp.Union: "UNION",
    exp.Except: "EXCEPT",
    exp.Intersect: "INTERSECT",
    exp.With: "WITH",
    exp.BitwiseRightShift: "'>>'",
    exp.BitwiseLeftShift: "'<<'",
    exp.Window: "window function (OVER)",
    exp.Case: "CASE (not part of ADQL 2.1)",
    exp.CTE: "WITH",
    exp.BitwiseAnd: "the bitwise operator '&' (not part of ADQL 2.1)",
    exp.BitwiseOr: "the bitwise operator '|' (not part of ADQL 2.1)",
    exp.BitwiseXor: "the bitwise operator '^' (not part of ADQL 2.1)",
    exp.BitwiseNot: "the bitwise operator '~' (not part of ADQL 2.1)",
    exp.DataTypeParam: "a type parameter",
}


class Catalogue(Protocol):
    def lookup(self, schema: str | None, table: str) -> tuple[str, Table] | None: ...
    def qualified_names(self) -> list[str]: ...


@dataclass
class OutputColumn:
    """One result column: FIELD ``name``, declared ``column`` metadata if the expression is a
    plain column reference, else the ``xtype`` hint of a geometry constructor."""

    name: str
    column: Column | None = None
    xtype: str | None = None
    unit: str | None = None  # the unit of a computed value where ADQL fixes it (IN_UNIT)


@dataclass
class AdqlQuery:
    """A validated query.  ``ast`` has stars expanded, table references resolved
    (``node.meta['gw_table']``) and every select expression aliased to its FIELD name."""

    text: str
    ast: exp.Select
    output: list[OutputColumn]
    tables: list[Table] = field(default_factory=list)
    archives: set[str] = field(default_factory=set)
    uploads: dict = field(default_factory=dict)  # lower-case name -> gateway.uploads.UploadTable
    udfs: set[str] = field(default_factory=set)  # upper-case names of the user-defined functions used
    with_queries: bool = False  # the query has WITH (common table expressions)

    @property
    def top(self) -> int | None:
        lim = self.ast.args.get("limit")
        if lim is None:
            return None
        return int(lim.expression.name)


def position_of(node: Any) -> tuple[int, int] | None:
    if node is None:
        return None
    for n in node.walk():
        meta = getattr(n, "_meta", None) or {}
        if "line" in meta:
            return (
                meta["line"],
                max(1, meta["col"] - len(n.name) + 1) if isinstance(n, exp.Identifier) else meta["col"],
            )
    return None


#: Bounds on a query's shape, checked before and right after parsing (a parser, translator or
#: SQL engine recursing through a deeper tree would exhaust the stack): parentheses, function
#: calls and subqueries nested deeper than MAX_NESTING, a run of prefix operators (NOT, unary
#: - and +) longer than MAX_NESTING, a parsed tree deeper than MAX_TREE_DEPTH (a chain of
#: 400 operators), and a string or numeric literal longer than MAX_LITERAL characters.
MAX_NESTING = 64
MAX_TREE_DEPTH = 400
MAX_LITERAL = 65_536
#: the largest exact numeric literal any engine and writer can hold (DECIMAL(38), VOTable long/double)
MAX_DIGITS = 38
#: the parser spends about 25 Python frames per nesting level; Python 3.11 frames of pure
#: Python calls do not grow the C stack, so a deeper limit than CPython's default 1000 is safe
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
_PREFIX = {TokenType.NOT, TokenType.DASH, TokenType.PLUS}


def _check_bounds(tokens) -> None:
    depth, run = 0, 0
    for t in tokens:
        where = (t.line, max(1, t.col - len(t.text) + 1))
        if t.token_type == TokenType.L_PAREN:
            depth += 1
            if depth > MAX_NESTING:
                raise UsageFault(
                    f"the query nests parentheses, functions or subqueries more than {MAX_NESTING} "
                    "levels deep; simplify it",
                    position=where,
                )
        elif t.token_type == TokenType.R_PAREN:
            depth = max(0, depth - 1)
        run = run + 1 if t.token_type in _PREFIX else 0
        if run > MAX_NESTING:
            raise UsageFault(
                f"more than {MAX_NESTING} NOT, - or + operators in a row; simplify the expression", position=where
            )
        if t.token_type in (TokenType.STRING, TokenType.NUMBER) and len(t.text) > MAX_LITERAL:
            raise UsageFault(
                f"a literal of {len(t.text)} characters; literals are limited to {MAX_LITERAL} "
                "(upload long lists as a TAP_UPLOAD table)",
                position=where,
            )
        if t.token_type == TokenType.NUMBER:
            digits = t.text.lower().split("e")[0].replace(".", "").lstrip("0")
            if "e" not in t.text.lower() and len(digits) > MAX_DIGITS:
                raise UsageFault(
                    f"the number {t.text[:50]} has more than {MAX_DIGITS} digits; write it as "
                    "an approximate literal (e.g. 1.5E40)",
                    position=where,
                )


def _check_depth(tree: exp.Expression) -> None:
    """Raise UsageFault if the parsed tree is deeper than MAX_TREE_DEPTH (walked iteratively)."""
    stack = [(tree, 1)]
    while stack:
        node, d = stack.pop()
        if d > MAX_TREE_DEPTH:
            raise UsageFault(
                f"the query's expressions are nested more than {MAX_TREE_DEPTH} levels deep (a long "
                "chain of operators); simplify it, or put long lists of values in IN (...) or a "
                "TAP_UPLOAD table",
                position=position_of(node),
            )
        stack.extend((child, d + 1) for child in node.iter_expressions())


def parse(text: str, udfs: frozenset[str] = frozenset()) -> exp.Select:
    """Parse one ADQL query.  Raises :class:`UsageFault` with line/column on syntax errors
    and for queries beyond the shape bounds above."""
    if not text or not text.strip():
        raise UsageFault("QUERY is empty")
    try:
        tokens = ADQL().tokenize(text)
    except TokenError as e:
        raise UsageFault(f"ADQL syntax error: {_token_error(e)}")
    except (ValueError, IndexError, RecursionError):  # the tokenizer's own failures on malformed text
        raise UsageFault(
            "ADQL syntax error: the query text could not be split into ADQL tokens (check quotes and comments)"
        )
    _check_bounds(tokens)
    for a, b in zip(tokens, tokens[1:]):
        bad = None
        if a.token_type == TokenType.COMMA and b.token_type in (TokenType.FROM, TokenType.WHERE, TokenType.R_PAREN):
            bad = f"unexpected {b.text!r} after ','"
        elif a.token_type in (TokenType.GT, TokenType.LT) and b.token_type in (TokenType.GT, TokenType.LT):
            bad = f"unexpected {b.text!r} after {a.text!r}"
        if bad:
            raise UsageFault(f"ADQL syntax error: {bad}", position=(b.line, max(1, b.col - len(b.text) + 1)))
    try:
        trees = ADQL().parser().parse(tokens, text)  # the tokens above: the text is tokenized once
    except ParseError as e:
        err = e.errors[0] if e.errors else {}
        desc = err.get("description", str(e)).split(". Line")[0]
        hl = err.get("highlight")
        desc = _in_user_terms(desc, hl, tokens, err.get("line"), err.get("col"))
        msg = f"ADQL syntax error: {desc}" + (f" near {hl!r}" if hl else "")
        pos = (err["line"], max(1, err["col"] - len(hl or "") + 1)) if "line" in err else None
        raise UsageFault(msg, position=pos)
    except RecursionError:
        raise UsageFault(f"the query is nested too deeply to parse; keep nesting under {MAX_NESTING} levels")
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise UsageFault("QUERY must contain exactly one ADQL SELECT statement")
    tree = trees[0]
    if isinstance(tree, SET_OPS):
        leaves = _set_leaves(tree)
        for leaf in leaves:
            if not isinstance(leaf, exp.Select):
                raise UsageFault(f"each side of {NAMES[type(tree)]} must be a SELECT", position=position_of(leaf))
        last = tree
        while isinstance(last, SET_OPS):
            last = last.expression
        for arg in ("order", "offset"):  # ADQL 2.1: after an unparenthesized last SELECT they apply to the
            if isinstance(last, exp.Select) and last.args.get(arg) is not None and tree.args.get(arg) is None:
                tree.set(arg, last.args[arg].pop())  # combined rows; TOP stays with its SELECT
    elif not isinstance(tree, exp.Select):
        first = next((t for t in tokens if t.token_type not in (TokenType.L_PAREN,)), None)
        word = first.text if first is not None else ""
        if word.upper() in ("INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "WITH"):
            what = f"a {word.upper()} statement"
        else:
            what = repr(word)
        raise UsageFault(
            f"an ADQL query begins with SELECT, not {what}",
            position=(first.line, max(1, first.col - len(first.text) + 1)) if first else None,
        )
    for hexa in list(tree.find_all(exp.HexString)):  # ADQL 2.1 §2.1.4: 0x1F is the integer 31
        value = int(hexa.this, 16)
        if value >= 1 << 63:
            raise UsageFault(
                f"the hexadecimal literal 0x{hexa.this} does not fit a 64-bit integer", position=position_of(hexa)
            )
        hexa.replace(exp.Literal.number(value))
    _check_depth(tree)
    _region_and_coordsys(tree)
    check_allowed(tree, udfs)
    return tree


#: STC-S shapes REGION reads (ADQL 2.0 §2.4.14; STC-S 1.33 §6): shape -> (ADQL function, numbers)
STCS_SHAPES = {"POSITION": ("POINT", 2), "CIRCLE": ("CIRCLE", 3), "BOX": ("BOX", 4), "POLYGON": ("POLYGON", None)}


def _region_and_coordsys(tree: exp.Expression) -> None:
    """``REGION('stc-s')`` (ADQL 2.0 §2.4.14) becomes the geometry it describes: ``POSITION``,
    ``CIRCLE``, ``BOX`` or ``POLYGON`` with an optional ICRS frame (STC-S 1.33 §6), so every
    engine and upstream reads it as ``POINT``/``CIRCLE``/``BOX``/``POLYGON``.  ``COORDSYS(geom)``
    (§2.4.9) is the literal ``'ICRS'``: every geometry here is ICRS.  Raises UsageFault for
    other STC-S (unions, frames other than ICRS, wrong number counts)."""
    from .geometry import FRAMES

    for node in list(tree.find_all(exp.Anonymous)):
        name = node.name.upper()
        if name == "COORDSYS":
            if len(node.expressions) != 1:
                raise UsageFault("COORDSYS takes one geometry", position=position_of(node))
            node.replace(exp.Literal.string("ICRS"))
        elif name == "REGION":
            args = node.expressions
            if len(args) != 1 or not (isinstance(args[0], exp.Literal) and args[0].is_string):
                raise UsageFault(
                    "REGION takes one STC-S string: REGION('CIRCLE ICRS 10 0 1')", position=position_of(node)
                )
            words = args[0].name.split()
            shape = words[0].upper() if words else ""
            if shape not in STCS_SHAPES:
                raise UsageFault(
                    f"REGION reads the STC-S shapes {', '.join(STCS_SHAPES)}, not {shape or 'an empty string'!r}",
                    position=position_of(node),
                )
            rest = words[1:]
            frame = []
            while rest and not _is_number(rest[0]):
                frame.append(rest.pop(0).upper())
            if " ".join(frame) not in FRAMES:
                raise UsageFault(
                    f"REGION: the frame {' '.join(frame)!r} is not ICRS (the only frame here)",
                    position=position_of(node),
                )
            if not all(_is_number(w) for w in rest):
                raise UsageFault(
                    f"REGION: {shape} takes numbers only, got {args[0].name!r}", position=position_of(node)
                )
            function, count = STCS_SHAPES[shape]
            if (count is not None and len(rest) != count) or (count is None and (len(rest) < 6 or len(rest) % 2)):
                want = f"{count} numbers" if count is not None else "at least three ra dec pairs"
                raise UsageFault(f"REGION: {shape} takes {want}, got {len(rest)}", position=position_of(node))
            node.replace(
                exp.Anonymous(
                    this=function, expressions=[exp.Literal.string("ICRS")] + [exp.Literal.number(w) for w in rest]
                )
            )


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _unit(text: str, node: exp.Expression):
    """An astropy unit from a VOUnit string (VOUnits 1.0), or the generic astropy syntax."""
    import astropy.units as u

    for fmt in ("vounit", None):
        try:
            return u.Unit(text, format=fmt)
        except ValueError:
            continue
    raise UsageFault(f"IN_UNIT: {text!r} is not a unit", position=position_of(node))


def _in_unit(tree: exp.Expression, output: list[OutputColumn]) -> None:
    """``IN_UNIT(value, 'unit')`` (ADQL 2.1 §2.4.2.1, features-adql-unit): the value of a
    column with a declared unit, converted to ``unit`` (VOUnits, converted with astropy), becomes
    ``value * factor``, so every engine evaluates it; the result column carries the new unit.
    Raises UsageFault for a value without a declared unit or units that do not convert."""
    import astropy.units as u

    selected = (
        {id(e.this if isinstance(e, exp.Alias) else e): i for i, e in enumerate(tree.expressions)}
        if isinstance(tree, exp.Select)
        else {}
    )
    for node in list(tree.find_all(exp.Anonymous)):
        if node.name.upper() != "IN_UNIT":
            continue
        args = node.expressions
        if len(args) != 2 or not (isinstance(args[1], exp.Literal) and args[1].is_string):
            raise UsageFault(
                "IN_UNIT takes a value and a unit string: IN_UNIT(col, 'arcsec')", position=position_of(node)
            )
        col = args[0].meta.get("gw_column") if isinstance(args[0], exp.Column) else None
        if col is None or not col.unit:
            raise UsageFault(
                "IN_UNIT converts a column with a declared unit (see TAP_SCHEMA.columns)", position=position_of(node)
            )
        target = args[1].name
        try:
            factor = _unit(col.unit, node).to(_unit(target, node))
        except u.UnitConversionError:
            raise UsageFault(
                f"IN_UNIT cannot convert {col.name} from {col.unit} to {target}", position=position_of(node)
            )
        if id(node) in selected:
            output[selected[id(node)]].unit = target
        node.replace(exp.Paren(this=exp.Mul(this=args[0].copy(), expression=exp.Literal.number(repr(float(factor))))))


def _in_user_terms(desc: str, highlight: str | None, tokens: list, line: int | None, col: int | None) -> str:
    """A sqlglot parser message about a function's arguments, said of the function as the
    user wrote it ("SQRT takes at most 1 argument, got 2"), not of sqlglot's classes."""
    missing = re.match(r"Required keyword: '\w+' missing for <class '[\w.]+\.(\w+)'>", desc)
    too_many = re.match(r"The number of provided arguments \((\d+)\) is greater than .* arguments \((\d+)\)", desc)
    if not (missing or too_many):
        return desc
    at = next((i for i, t in enumerate(tokens) if t.line == line and t.col == col), None)
    function = None
    if at is not None and tokens[at].token_type == TokenType.R_PAREN:
        depth = 0
        for j in range(at, -1, -1):
            depth += {TokenType.R_PAREN: 1, TokenType.L_PAREN: -1}.get(tokens[j].token_type, 0)
            if depth == 0:
                function = tokens[j - 1].text.upper() if j > 0 else None
                break
    if too_many:
        most = too_many[2]
        return (
            f"{function or 'a function'} takes at most {most} argument{'' if most == '1' else 's'}, got {too_many[1]}"
        )
    if function:
        return f"{function} is missing an argument"
    return f"{(highlight or (missing[1] if missing else '')).upper()} is incomplete"


def _token_error(e: TokenError) -> str:
    """sqlglot's tokenizer message in the user's terms (no parser internals)."""
    msg = str(e)
    if "Missing" in msg and "'" in msg:
        return "a quoted string or delimited identifier is not closed"
    if "Error tokenizing" in msg:
        return "unreadable text " + msg.split("Error tokenizing", 1)[1].strip()[:80]
    return msg.splitlines()[0][:200]


SET_OPS = (exp.Union, exp.Except, exp.Intersect)


def _set_chain(tree: exp.Expression) -> list[exp.Expression]:
    """The set-operation nodes of a query's top level (ADQL 2.1 §2.2.4: UNION, EXCEPT and
    INTERSECT combine whole SELECTs)."""
    out: list[exp.Expression] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, SET_OPS):
            out.append(node)
            todo += [node.this, node.expression]
    return out


def _set_leaves(tree: exp.Expression) -> list[exp.Expression]:
    """The SELECTs a top-level set operation combines, left to right."""
    if isinstance(tree, SET_OPS):
        return _set_leaves(tree.this) + _set_leaves(tree.expression)
    return [tree.this if isinstance(tree, exp.Subquery) and isinstance(tree.this, exp.Select) else tree]


def check_allowed(tree: exp.Expression, udfs: frozenset[str] = frozenset()) -> None:
    """Raise UsageFault for any construct outside ADQL 2.1 as this service declares it;
    ``udfs``: the upper-case names of the declared user-defined functions."""
    top_sets = {id(n) for n in _set_chain(tree)}
    for node in tree.walk():
        if id(node) in top_sets or isinstance(node, (exp.With, exp.CTE)):
            continue
        if isinstance(node, exp.Anonymous):
            if node.name.upper() not in GEOMETRY_FUNCTIONS | {"IN_UNIT"} and node.name.upper() not in udfs:
                raise UsageFault(f"unknown ADQL function {node.name.upper()}()", position=position_of(node))
        elif (
            isinstance(node, exp.DataTypeParam)
            and isinstance(node.parent, exp.DataType)
            and node.parent.this in (exp.DataType.Type.CHAR, exp.DataType.Type.VARCHAR)
        ):
            if not (isinstance(node.this, exp.Literal) and node.this.is_int and int(node.this.name) > 0):
                raise UsageFault(
                    "CHAR(n) and VARCHAR(n) take a positive whole length", position=position_of(node.parent)
                )
            continue
        elif isinstance(node, exp.DataType):
            if node.this not in CAST_TYPES:
                spelled = CAST_NAMES.get(node.this) or node.sql(dialect=ADQL)
                raise UsageFault(
                    f"CAST to {spelled} is not supported; ADQL CAST here takes INTEGER, SMALLINT, BIGINT, REAL, "
                    "DOUBLE PRECISION, CHAR(n) or VARCHAR(n)",
                    position=position_of(node.parent),
                )
        elif not isinstance(node, ALLOWED):
            name = NAMES.get(type(node)) or node.key.upper()
            raise UsageFault(f"{name} is not supported in ADQL queries here", position=position_of(node))
        if isinstance(node, exp.Rand) and node.this is not None:
            raise UsageFault("RAND(seed) with a seed is not supported", position=position_of(node))


@dataclass
class _Source:
    alias: str
    alias_quoted: bool
    columns: list[Column]
    table: Table | None = None

    def find(self, ident: exp.Identifier) -> Column | None:
        name = ident.name
        if ident.quoted:
            for c in self.columns:
                if c.name == name:
                    return c
        low = name.lower()
        for c in self.columns:
            if not c.delimited and c.name.lower() == low:
                return c
        return None


class _Analyzer:
    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.tables: list[Table] = []
        self.archives: set[str] = set()
        self.ctes: dict[str, list[Column]] = {}  # WITH names (lower case) -> their columns

    # -- tables -------------------------------------------------------------------------
    def resolve_table(self, node: exp.Table) -> _Source:
        if node.args.get("catalog"):
            raise UsageFault(
                f"catalog-qualified table names are not supported: {node.sql(dialect=ADQL)}", position=position_of(node)
            )
        schema = node.db or None
        name = node.name
        if schema is None and name.lower() in self.ctes:  # a WITH query's name (ADQL 2.1 §2.2.5)
            node.meta["gw_cte"] = True
            alias = node.args.get("alias")
            if alias is not None and alias.this is not None:
                return _Source(alias.name, alias.this.quoted, self.ctes[name.lower()])
            return _Source(name, False, self.ctes[name.lower()])
        found = self.catalogue.lookup(schema, name)
        if found is None:
            wanted = f"{schema}.{name}" if schema else name
            names = self.catalogue.qualified_names()
            close = difflib.get_close_matches(wanted.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
            if not close and not schema:
                bare = {n.split(".", 1)[-1].lower(): n for n in names}
                close = [bare[m] for m in difflib.get_close_matches(name.lower(), list(bare), n=1, cutoff=0.6)]
            hint = ""
            if close:
                orig = next(n for n in names if n.lower() == close[0].lower())
                hint = f"; did you mean {orig}?"
            raise UsageFault(f"table {wanted} does not exist{hint}", position=position_of(node))
        archive, table = found
        self.archives.add(archive)
        if table not in self.tables:
            self.tables.append(table)
        node.meta["gw_table"] = table
        node.meta["gw_archive"] = archive
        alias = node.args.get("alias")
        if alias is not None and alias.this is not None:
            return _Source(alias.name, alias.this.quoted, table.columns, table)
        return _Source(table.name, False, table.columns, table)

    # -- scopes ---------------------------------------------------------------------------
    def analyze_set(self, node: exp.Expression) -> list[OutputColumn]:
        """A top-level UNION [ALL], EXCEPT or INTERSECT (ADQL 2.1 §2.2.4): every SELECT is
        analysed on its own; the result has the first SELECT's column names, with declared
        metadata where every SELECT takes that column from the same declared column.  An
        ORDER BY after the last SELECT sorts the combined rows by output names or positions."""
        if not isinstance(node, SET_OPS):
            sel = node.this if isinstance(node, exp.Subquery) else node
            assert isinstance(sel, exp.Select)
            return self.analyze_select(sel, [])
        left, right = self.analyze_set(node.this), self.analyze_set(node.expression)
        name = NAMES[type(node)]
        if len(left) != len(right):
            raise UsageFault(
                f"the SELECTs combined by {name} give {len(left)} and {len(right)} columns; they must "
                "give the same number",
                position=position_of(node),
            )

        def same(x, y) -> bool:  # one declared column on both sides, whatever its output name
            return x is not None and y is not None and x.renamed("") == y.renamed("")

        out = [
            OutputColumn(
                a.name, a.column if same(a.column, b.column) else None, a.xtype if a.xtype == b.xtype else None
            )
            for a, b in zip(left, right)
        ]
        order = node.args.get("order")
        for o in order.expressions if order is not None else []:
            key = o.this
            if isinstance(key, exp.Literal) and key.is_int and 1 <= int(key.name) <= len(out):
                continue
            if isinstance(key, exp.Column) and not key.table and key.name.lower() in [c.name.lower() for c in out]:
                continue
            raise UsageFault(
                f"ORDER BY after {name} sorts by the result's column names "
                f"({', '.join(c.name for c in out)}) or positions",
                position=position_of(o),
            )
        return out

    def analyze_with(self, with_: exp.With, outer: list[_Source]) -> None:
        """WITH name AS (SELECT ...), ... (ADQL 2.1 §2.2.5, common table expressions): each
        named query is analysed in order and can be read by the later ones and the main query."""
        if with_.args.get("recursive"):
            raise UsageFault("WITH RECURSIVE is not part of ADQL 2.1", position=position_of(with_))
        for cte in with_.expressions:
            name = cte.alias
            if not name:
                raise UsageFault("a WITH query needs a name (WITH name AS (SELECT ...))", position=position_of(cte))
            if name.lower() in self.ctes:
                raise UsageFault(f"WITH names {name} twice", position=position_of(cte))
            if not isinstance(cte.this, exp.Select):
                raise UsageFault("a WITH query must be a SELECT", position=position_of(cte))
            out = self.analyze_select(cte.this, outer)
            self.ctes[name.lower()] = [
                (o.column.renamed(o.name) if o.column else Column(o.name, "double")) for o in out
            ]

    def analyze_select(self, sel: exp.Select, outer: list[_Source]) -> list[OutputColumn]:
        sources: list[_Source] = []
        if sel.args.get("with_") is not None:
            self.analyze_with(sel.args["with_"], outer)
        from_ = sel.args.get("from_") or sel.args.get("from")
        if from_ is None:
            raise UsageFault("ADQL queries need a FROM clause", position=position_of(sel))
        items = [from_.this] + [j.this for j in sel.args.get("joins") or []]
        for item in items:
            if isinstance(item, exp.Table):
                sources.append(self.resolve_table(item))
            elif isinstance(item, exp.Subquery):
                inner = item.this
                if not isinstance(inner, exp.Select):
                    raise UsageFault("only SELECT subqueries are supported", position=position_of(item))
                out = self.analyze_select(inner, outer)
                if not item.alias:
                    raise UsageFault("a subquery in FROM needs an alias", position=position_of(item))
                cols = [(o.column.renamed(o.name) if o.column else Column(o.name, "double")) for o in out]
                sources.append(_Source(item.alias, False, cols))
            else:
                raise UsageFault(f"unsupported FROM item {item.sql(dialect=ADQL)}", position=position_of(item))
        seen = {}
        for s in sources:
            key = s.alias if s.alias_quoted else s.alias.lower()
            if key in seen:
                raise UsageFault(f"table name or alias {s.alias} is used twice in FROM; give each an alias")
            seen[key] = s
        self.expand_stars(sel, sources)
        scope = sources + outer
        select_aliases = {e.alias.lower() for e in sel.expressions if isinstance(e, exp.Alias)}
        # nested subqueries (WHERE ... IN (SELECT ...), EXISTS, scalar subqueries)
        for node in list(self._scope_nodes(sel)):
            if isinstance(node, exp.Select) and node is not sel:
                self.analyze_select(node, scope)
        using = {i.name.lower() for j in sel.args.get("joins") or [] for i in j.args.get("using") or []}
        for i, j in enumerate(sel.args.get("joins") or []):
            if j.args.get("method") == "NATURAL":  # ADQL 2.1 §2.2.1: the common column names merge
                before = {c.name.lower() for s in sources[: i + 1] for c in s.columns}
                using |= before & {c.name.lower() for c in sources[i + 1].columns}
        # a plain ORDER BY name that is an output column's sorts by it, also when a table column
        # has that name (SQL-92 §13.1: sort keys are columns of the result); left unbound here
        sort_aliases = {
            e.alias.lower()
            for e in sel.expressions
            if isinstance(e, exp.Alias)
            and not (isinstance(e.this, exp.Column) and e.this.name.lower() == e.alias.lower())
        }
        for node in list(self._scope_nodes(sel)):
            if (
                isinstance(node, exp.Column)
                and not node.table
                and node.name.lower() in sort_aliases
                and isinstance(node.parent, exp.Ordered)
                and isinstance(node.parent.parent, exp.Order)
            ):
                continue
            if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
                in_order = node.find_ancestor(exp.Order, exp.Having, exp.Group, exp.Select)
                allow_alias = isinstance(in_order, (exp.Order, exp.Having, exp.Group))
                self.resolve_column(node, sources, outer, select_aliases if allow_alias else set(), using)
        return self.name_outputs(sel)

    def _scope_nodes(self, sel: exp.Select):
        """Nodes of ``sel`` without descending into nested SELECTs or FROM subqueries."""
        stack = [v for k, v in sel.args.items() if k not in ("from", "from_", "joins")]
        stack += [j.args.get("on") for j in sel.args.get("joins") or []]
        while stack:
            n = stack.pop()
            if n is None:
                continue
            if isinstance(n, list):
                stack.extend(n)
                continue
            if not isinstance(n, exp.Expression):
                continue
            if (
                isinstance(n, exp.Subquery)
                and n.find_ancestor(exp.From, exp.Join) is not None
                and n.parent is not None
                and isinstance(n.parent, (exp.From, exp.Join))
            ):
                continue
            yield n
            if isinstance(n, exp.Select):
                continue
            for k, v in n.args.items():
                if isinstance(n, exp.Join) and k == "this":
                    continue
                stack.append(v)

    def expand_stars(self, sel: exp.Select, sources: list[_Source]) -> None:
        new = []
        for e in sel.expressions:
            if isinstance(e, exp.Star):
                targets = sources
            elif isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
                q = e.table
                targets = [
                    s
                    for s in sources
                    if (s.alias == q if e.args["table"].quoted else s.alias.lower() == q.lower())
                    or (s.table is not None and s.table.qualified_name.lower() == f"{e.db}.{q}".lower())
                ]
                if not targets:
                    raise UsageFault(f"{e.sql(dialect=ADQL)}: no table {q} in FROM", position=position_of(e))
            else:
                new.append(e)
                continue
            for s in targets:
                for c in s.columns:
                    new.append(
                        exp.Column(
                            this=exp.Identifier(this=c.name, quoted=True),
                            table=exp.Identifier(this=s.alias, quoted=True),
                        )
                    )
        sel.set("expressions", new)

    def resolve_column(
        self,
        node: exp.Column,
        local: list[_Source],
        outer: list[_Source],
        select_aliases: set[str],
        using: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """Bind ``node`` to its table's column.  An unqualified name shared by several tables is
        ambiguous unless it is a ``JOIN ... USING`` column (ADQL 2.1 §2.2.1: one merged column)."""
        ident = node.this
        qual = node.args.get("table")
        if qual is not None:
            scope = local + outer
            cands = [
                s for s in scope if (s.alias == qual.name if qual.quoted else s.alias.lower() == qual.name.lower())
            ]
            if node.db:
                cands = [
                    s
                    for s in scope
                    if s.table is not None and s.table.qualified_name.lower() == f"{node.db}.{qual.name}".lower()
                ] or cands
            if not cands:
                raise UsageFault(
                    f"{node.sql(dialect=ADQL)}: no table or alias {qual.name} in FROM", position=position_of(node)
                )
            src = cands[0]
            col = src.find(ident)
            if col is None:
                self._unknown_column(node, [src])
        else:
            for level in (local, outer):
                hits = [(s, c) for s, c in ((s, s.find(ident)) for s in level) if c is not None]
                if len(hits) > 1 and not (level is local and ident.name.lower() in using):
                    raise UsageFault(
                        f"column {ident.name} is ambiguous (in {', '.join(h[0].alias for h in hits)});"
                        " qualify it with a table name or alias",
                        position=position_of(node),
                    )
                if hits:
                    break
            if not hits:
                if ident.name.lower() in select_aliases:
                    return
                self._unknown_column(node, local + outer)
            src, col = hits[0]
        assert col is not None
        node.set("this", exp.Identifier(this=col.name, quoted=True))
        node.set("table", exp.Identifier(this=src.alias, quoted=True))
        node.set("db", None)
        node.meta["gw_column"] = col

    def _unknown_column(self, node: exp.Column, sources: list[_Source]):
        names = [c.name for s in sources for c in s.columns]
        close = difflib.get_close_matches(node.name.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
        hint = f"; did you mean {next(n for n in names if n.lower() == close[0])}?" if close else ""
        where = ", ".join(s.table.qualified_name if s.table else s.alias for s in sources)
        raise UsageFault(f"column {node.name} does not exist in {where}{hint}", position=position_of(node))

    def name_outputs(self, sel: exp.Select) -> list[OutputColumn]:
        out: list[OutputColumn] = []
        used: set[str] = set()
        new = []
        for _i, e in enumerate(sel.expressions):
            inner = e.this if isinstance(e, exp.Alias) else e
            col = inner.meta.get("gw_column") if isinstance(inner, exp.Column) else None
            if isinstance(e, exp.Alias):
                name = e.alias
            elif col is not None:
                name = col.name
            elif isinstance(inner, exp.Anonymous):
                name = inner.name.lower()
            elif isinstance(inner, exp.Func):
                name = inner.sql_name().lower()
            else:
                name = "expr"
            base, k = name, 2
            while name.lower() in used:
                name, k = f"{base}_{k}", k + 1
            used.add(name.lower())
            if col is None and isinstance(inner, exp.Cast):
                col = _cast_column(inner, name)
            xtype = GEOMETRY_VALUES.get(inner.name.upper()) if isinstance(inner, exp.Anonymous) else None
            unit = "deg**2" if isinstance(inner, exp.Anonymous) and inner.name.upper() == "AREA" else None
            out.append(
                OutputColumn(name, col.renamed(name) if col is not None and col.name != name else col, xtype, unit)
            )
            new.append(exp.Alias(this=inner, alias=exp.Identifier(this=name, quoted=True)))
        sel.set("expressions", new)
        return out


def _cast_column(cast: exp.Cast, name: str) -> Column | None:
    """The FIELD of ``CAST(x AS CHAR(n))`` (``char``, arraysize ``n``) or ``VARCHAR(n)``
    (arraysize ``n*``), VOTable 1.4 §2.2; other casts are typed by their values."""
    to = cast.args.get("to")
    if not isinstance(to, exp.DataType) or to.this not in (exp.DataType.Type.CHAR, exp.DataType.Type.VARCHAR):
        return None
    size = next((p.this.name for p in to.expressions if isinstance(p, exp.DataTypeParam)), None)
    if size is None:
        return None
    return Column(name, "char", arraysize=size if to.this == exp.DataType.Type.CHAR else f"{size}*")


def analyze(text: str, catalogue: Catalogue) -> AdqlQuery:
    """Parse and validate ``text`` against ``catalogue``.

    Returns an :class:`AdqlQuery`; raises :class:`UsageFault` (with line/column where known)
    for syntax errors, constructs outside ADQL 2.1 or this service's declared features, and
    unknown tables/columns (ADQL 2.1 §2; TAP 1.1 §2.7.4)."""
    declared: dict = getattr(catalogue, "udfs", dict)()
    tree = parse(text, frozenset(declared))
    an = _Analyzer(catalogue)
    output = an.analyze_set(tree) if isinstance(tree, SET_OPS) else an.analyze_select(tree, [])
    top = tree.args.get("limit")
    if top is not None and not (isinstance(top.expression, exp.Literal) and top.expression.is_int):
        raise UsageFault("TOP needs a non-negative integer", position=position_of(top))
    off = tree.args.get("offset")
    if off is not None and not (isinstance(off.expression, exp.Literal) and off.expression.is_int):
        raise UsageFault("OFFSET needs a non-negative integer", position=position_of(off))
    _in_unit(tree, output)
    used = {n.name.upper() for n in tree.find_all(exp.Anonymous) if n.name.upper() in declared}
    return AdqlQuery(
        text=text,
        ast=tree,
        output=output,
        tables=an.tables,
        archives=an.archives,
        udfs=used,
        with_queries=bool(an.ctes),
    )
