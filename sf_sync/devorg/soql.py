"""A SOQL subset, parsed with a lark grammar and compiled to SQLite SQL for the dev org's store.

The store keeps one table per object, named exactly like the object (``"Account"``), with one
column per stored field under its canonical name. Encodings: text-like fields, ids and
references as TEXT; booleans as INTEGER 0/1; ``int`` as INTEGER; double/currency/percent as
REAL; dates as TEXT ``YYYY-MM-DD``; datetimes as TEXT ``YYYY-MM-DDTHH:MM:SS.sss+0000`` in UTC.
Address fields have no column: they are rebuilt from their components.

Every value written in the query becomes a bound parameter; every identifier in the SQL comes
from the metadata (canonical names) and is double-quoted, so query text never reaches the SQL.

Supported
---------
* ``SELECT`` a list of fields (any case; records carry the canonical names, in SELECT order),
  address compounds (``BillingAddress``, selectable but neither filterable nor sortable),
  ``COUNT()`` alone, or ``COUNT(field)`` aggregates with optional aliases (``expr0``, ...).
  Fields may be qualified with the queried object's own name (``Account.Name FROM Account``).
* ``FROM`` one object; ``WHERE`` with ``=``, ``!=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``,
  ``LIKE``, ``IN (...)``, ``NOT IN (...)``, ``AND``, ``OR``, ``NOT`` and parentheses. As in
  SOQL, ``AND`` and ``OR`` cannot be mixed at one level without parentheses.
* Literals: quoted strings with SOQL escapes (``\\n \\r \\t \\b \\f \\" \\' \\\\``, and ``\\%``
  ``\\_`` in LIKE patterns only), numbers, ``true``/``false``, ``null``, dates ``2024-01-31``,
  datetimes ``2024-01-31T10:00:00Z`` / ``...00.000+0000`` / ``...00+05:30`` / ``...00-0800``
  (normalised to UTC), and the date literals ``TODAY``, ``YESTERDAY``, ``TOMORROW``,
  ``LAST_N_DAYS:n`` and ``NEXT_N_DAYS:n``.
* ``ORDER BY`` several keys, ``ASC``/``DESC``, ``NULLS FIRST``/``NULLS LAST`` (defaults as in
  Salesforce: ASC puts nulls first, DESC last); ``LIMIT n``; ``OFFSET n`` (at most 2,000).

Semantics kept from Salesforce
------------------------------
* Text comparisons (``=``, ``!=``, ``<``..., ``IN``, ``LIKE``) and text ordering ignore case.
* Two-valued null logic: ``Field != 'x'`` and ``Field NOT IN ('x')`` include records where the
  field is null; ``= null`` / ``!= null`` test for null; ``IN ('x', null)`` matches nulls.
  Any other comparison with a null field is false, and ``NOT`` inverts that (so
  ``NOT Amount__c > 5`` includes nulls).
* Id literals are checked like Salesforce does ("invalid ID field") and may be 15 or 18
  characters: a 15-character Id is extended with its checksum, and an 18-character Id has its
  case restored from the checksum, so ``Id = '<18 chars in any case>'`` matches.
* Date literals use the org time zone, which is UTC here. Against a datetime field ``= TODAY``
  means [today 00:00Z, tomorrow 00:00Z); ``> TODAY`` means >= tomorrow 00:00Z; ``< TODAY``
  means < today 00:00Z; ``<=``/``>=`` include the range; ``!=`` is outside it (or null).
  ``LAST_N_DAYS:n`` is [today - n, tomorrow) and ``NEXT_N_DAYS:n`` is [tomorrow, tomorrow + n).
  Against a date field the same ranges apply in days.
* ``query`` (``include_deleted=False``) hides deleted records; ``queryAll`` does not. A filter
  on ``IsDeleted`` works in both.
* totalSize (``count_sql``) counts what the query returns: LIMIT and OFFSET apply, as they do
  to ``SELECT COUNT() ... LIMIT n`` in Salesforce.
* Errors carry Salesforce's codes and message shapes: MALFORMED_QUERY (syntax, with row and
  column), INVALID_TYPE (unknown object), INVALID_FIELD (unknown field, wrongly typed value,
  filtering or sorting on an address or long text area), INVALID_QUERY_FILTER_OPERATOR
  (malformed Id literal, operator not valid for the field), NUMBER_OUTSIDE_VALID_RANGE
  (OFFSET above 2,000).

Differences from Salesforce
---------------------------
* Refused with a clear message rather than supported: relationship paths (``Account.Name`` from
  Contact), subqueries and semi-joins, ``GROUP BY``/``HAVING``, aggregate functions other than
  ``COUNT``, ``FIELDS()``, ``TYPEOF``, ``WITH``, ``FOR VIEW/UPDATE``, ``USING SCOPE``,
  ``INCLUDES``/``EXCLUDES``, object aliases, and date literals other than the five above
  (``LAST_WEEK``, ``THIS_MONTH``, ...). Comparing a field with ``null`` using anything but
  ``=``/``!=``, ``LIKE null``, date literals (``TODAY``...) inside ``IN (...)``, and
  ``ORDER BY`` in ``COUNT()``/``COUNT(field)`` queries are refused too.
* ``COUNT(field)`` queries return one AggregateResult record (``expr0``, ... or the alias);
  ``LIMIT``/``OFFSET`` apply to that one row, as SQL does.
* Integer literals beyond SQLite's 64-bit range are compared as floats, and a LIMIT beyond it
  means no limit; a query nested too deeply for the parser is refused as MALFORMED_QUERY.
* Case-insensitivity uses SQLite's NOCASE collation and LIKE, which fold ASCII letters only
  (Salesforce folds all of Unicode). The connection must not enable
  ``PRAGMA case_sensitive_like``.
* ``\\uXXXX`` escapes are not accepted in string literals.
* Fractional seconds beyond milliseconds in datetime literals are truncated.
* An empty string compared with an Id or reference field (``ParentId = ''``) means null.
* Without ORDER BY, records come in Id order; every ORDER BY ends with ``Id`` as a tie-break,
  so pages are deterministic (Salesforce leaves ties in an unspecified order).
* Error texts follow Salesforce's shape; a few messages for refusals are this stand-in's own,
  and the type named in "must be of type ..." messages is an approximation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)

from sf_sync.devorg.metadata import FieldSpec, ObjectSpec, Schema
from sf_sync.devorg.values import TEXT_TYPES, format_datetime
from sf_sync.salesforce_ids import normalise as normalise_id

MAX_OFFSET = 2000

ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
LONG_TEXTAREA = 255  # textarea fields longer than this are long text areas: not filterable

# the type named in "must be of type X" messages
_TYPE_WORD = {"int": "double", "double": "double", "currency": "currency", "percent": "percent",
              "date": "date", "datetime": "dateTime", "boolean": "boolean"}  # fmt: skip


class SoqlError(Exception):
    """A query Salesforce would refuse: ``error_code`` and ``message`` as its REST API reports."""

    error_code: str
    message: str

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


class _Fail(Exception):
    """Raised inside the compiler; turned into a SoqlError with the query line and a caret."""

    def __init__(self, code: str, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.code, self.message, self.line, self.column = code, message, line, column


def _fail(code: str, message: str, at: Token | None = None) -> _Fail:
    if at is None:
        return _Fail(code, message)
    return _Fail(code, message, at.line, at.column)


# ---------------------------------------------------------------------------------------------
# Grammar

_GRAMMAR = r"""
start: _SELECT select_list _FROM NAME where? order? limit? offset?

select_list: select_item ("," select_item)*
?select_item: field_ref
            | func_call
func_call: NAME "(" field_ref? ")" NAME?
field_ref: NAME ("." NAME)*

where: _WHERE cond
?cond: unary
     | and_chain
     | or_chain
and_chain: unary (_AND unary)+
or_chain: unary (_OR unary)+
?unary: _NOT unary                             -> not_cond
      | "(" cond ")"
      | field_ref OP value                     -> compare
      | field_ref _LIKE value                  -> like
      | field_ref _IN "(" value ("," value)* ")"      -> in_list
      | field_ref _NOT _IN "(" value ("," value)* ")" -> not_in_list
?value: STRING | NUMBER | DATE | DATETIME | TRUE | FALSE | NULL | DATE_WORD

order: _ORDER _BY order_item ("," order_item)*
order_item: field_ref direction? nulls?
direction: ASC | DESC
nulls: _NULLS (FIRST | LAST)
limit: _LIMIT NUMBER
offset: _OFFSET NUMBER

_SELECT.2: /select\b/i
_FROM.2: /from\b/i
_WHERE.2: /where\b/i
_AND.2: /and\b/i
_OR.2: /or\b/i
_NOT.2: /not\b/i
_LIKE.2: /like\b/i
_IN.2: /in\b/i
_ORDER.2: /order\b/i
_BY.2: /by\b/i
_NULLS.2: /nulls\b/i
_LIMIT.2: /limit\b/i
_OFFSET.2: /offset\b/i
ASC.2: /asc\b/i
DESC.2: /desc\b/i
FIRST.2: /first\b/i
LAST.2: /last\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
NULL.2: /null\b/i

OP: "!=" | "<>" | "<=" | ">=" | "=" | "<" | ">"
STRING: /'(?:[^'\\]|\\.)*'/s
DATETIME.4: /\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})/
DATE.3: /\d{4}-\d{2}-\d{2}/
NUMBER: /[+-]?(\d+(\.\d*)?|\.\d+)/
NAME: /[A-Za-z][A-Za-z0-9_]*/
DATE_WORD: /[A-Za-z_][A-Za-z0-9_]*(:[+-]?\d+)?/

%import common.WS
%ignore WS
"""

# Salesforce's reserved words (they cannot be field or object names), plus the clause words of
# this grammar; unsupported clauses get their own message.
_RESERVED = frozenset({
    "and", "asc", "desc", "excludes", "first", "from", "group", "having", "in", "includes",
    "last", "like", "limit", "not", "null", "nulls", "or", "select", "where", "with", "order",
    "by", "offset", "true", "false", "typeof", "for", "using", "rollup", "cube",
})  # fmt: skip

_UNSUPPORTED_WORDS = {
    "group": "GROUP BY is not supported by the dev org's SOQL subset",
    "having": "HAVING is not supported by the dev org's SOQL subset",
    "with": "WITH clauses are not supported by the dev org's SOQL subset",
    "for": "FOR VIEW / FOR REFERENCE / FOR UPDATE are not supported by the dev org's SOQL subset",
    "using": "USING SCOPE is not supported by the dev org's SOQL subset",
    "typeof": "TYPEOF is not supported by the dev org's SOQL subset",
    "includes": "INCLUDES is not supported by the dev org's SOQL subset "
    "(there are no multi-select picklists)",
    "excludes": "EXCLUDES is not supported by the dev org's SOQL subset "
    "(there are no multi-select picklists)",
    "select": "subqueries and semi-joins are not supported by the dev org's SOQL subset",
}

# Real SOQL date literals outside the subset, refused by name rather than as a syntax error.
_OTHER_DATE_LITERALS = frozenset({
    "last_week", "this_week", "next_week", "last_month", "this_month", "next_month",
    "last_90_days", "next_90_days", "this_quarter", "last_quarter", "next_quarter",
    "this_year", "last_year", "next_year", "this_fiscal_quarter", "last_fiscal_quarter",
    "next_fiscal_quarter", "this_fiscal_year", "last_fiscal_year", "next_fiscal_year",
    "last_n_weeks", "next_n_weeks", "last_n_months", "next_n_months", "last_n_quarters",
    "next_n_quarters", "last_n_years", "next_n_years", "n_days_ago", "n_weeks_ago",
    "n_months_ago", "n_quarters_ago", "n_years_ago", "last_n_fiscal_quarters",
    "next_n_fiscal_quarters", "last_n_fiscal_years", "next_n_fiscal_years",
})  # fmt: skip
_DATE_LITERALS = ("TODAY", "YESTERDAY", "TOMORROW", "LAST_N_DAYS:n", "NEXT_N_DAYS:n")


def _check_word(tok: Token) -> Token:
    low = tok.value.lower()
    if low in _UNSUPPORTED_WORDS:
        raise _fail("MALFORMED_QUERY", _UNSUPPORTED_WORDS[low], tok)
    if low in _RESERVED:
        raise _fail("MALFORMED_QUERY", f"unexpected token: '{tok.value}'", tok)
    return tok


_PARSER = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer="contextual",
    lexer_callbacks={"NAME": _check_word, "DATE_WORD": _check_word},
)


def _parse(text: str) -> Tree:
    try:
        return _PARSER.parse(text)
    except _Fail:
        raise
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            line, column = _end_position(text)
            raise _Fail("MALFORMED_QUERY", "unexpected token: '<EOF>'", line, column) from None
        if tok.value == "(" and re.match(r"\(\s*select\b", text[tok.start_pos :], re.I):
            raise _fail("MALFORMED_QUERY", _UNSUPPORTED_WORDS["select"], tok) from None
        if tok.type in ("NAME", "DATE_WORD"):
            _check_word(tok)
        raise _fail("MALFORMED_QUERY", f"unexpected token: '{tok.value}'", tok) from None
    except UnexpectedCharacters as e:
        rest = text[e.pos_in_stream :]
        if rest.startswith("'"):
            message = "unterminated string literal: missing closing quote '"
        elif rest.startswith('"'):
            message = "unexpected token: '\"' (SOQL strings are enclosed in single quotes)"
        else:
            message = f"unexpected token: '{rest[:1]}'"
        raise _Fail("MALFORMED_QUERY", message, e.line, e.column) from None
    except UnexpectedEOF:
        line, column = _end_position(text)
        raise _Fail("MALFORMED_QUERY", "unexpected token: '<EOF>'", line, column) from None
    except UnexpectedInput as e:  # pragma: no cover - the cases above are exhaustive
        raise _Fail("MALFORMED_QUERY", str(e)) from None


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


# ---------------------------------------------------------------------------------------------
# Literals


@dataclass(frozen=True)
class _Lit:
    kind: str  # string number date datetime boolean null relative
    value: Any
    tok: Token


def _literal(tok: Token) -> _Lit:
    t, v = tok.type, tok.value
    if t == "STRING":
        return _Lit("string", v[1:-1], tok)
    if t == "NUMBER":
        number: int | float = float(v) if "." in v else int(v)
        if isinstance(number, int) and not -(2**63) <= number < 2**63:
            number = float(number)  # beyond SQLite's integers; compares the same
        return _Lit("number", number, tok)
    if t == "DATE":
        try:
            return _Lit("date", date.fromisoformat(v).isoformat(), tok)
        except ValueError:
            raise _fail("MALFORMED_QUERY", f"invalid date: {v}", tok) from None
    if t == "DATETIME":
        return _Lit("datetime", _utc_datetime(tok), tok)
    if t in ("TRUE", "FALSE"):
        return _Lit("boolean", t == "TRUE", tok)
    if t == "NULL":
        return _Lit("null", None, tok)
    return _Lit("relative", _relative(tok), tok)


_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):?(\d{2}))"
)


def _utc_datetime(tok: Token) -> str:
    m = _DATETIME_RE.fullmatch(tok.value)
    assert m is not None  # the terminal has the same shape
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    millis = int((m.group(7) or "0")[:3].ljust(3, "0"))
    try:
        tz = UTC
        if m.group(8):
            oh, om = int(m.group(9)), int(m.group(10))
            if oh > 23 or om > 59:
                raise ValueError
            delta = timedelta(hours=oh, minutes=om)
            tz = timezone(delta if m.group(8) == "+" else -delta)
        value = datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=tz)
        return format_datetime(value)
    except (ValueError, OverflowError):
        raise _fail("MALFORMED_QUERY", f"invalid datetime: {tok.value}", tok) from None


def _relative(tok: Token) -> tuple[str, int | None]:
    name, _, n = tok.value.partition(":")
    upper = name.upper()
    if upper in ("TODAY", "YESTERDAY", "TOMORROW") and not n:
        return upper, None
    if upper in ("LAST_N_DAYS", "NEXT_N_DAYS") and n:
        if not n.isdigit():
            raise _fail("MALFORMED_QUERY", f"invalid date literal: {tok.value}", tok)
        return upper, int(n)
    if upper in ("LAST_N_DAYS", "NEXT_N_DAYS") or (n and upper in ("TODAY", "YESTERDAY")):
        raise _fail("MALFORMED_QUERY", f"invalid date literal: {tok.value}", tok)
    if name.lower() in _OTHER_DATE_LITERALS:
        raise _fail(
            "MALFORMED_QUERY",
            f"date literal {name.upper()} is not supported by the dev org's SOQL subset "
            f"(supported: {', '.join(_DATE_LITERALS)})",
            tok,
        )
    raise _fail("MALFORMED_QUERY", f"unexpected token: '{tok.value}'", tok)


def _decode_string(lit: _Lit, *, like: bool) -> str:
    """The string's value; for LIKE, a SQLite pattern for ``ESCAPE '\\'``."""
    raw: str = lit.value
    out: list[str] = []
    simple = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = raw[i + 1]
        if esc.lower() in simple:
            out.append(simple[esc.lower()])
        elif esc in "'\"":
            out.append(esc)
        elif esc == "\\":
            out.append("\\\\" if like else "\\")
        elif esc in "%_" and like:
            out.append("\\" + esc)
        else:
            raise _fail(
                "MALFORMED_QUERY",
                f"Invalid string literal '{raw}'. Illegal character sequence '\\{esc}' in "
                "quoted string.",
                lit.tok,
            )
        i += 2
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Compiled query


@dataclass(frozen=True)
class _Out:
    """One key of the output record: a field, an address from 8 columns, or an aggregate."""

    key: str
    kind: str  # field | address | aggregate
    start: int
    types: tuple[str, ...]
    parts: tuple[str, ...] = ()  # address JSON keys, in column order


@dataclass(frozen=True)
class CompiledQuery:
    object: ObjectSpec
    sql: str
    params: tuple
    is_count: bool
    count_sql: str
    count_params: tuple
    is_aggregate: bool = False
    outputs: tuple[_Out, ...] = field(default=(), repr=False)
    id_index: int | None = field(default=None, repr=False)

    def to_record(self, row: Sequence[Any], api_version: str) -> dict[str, Any]:
        """One result row in Salesforce REST JSON shape."""
        if self.is_count:
            raise ValueError("SELECT COUNT() returns totalSize only, no records")
        if self.is_aggregate:
            record: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        else:
            version = api_version[1:] if api_version[:1] in "vV" else api_version
            record_id = row[self.id_index] if self.id_index is not None else None
            record = {
                "attributes": {
                    "type": self.object.name,
                    "url": f"/services/data/v{version}/sobjects/{self.object.name}/{record_id}",
                }
            }
        for out in self.outputs:
            if out.kind == "address":
                values = [_to_json(row[out.start + i], t) for i, t in enumerate(out.types)]
                if all(v is None for v in values):
                    record[out.key] = None
                else:
                    record[out.key] = dict(sorted(zip(out.parts, values, strict=True)))
            else:
                record[out.key] = _to_json(row[out.start], out.types[0])
        return record

    def columns(self) -> list[str]:
        """The selected names in canonical case (Bulk CSV headers); none for COUNT().

        An address appears under its compound name; Salesforce's Bulk API refuses compound
        fields ("Selecting compound data not supported in Bulk Query"), so the Bulk endpoint
        should check for them rather than write a header for one."""
        return [out.key for out in self.outputs]


def _to_json(value: Any, typ: str) -> Any:
    if value is None:
        return None
    if typ == "boolean":
        return bool(value)
    if typ == "int" or typ == "count":
        return int(value)
    if typ in ("double", "currency", "percent"):
        return float(value)
    return value


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------------------
# Compiler


def compile_query(
    text: str,
    schema: Schema,
    *,
    include_deleted: bool = False,
    now: datetime | None = None,
) -> CompiledQuery:
    """Compile one SOQL query against the schema; raises SoqlError as Salesforce would."""
    try:
        tree = _parse(text)
        return _Compiler(schema, now).compile(tree, include_deleted)
    except _Fail as e:
        raise SoqlError(e.code, _message(text, e)) from None
    except RecursionError:
        raise SoqlError("MALFORMED_QUERY", "the query is nested too deeply") from None


def _message(text: str, e: _Fail) -> str:
    if e.line is None or e.column is None:
        return e.message
    lines = text.split("\n")
    line = lines[e.line - 1] if 0 < e.line <= len(lines) else ""
    return f"{line}\n{' ' * (e.column - 1)}^\nERROR at Row:{e.line}:Column:{e.column}\n{e.message}"


class _Compiler:
    def __init__(self, schema: Schema, now: datetime | None) -> None:
        self.schema = schema
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        self.today = now.astimezone(UTC).date()
        self.obj: ObjectSpec

    # -- structure ---------------------------------------------------------------------------

    def compile(self, tree: Tree, include_deleted: bool) -> CompiledQuery:
        select_list, obj_tok, *clauses = tree.children
        obj = self.schema.get(obj_tok.value)
        if obj is None:
            raise _fail(
                "INVALID_TYPE",
                f"sObject type '{obj_tok.value}' is not supported. If you are attempting to "
                "use a custom object, be sure to append the '__c' after the entity name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
                obj_tok,
            )
        self.obj = obj
        parts = {c.data: c for c in clauses}

        select = self._select(select_list)
        kind, columns, outputs = select

        where_sql, where_params = "", []
        conditions, params = [], []
        if not include_deleted:
            conditions.append('"IsDeleted" = 0')
        if "where" in parts:
            cond_sql, cond_params = self._cond(parts["where"].children[0])
            conditions.append(cond_sql)
            params.extend(cond_params)
        if conditions:
            where_sql = " WHERE " + " AND ".join(conditions)
            where_params = params

        order_sql = self._order(parts.get("order"), aggregate=kind != "rows")

        limit = self._number(parts["limit"].children[0], "LIMIT") if "limit" in parts else None
        offset = self._number(parts["offset"].children[0], "OFFSET") if "offset" in parts else None
        if offset is not None and offset > MAX_OFFSET:
            raise _Fail(
                "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}"
            )
        page_sql, page_params = "", []
        if limit is not None or offset is not None:
            page_sql = " LIMIT ? OFFSET ?"
            page_params = [-1 if limit is None else limit, offset or 0]

        table = _q(obj.name)
        if kind == "count":
            if page_sql:
                count_sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM {table}{where_sql}{page_sql})"
            else:
                count_sql = f"SELECT COUNT(*) FROM {table}{where_sql}"
            count_params = tuple(where_params + page_params)
            return CompiledQuery(obj, count_sql, count_params, True, count_sql, count_params)

        sql = f"SELECT {', '.join(columns)} FROM {table}{where_sql}{order_sql}{page_sql}"
        params_t = tuple(where_params + page_params)
        if kind == "aggregate":
            count_sql = f"SELECT COUNT(*) FROM ({sql})"
            return CompiledQuery(
                obj, sql, params_t, False, count_sql, params_t, is_aggregate=True,
                outputs=outputs,
            )  # fmt: skip
        if page_sql:
            count_sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM {table}{where_sql}{page_sql})"
        else:
            count_sql = f"SELECT COUNT(*) FROM {table}{where_sql}"
        return CompiledQuery(
            obj, sql, params_t, False, count_sql, params_t,
            outputs=outputs, id_index=len(columns) - 1,
        )  # fmt: skip

    def _number(self, tok: Token, clause: str) -> int:
        if not tok.value.isdigit():
            raise _fail("MALFORMED_QUERY", f"{clause} must be a non-negative integer", tok)
        return min(int(tok.value), 2**63 - 1)  # SQLite's largest integer: no limit at all

    # -- fields ------------------------------------------------------------------------------

    def _field(self, ref: Tree) -> tuple[FieldSpec, Token]:
        names: list[Token] = list(ref.children)
        if len(names) == 2 and names[0].value.lower() == self.obj.name.lower():
            names = names[1:]
        if len(names) > 1:
            path = ".".join(t.value for t in names)
            raise _fail(
                "INVALID_FIELD",
                f"Relationship field paths such as '{path}' are not supported by the dev org's "
                "SOQL subset; query the related object by its Id instead.",
                names[0],
            )
        tok = names[0]
        spec = self.obj.field(tok.value)
        if spec is None:
            raise _fail(
                "INVALID_FIELD",
                f"No such column '{tok.value}' on entity '{self.obj.name}'. If you are "
                "attempting to use a custom field, be sure to append the '__c' after the custom "
                "field name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
                tok,
            )
        return spec, tok

    def _columns_of(self, spec: FieldSpec) -> list[FieldSpec]:
        if spec.type == "address":
            return [self.obj.field(n) for n in self.obj.compounds[spec.name]]  # type: ignore[misc]
        return [spec]

    def _select(self, select_list: Tree) -> tuple[str, list[str], tuple[_Out, ...]]:
        items = select_list.children
        funcs = [i for i in items if i.data == "func_call"]
        plain = [i for i in items if i.data == "field_ref"]
        outputs: list[_Out] = []
        columns: list[str] = []
        if funcs:
            for f in funcs:
                self._check_function(f, alone=len(items) == 1)
            if any(not any(isinstance(c, Tree) for c in f.children) for f in funcs):
                return "count", [], ()
            if plain:
                spec, tok = self._field(plain[0])
                raise _fail(
                    "MALFORMED_QUERY", f"Field must be grouped or aggregated: {spec.name}", tok
                )
            n_unaliased = 0
            seen: set[str] = set()
            for f in funcs:
                name_tok, ref, alias = (*f.children, None)[:3]
                spec, tok = self._field(ref)
                if spec.type == "address":
                    raise _fail(
                        "INVALID_FIELD",
                        f"field '{spec.name}' can not be aggregated in a query call",
                        tok,
                    )
                if alias is None:
                    key = f"expr{n_unaliased}"
                    n_unaliased += 1
                else:
                    key = alias.value
                if key.lower() in seen:
                    raise _fail("MALFORMED_QUERY", f"duplicate alias: {key}", alias or name_tok)
                seen.add(key.lower())
                columns.append(f"COUNT({_q(spec.name)})")
                outputs.append(_Out(key, "aggregate", len(columns) - 1, ("count",)))
            return "aggregate", columns, tuple(outputs)

        seen = set()
        for ref in plain:
            spec, tok = self._field(ref)
            if spec.name in seen:
                raise _fail("MALFORMED_QUERY", f"duplicate field selected: {spec.name}", tok)
            seen.add(spec.name)
            parts = self._columns_of(spec)
            start = len(columns)
            columns.extend(_q(p.name) for p in parts)
            if spec.type == "address":
                prefix = spec.name[: -len("Address")]
                keys = tuple(_json_part(p.name[len(prefix) :]) for p in parts)
                outputs.append(
                    _Out(spec.name, "address", start, tuple(p.type for p in parts), keys)
                )
            else:
                outputs.append(_Out(spec.name, "field", start, (spec.type,)))
        columns.append(_q("Id"))  # hidden: attributes.url needs it
        return "rows", columns, tuple(outputs)

    def _check_function(self, f: Tree, *, alone: bool) -> None:
        name_tok = f.children[0]
        rest = [c for c in f.children[1:] if c is not None]
        if name_tok.value.upper() != "COUNT":
            raise _fail(
                "MALFORMED_QUERY",
                f"{name_tok.value}() is not supported by the dev org's SOQL subset "
                "(only COUNT() and COUNT(field) are)",
                name_tok,
            )
        if not rest or not isinstance(rest[0], Tree):
            if rest:  # COUNT() alias
                raise _fail("MALFORMED_QUERY", f"unexpected token: '{rest[0].value}'", rest[0])
            if not alone:
                raise _fail(
                    "MALFORMED_QUERY",
                    "COUNT() must be the only element of the SELECT list",
                    name_tok,
                )

    # -- conditions --------------------------------------------------------------------------

    def _cond(self, node: Tree) -> tuple[str, list[Any]]:
        kind = node.data
        if kind in ("and_chain", "or_chain"):
            joiner = " AND " if kind == "and_chain" else " OR "
            parts = [self._cond(c) for c in node.children]
            return "(" + joiner.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]
        if kind == "not_cond":
            sql, params = self._cond(node.children[0])
            return f"(NOT {sql})", params
        spec, tok = self._field(node.children[0])
        self._check_filterable(spec, tok)
        col = _q(spec.name)
        if kind == "compare":
            op_tok, value = node.children[1], _literal(node.children[2])
            op = "!=" if op_tok.value == "<>" else op_tok.value
            return self._compare(spec, col, op, value, op_tok)
        if kind == "like":
            value = _literal(node.children[1])
            if spec.type not in TEXT_TYPES:
                raise _fail(
                    "INVALID_QUERY_FILTER_OPERATOR" if spec.type in ID_TYPES else "INVALID_FIELD",
                    f"invalid operator on field '{spec.name}': LIKE is only valid on string fields",
                    tok,
                )
            if value.kind != "string":
                raise self._type_error(spec, value)
            pattern = _decode_string(value, like=True)
            return f"({col} IS NOT NULL AND {col} LIKE ? ESCAPE '\\')", [pattern]
        # IN / NOT IN
        literals = [_literal(t) for t in node.children[1:]]
        values = []
        has_null = False
        for lit in literals:
            if lit.kind == "relative":
                raise _fail(
                    "MALFORMED_QUERY",
                    f"date literal {lit.tok.value} is not supported inside IN (...) by the dev "
                    "org's SOQL subset",
                    lit.tok,
                )
            bound = self._bind(spec, lit, "=")
            if bound is None:
                has_null = True
            else:
                values.append(bound)
        target = col + (" COLLATE NOCASE" if spec.type in TEXT_TYPES else "")
        marks = ", ".join("?" for _ in values)
        if kind == "in_list":
            parts = [f"{col} IS NULL"] if has_null else []
            if values:
                parts.append(f"({col} IS NOT NULL AND {target} IN ({marks}))")
            return "(" + " OR ".join(parts) + ")", values
        parts = [f"{col} IS NOT NULL"] if has_null else []
        if values:
            parts.append(f"({col} IS NULL OR {target} NOT IN ({marks}))")
        return "(" + " AND ".join(parts) + ")", values

    def _check_filterable(self, spec: FieldSpec, tok: Token) -> None:
        if spec.type == "address" or (spec.type == "textarea" and spec.length > LONG_TEXTAREA):
            raise _fail(
                "INVALID_FIELD", f"field '{spec.name}' can not be filtered in a query call", tok
            )

    def _compare(
        self, spec: FieldSpec, col: str, op: str, value: _Lit, op_tok: Token
    ) -> tuple[str, list[Any]]:
        if value.kind == "null":
            if op == "=":
                return f"({col} IS NULL)", []
            if op == "!=":
                return f"({col} IS NOT NULL)", []
            raise _fail(
                "MALFORMED_QUERY",
                f"null can only be compared with = or != (field '{spec.name}')",
                value.tok,
            )
        if spec.type == "boolean" and op not in ("=", "!="):
            raise _fail(
                "INVALID_QUERY_FILTER_OPERATOR",
                f"invalid operator on boolean field '{spec.name}': {op_tok.value}",
                op_tok,
            )
        if value.kind == "relative":
            if spec.type not in ("date", "datetime"):
                raise self._type_error(spec, value)
            return self._date_range(spec, col, op, value)
        bound = self._bind(spec, value, op)
        if bound is None:  # '' against an Id: null
            return self._compare(spec, col, op, _Lit("null", None, value.tok), op_tok)
        collate = " COLLATE NOCASE" if spec.type in TEXT_TYPES else ""
        if op == "!=":
            return f"({col} IS NULL OR {col} <> ?{collate})", [bound]
        return f"({col} IS NOT NULL AND {col} {op} ?{collate})", [bound]

    def _date_range(self, spec: FieldSpec, col: str, op: str, value: _Lit) -> tuple[str, list[Any]]:
        name, n = value.value
        today = self.today
        try:
            if name == "TODAY":
                start, end = today, today + timedelta(days=1)
            elif name == "YESTERDAY":
                start, end = today - timedelta(days=1), today
            elif name == "TOMORROW":
                start, end = today + timedelta(days=1), today + timedelta(days=2)
            elif name == "LAST_N_DAYS":
                start, end = today - timedelta(days=n), today + timedelta(days=1)
            else:  # NEXT_N_DAYS
                start, end = today + timedelta(days=1), today + timedelta(days=1 + n)
        except OverflowError:
            raise _fail(
                "NUMBER_OUTSIDE_VALID_RANGE", f"date literal out of range: {value.tok.value}",
                value.tok,
            ) from None  # fmt: skip

        def bound(d: date) -> str:
            return d.isoformat() + ("T00:00:00.000+0000" if spec.type == "datetime" else "")

        lo, hi = bound(start), bound(end)
        if op == "=":
            return f"({col} IS NOT NULL AND {col} >= ? AND {col} < ?)", [lo, hi]
        if op == "!=":
            return f"({col} IS NULL OR {col} < ? OR {col} >= ?)", [lo, hi]
        if op == "<":
            return f"({col} IS NOT NULL AND {col} < ?)", [lo]
        if op == "<=":
            return f"({col} IS NOT NULL AND {col} < ?)", [hi]
        if op == ">":
            return f"({col} IS NOT NULL AND {col} >= ?)", [hi]
        return f"({col} IS NOT NULL AND {col} >= ?)", [lo]  # >=

    def _type_error(self, spec: FieldSpec, value: _Lit) -> _Fail:
        if spec.type in TEXT_TYPES or spec.type in ID_TYPES:
            text = (
                f"value of filter criterion for field '{spec.name}' must be of type "
                f"{'id' if spec.type in ID_TYPES else 'string'} and should be enclosed in quotes"
            )
        else:
            text = (
                f"value of filter criterion for field '{spec.name}' must be of type "
                f"{_TYPE_WORD[spec.type]} and should not be enclosed in quotes"
            )
        return _fail("INVALID_FIELD", text, value.tok)

    def _bind(self, spec: FieldSpec, value: _Lit, op: str) -> Any:
        """The parameter for one literal compared with the field (None for null)."""
        if value.kind == "null":
            return None
        typ = spec.type
        expected: dict[str, Callable[[_Lit], bool]] = {
            "boolean": lambda v: v.kind == "boolean",
            "date": lambda v: v.kind == "date",
            "datetime": lambda v: v.kind == "datetime",
        }
        if typ in TEXT_TYPES or typ in ID_TYPES:
            if value.kind != "string":
                raise self._type_error(spec, value)
            text = _decode_string(value, like=False)
            if typ in TEXT_TYPES:
                return text
            if text == "":
                return None
            normal = normalise_id(text)
            if normal is None:
                raise _fail("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {text}", value.tok)
            return normal
        if typ in NUMBER_TYPES:
            if value.kind != "number":
                raise self._type_error(spec, value)
            return value.value
        if not expected[typ](value):
            raise self._type_error(spec, value)
        if typ == "boolean":
            return 1 if value.value else 0
        return value.value

    # -- order -------------------------------------------------------------------------------

    def _order(self, node: Tree | None, *, aggregate: bool) -> str:
        keys: list[str] = []
        names: set[str] = set()
        for item in node.children if node is not None else []:
            spec, tok = self._field(item.children[0])
            if aggregate:
                raise _fail(
                    "MALFORMED_QUERY", f"Ordered field must be grouped or aggregated: {spec.name}",
                    tok,
                )  # fmt: skip
            if spec.type == "address" or (spec.type == "textarea" and spec.length > LONG_TEXTAREA):
                raise _fail(
                    "INVALID_FIELD", f"field '{spec.name}' can not be sorted in a query call", tok
                )
            desc = False
            nulls_first: bool | None = None
            for sub in item.children[1:]:
                if sub.data == "direction":
                    desc = sub.children[0].type == "DESC"
                else:
                    nulls_first = sub.children[0].type == "FIRST"
            if nulls_first is None:
                nulls_first = not desc
            collate = " COLLATE NOCASE" if spec.type in TEXT_TYPES else ""
            keys.append(
                f"{_q(spec.name)}{collate} {'DESC' if desc else 'ASC'} "
                f"NULLS {'FIRST' if nulls_first else 'LAST'}"
            )
            names.add(spec.name)
        if aggregate:
            return ""
        if "Id" not in names:
            keys.append('"Id" ASC')
        return " ORDER BY " + ", ".join(keys)


def _json_part(part: str) -> str:
    """Address component key as Salesforce's JSON has it: PostalCode -> postalCode."""
    return part[:1].lower() + part[1:]
