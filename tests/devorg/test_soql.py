"""SOQL subset: compile against real metadata, run on an in-memory SQLite laid out like the store,
and compare with expectations worked out in Python from the rows themselves."""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from sf_sync.devorg.metadata import Schema, build_schema
from sf_sync.devorg.soql import SoqlError, compile_query
from sf_sync.salesforce_ids import make_id

SCHEMA = build_schema(
    {
        "Account": {"custom_fields": {"Customer_Number__c": {"external_id": True, "length": 40}}},
        "Contact": None,
        "Invoice__c": {
            "key_prefix": "a0I",
            "fields": {
                "Amount__c": {"type": "currency"},
                "Due__c": {"type": "date"},
                "Paid__c": {"type": "boolean"},
            },
        },
    }
)
NOW = datetime(2024, 3, 15, 12, 30, tzinfo=UTC)
TODAY = NOW.date()

_SQL_TYPES = {
    "boolean": "INTEGER", "int": "INTEGER", "double": "REAL", "currency": "REAL",
    "percent": "REAL",
}  # fmt: skip


def encode(value: Any) -> Any:
    """The store's encodings, written independently of the compiler."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
    if isinstance(value, date):
        return value.isoformat()
    return value


def make_db(schema: Schema, rows: dict[str, list[dict[str, Any]]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    for obj in schema.objects:
        cols = ", ".join(f'"{f.name}" {_SQL_TYPES.get(f.type, "TEXT")}' for f in obj.stored_fields)
        conn.execute(f'CREATE TABLE "{obj.name}" ({cols})')
        for n, row in enumerate(rows.get(obj.name, []), start=1):
            full = {"Id": make_id(obj.key_prefix, n), "IsDeleted": False, **row}
            names = list(full)
            marks = ", ".join("?" for _ in names)
            conn.execute(
                f'INSERT INTO "{obj.name}" ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in names)}) '
                f"VALUES ({marks})",
                [encode(full[c]) for c in names],
            )
    return conn


def dt(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


ACCOUNTS: list[dict[str, Any]] = [
    {"Name": "Acme", "Industry": "Banking", "NumberOfEmployees": 100, "AnnualRevenue": 1e6,
     "CreatedDate": dt(2024, 3, 15, 8), "Rating": "Hot", "Site": None,
     "BillingCity": "Berlin", "BillingCountry": "Germany", "BillingLatitude": 52.52},
    {"Name": "acme corp", "Industry": None, "NumberOfEmployees": 5, "AnnualRevenue": None,
     "CreatedDate": dt(2024, 3, 14, 23, 59, 59), "Rating": "warm", "Site": "HQ"},
    {"Name": "Beta", "Industry": "Retail", "NumberOfEmployees": None, "AnnualRevenue": 250.5,
     "CreatedDate": dt(2024, 3, 16), "Rating": None, "Site": "hq"},
    {"Name": "gamma_50%", "Industry": "banking", "NumberOfEmployees": 50, "AnnualRevenue": 0.0,
     "CreatedDate": dt(2024, 3, 10, 12), "Rating": "Cold", "Site": "Branch"},
    {"Name": "Delta's \\ shop", "Industry": "Energy", "NumberOfEmployees": 7,
     "AnnualRevenue": 99.0, "CreatedDate": dt(2024, 3, 20, 6), "Rating": "Hot", "Site": None},
    {"Name": "Zeta", "Industry": "Banking", "NumberOfEmployees": 100, "IsDeleted": True,
     "CreatedDate": dt(2024, 1, 1), "Rating": "Hot"},
    {"Name": "x' OR 1=1 --", "Industry": None, "NumberOfEmployees": 1,
     "CreatedDate": dt(2023, 12, 31, 23), "Rating": None, "Description": "multi\nline\ttab"},
]  # fmt: skip
for _i, _a in enumerate(ACCOUNTS, start=1):
    _a["Id"] = make_id("001", _i)

INVOICES: list[dict[str, Any]] = [
    {"Name": "INV-1", "Due__c": date(2024, 3, 15), "Amount__c": 10.0, "Paid__c": True},
    {"Name": "INV-2", "Due__c": date(2024, 3, 14), "Amount__c": 20.0, "Paid__c": False},
    {"Name": "INV-3", "Due__c": date(2024, 3, 16), "Amount__c": None, "Paid__c": False},
    {"Name": "INV-4", "Due__c": date(2024, 3, 12), "Amount__c": 40.0, "Paid__c": True},
    {"Name": "INV-5", "Due__c": date(2024, 3, 18), "Amount__c": 50.0, "Paid__c": False},
    {"Name": "INV-6", "Due__c": None, "Amount__c": 60.0, "Paid__c": False},
    {"Name": "INV-7", "Due__c": date(2024, 3, 8), "Amount__c": 70.0, "Paid__c": False},
]


@pytest.fixture(scope="module")
def db() -> sqlite3.Connection:
    conn = make_db(SCHEMA, {"Account": ACCOUNTS, "Invoice__c": INVOICES})
    yield conn
    conn.close()


def run(db: sqlite3.Connection, soql: str, **kw: Any) -> list[dict[str, Any]]:
    q = compile_query(soql, SCHEMA, now=NOW, **kw)
    assert "?" in q.sql or not q.params
    return [q.to_record(r, "59.0") for r in db.execute(q.sql, q.params).fetchall()]


def names(db: sqlite3.Connection, soql: str, **kw: Any) -> list[str]:
    return [r["Name"] for r in run(db, soql, **kw)]


def live(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if not r.get("IsDeleted")]


def expect(rows: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {r["Name"] for r in live(rows) if pred(r)}


def error(soql: str, **kw: Any) -> SoqlError:
    with pytest.raises(SoqlError) as info:
        compile_query(soql, SCHEMA, now=NOW, **kw)
    return info.value


# ---------------------------------------------------------------------------------------------
# Record shape


def test_record_shape_canonical_case_select_order_and_json_types(db: sqlite3.Connection) -> None:
    recs = run(
        db,
        "select numberofemployees, NAME, annualrevenue, isdeleted, createddate "
        "from account where name = 'Acme'",
    )
    assert recs == [
        {
            "attributes": {
                "type": "Account",
                "url": f"/services/data/v59.0/sobjects/Account/{ACCOUNTS[0]['Id']}",
            },
            "NumberOfEmployees": 100,
            "Name": "Acme",
            "AnnualRevenue": 1000000.0,
            "IsDeleted": False,
            "CreatedDate": "2024-03-15T08:00:00.000+0000",
        }
    ]
    rec = recs[0]
    assert list(rec) == [
        "attributes", "NumberOfEmployees", "Name", "AnnualRevenue", "IsDeleted", "CreatedDate",
    ]  # fmt: skip
    assert type(rec["NumberOfEmployees"]) is int
    assert type(rec["AnnualRevenue"]) is float
    assert rec["IsDeleted"] is False


def test_url_carries_the_id_even_when_not_selected_and_version_prefix(db) -> None:
    q = compile_query("SELECT Name FROM Account WHERE Name = 'Beta'", SCHEMA, now=NOW)
    (row,) = db.execute(q.sql, q.params).fetchall()
    rec = q.to_record(row, "v60.0")
    assert rec == {
        "attributes": {
            "type": "Account",
            "url": f"/services/data/v60.0/sobjects/Account/{ACCOUNTS[2]['Id']}",
        },
        "Name": "Beta",
    }
    assert q.columns() == ["Name"]


def test_custom_object_booleans_dates_and_nulls(db) -> None:
    recs = run(db, "SELECT Name, Paid__c, Due__c, Amount__c FROM invoice__C WHERE Name IN "
               "('INV-1', 'INV-3', 'INV-6') ORDER BY Name")  # fmt: skip
    assert [{k: v for k, v in r.items() if k != "attributes"} for r in recs] == [
        {"Name": "INV-1", "Paid__c": True, "Due__c": "2024-03-15", "Amount__c": 10.0},
        {"Name": "INV-3", "Paid__c": False, "Due__c": "2024-03-16", "Amount__c": None},
        {"Name": "INV-6", "Paid__c": False, "Due__c": None, "Amount__c": 60.0},
    ]
    assert recs[0]["attributes"]["type"] == "Invoice__c"
    assert recs[0]["Paid__c"] is True and recs[1]["Paid__c"] is False


def test_address_is_an_object_or_null(db) -> None:
    recs = run(db, "SELECT Name, BillingAddress FROM Account WHERE Name IN ('Acme', 'Beta')")
    by = {r["Name"]: r for r in recs}
    assert by["Acme"]["BillingAddress"] == {
        "city": "Berlin", "country": "Germany", "geocodeAccuracy": None, "latitude": 52.52,
        "longitude": None, "postalCode": None, "state": None, "street": None,
    }  # fmt: skip
    assert list(by["Acme"]["BillingAddress"]) == [
        "city", "country", "geocodeAccuracy", "latitude", "longitude", "postalCode", "state",
        "street",
    ]  # fmt: skip
    assert by["Beta"]["BillingAddress"] is None
    q = compile_query("SELECT BillingAddress, Name FROM Account", SCHEMA)
    assert q.columns() == ["BillingAddress", "Name"]


def test_qualified_with_the_object_name(db) -> None:
    assert names(db, "SELECT Account.Name FROM Account WHERE Account.Name = 'Beta'") == ["Beta"]


def test_escapes_in_returned_text_and_filters(db) -> None:
    assert names(db, r"SELECT Name FROM Account WHERE Name = 'Delta\'s \\ shop'") == [
        "Delta's \\ shop"
    ]
    recs = run(db, r"SELECT Description FROM Account WHERE Name = 'x\' OR 1=1 --'")
    assert recs[0]["Description"] == "multi\nline\ttab"


# ---------------------------------------------------------------------------------------------
# Operators and null semantics


OPS = {"=": operator.eq, "!=": operator.ne, "<>": operator.ne, "<": operator.lt,
       "<=": operator.le, ">": operator.gt, ">=": operator.ge}  # fmt: skip


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("value", [5, 50, 100, 6.5])
def test_numeric_comparisons(db, op: str, value: float) -> None:
    def pred(r: dict[str, Any]) -> bool:
        v = r.get("NumberOfEmployees")
        if v is None:
            return OPS[op] is operator.ne  # SOQL: != includes nulls, other comparisons don't
        return OPS[op](v, value)

    got = names(db, f"SELECT Name FROM Account WHERE NumberOfEmployees {op} {value}")
    assert set(got) == expect(ACCOUNTS, pred)
    assert len(got) == len(set(got))


@pytest.mark.parametrize("op", list(OPS))
def test_string_comparisons_ignore_case_and_not_equal_includes_nulls(db, op: str) -> None:
    def pred(r: dict[str, Any]) -> bool:
        v = r.get("Industry")
        if v is None:
            return OPS[op] is operator.ne
        return OPS[op](v.lower(), "banking")

    got = set(names(db, f"SELECT Name FROM Account WHERE Industry {op} 'BANKING'"))
    assert got == expect(ACCOUNTS, pred)


def test_not_equal_includes_nulls_explicitly(db) -> None:
    assert set(names(db, "SELECT Name FROM Account WHERE Site != 'hq'")) == {
        "Acme", "gamma_50%", "Delta's \\ shop", "x' OR 1=1 --",
    }  # fmt: skip


def test_equals_null_and_not_equals_null(db) -> None:
    assert set(names(db, "SELECT Name FROM Account WHERE Rating = null")) == expect(
        ACCOUNTS, lambda r: r.get("Rating") is None
    )
    assert set(names(db, "SELECT Name FROM Account WHERE Rating != NULL")) == expect(
        ACCOUNTS, lambda r: r.get("Rating") is not None
    )
    assert set(names(db, "SELECT Name FROM Account WHERE Rating = null")) == {
        "Beta", "x' OR 1=1 --",
    }  # fmt: skip


def test_booleans(db) -> None:
    assert set(names(db, "SELECT Name FROM Invoice__c WHERE Paid__c = TRUE")) == {"INV-1", "INV-4"}
    assert set(names(db, "SELECT Name FROM Invoice__c WHERE Paid__c != true")) == expect(
        INVOICES, lambda r: not r["Paid__c"]
    )
    assert set(names(db, "SELECT Name FROM Invoice__c WHERE Paid__c = false")) == expect(
        INVOICES, lambda r: not r["Paid__c"]
    )


def test_currency_comparison_with_decimal(db) -> None:
    assert set(names(db, "SELECT Name FROM Account WHERE AnnualRevenue > 99.5")) == {
        "Acme", "Beta",
    }  # fmt: skip
    assert set(names(db, "SELECT Name FROM Account WHERE AnnualRevenue >= -1")) == expect(
        ACCOUNTS, lambda r: r.get("AnnualRevenue") is not None
    )


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("acme%", {"Acme", "acme corp"}),
        ("ACME", {"Acme"}),
        ("%CORP", {"acme corp"}),
        ("b_ta", {"Beta"}),
        ("%a%", {"Acme", "acme corp", "Beta", "gamma_50%", "Delta's \\ shop", "Zeta"}),
        (r"gamma\_50\%", {"gamma_50%"}),
        (r"%\_%", {"gamma_50%"}),
        (r"%\%", {"gamma_50%"}),
        (r"%50\%", {"gamma_50%"}),
        (r"%\\%", {"Delta's \\ shop"}),
        (r"delta\'s%", {"Delta's \\ shop"}),
        ("gamma%50", set()),
        ("", set()),
    ],
)
def test_like(db, pattern: str, expected: set[str]) -> None:
    got = set(names(db, f"SELECT Name FROM Account WHERE Name LIKE '{pattern}'"))
    assert got == expected - {"Zeta"}  # Zeta is deleted


def test_like_never_matches_null_and_not_like_keeps_nulls(db) -> None:
    assert set(names(db, "SELECT Name FROM Account WHERE Site LIKE '%'")) == expect(
        ACCOUNTS, lambda r: r.get("Site") is not None
    )
    assert set(names(db, "SELECT Name FROM Account WHERE NOT Site LIKE 'h%'")) == expect(
        ACCOUNTS, lambda r: not (r.get("Site") or "").lower().startswith("h")
    )


def test_in_and_not_in_ignore_case_and_handle_null(db) -> None:
    def industry(r: dict[str, Any]) -> str | None:
        return r.get("Industry") and r["Industry"].lower()

    cases = {
        "Industry IN ('banking', 'RETAIL')": lambda r: industry(r) in ("banking", "retail"),
        "Industry IN ('Energy', null)": lambda r: industry(r) in ("energy", None),
        "Industry NOT IN ('Banking')": lambda r: industry(r) != "banking",
        "Industry NOT IN ('Banking', null)": lambda r: industry(r) not in ("banking", None),
        "Industry IN (null)": lambda r: industry(r) is None,
        "Industry NOT IN (null)": lambda r: industry(r) is not None,
        "NumberOfEmployees IN (5, 7, 100)": lambda r: r.get("NumberOfEmployees") in (5, 7, 100),
        "NumberOfEmployees NOT IN (5, 7)": lambda r: r.get("NumberOfEmployees") not in (5, 7),
    }
    for where, pred in cases.items():
        got = set(names(db, f"SELECT Name FROM Account WHERE {where}"))
        assert got == expect(ACCOUNTS, pred), where


def test_in_on_dates_and_booleans(db) -> None:
    assert set(
        names(db, "SELECT Name FROM Invoice__c WHERE Due__c IN (2024-03-15, 2024-03-08)")
    ) == {"INV-1", "INV-7"}
    assert set(names(db, "SELECT Name FROM Invoice__c WHERE Paid__c IN (true)")) == {
        "INV-1", "INV-4",
    }  # fmt: skip


def test_and_or_not_and_parentheses(db) -> None:
    def emp(r: dict[str, Any]) -> int | None:
        return r.get("NumberOfEmployees")

    cases = {
        "NumberOfEmployees > 5 AND Rating = 'Hot'": lambda r: (
            (emp(r) or 0) > 5 and r.get("Rating") == "Hot"
        ),
        "NumberOfEmployees < 10 OR Rating = 'cold'": lambda r: (
            (emp(r) is not None and emp(r) < 10) or r.get("Rating") == "Cold"
        ),
        "(Rating = 'hot' OR Rating = 'warm') AND NOT NumberOfEmployees > 50": lambda r: (
            ((r.get("Rating") or "").lower() in ("hot", "warm"))
            and not (emp(r) is not None and emp(r) > 50)
        ),
        "NOT (Industry = 'Banking' OR Industry = null)": lambda r: (
            (r.get("Industry") or "banking").lower() != "banking"
        ),
        "NOT NOT Rating = 'hot'": lambda r: (r.get("Rating") or "").lower() == "hot",
        "Rating = 'Hot' AND (Site = null OR (NumberOfEmployees >= 100 AND Industry != null))": (
            lambda r: (
                r.get("Rating") == "Hot"
                and (r.get("Site") is None or ((emp(r) or 0) >= 100 and r.get("Industry")))
            )
        ),
    }
    for where, pred in cases.items():
        got = set(names(db, f"SELECT Name FROM Account WHERE {where}"))
        assert got == expect(ACCOUNTS, pred), where


def test_not_of_a_comparison_includes_nulls(db) -> None:
    # two-valued logic: the comparison is false on null, so NOT makes it true
    assert set(names(db, "SELECT Name FROM Account WHERE NOT NumberOfEmployees > 10")) == {
        "acme corp", "Beta", "Delta's \\ shop", "x' OR 1=1 --",
    }  # fmt: skip


def test_and_or_mixed_without_parentheses_is_refused() -> None:
    err = error("SELECT Id FROM Account WHERE Name = 'a' AND Site = 'b' OR Rating = 'c'")
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message.endswith("ERROR at Row:1:Column:56\nunexpected token: 'OR'")


def test_ids_15_and_18_characters_any_case(db) -> None:
    acme = ACCOUNTS[0]["Id"]
    for literal in (acme, acme[:15], acme.upper(), acme.lower()):
        assert names(db, f"SELECT Name FROM Account WHERE Id = '{literal}'") == ["Acme"], literal
    assert set(names(db, f"SELECT Name FROM Account WHERE Id IN ('{acme}', "
                         f"'{ACCOUNTS[2]['Id'][:15]}')")) == {"Acme", "Beta"}  # fmt: skip
    assert set(names(db, "SELECT Name FROM Account WHERE ParentId = ''")) == expect(
        ACCOUNTS, lambda r: True
    )
    err = error("SELECT Id FROM Account WHERE Id = '001xx'")
    assert err.error_code == "INVALID_QUERY_FILTER_OPERATOR"
    assert err.message.endswith("invalid ID field: 001xx")


# ---------------------------------------------------------------------------------------------
# Dates


def _dt_in(field: str, start: date, end: date) -> Callable[[dict[str, Any]], bool]:
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
    hi = datetime(end.year, end.month, end.day, tzinfo=UTC)
    return lambda r: r.get(field) is not None and lo <= r[field] < hi


def _ranges() -> dict[str, tuple[date, date]]:
    d = timedelta(days=1)
    return {
        "TODAY": (TODAY, TODAY + d),
        "YESTERDAY": (TODAY - d, TODAY),
        "TOMORROW": (TODAY + d, TODAY + 2 * d),
        "LAST_N_DAYS:5": (TODAY - 5 * d, TODAY + d),
        "last_n_days:0": (TODAY, TODAY + d),
        "NEXT_N_DAYS:5": (TODAY + d, TODAY + 6 * d),
        "NEXT_N_DAYS:1": (TODAY + d, TODAY + 2 * d),
    }


def _range_pred(
    value_of: Callable[[dict[str, Any]], Any], op: str, lo: Any, hi: Any
) -> Callable[[dict[str, Any]], bool]:
    def pred(r: dict[str, Any]) -> bool:
        v = value_of(r)
        if v is None:
            return op == "!="
        return {
            "=": lo <= v < hi, "!=": not (lo <= v < hi), "<": v < lo, "<=": v < hi,
            ">": v >= hi, ">=": v >= lo,
        }[op]  # fmt: skip

    return pred


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
@pytest.mark.parametrize("literal", list(_ranges()))
def test_date_literals_on_datetime_field(db, literal: str, op: str) -> None:
    start, end = _ranges()[literal]
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
    hi = datetime(end.year, end.month, end.day, tzinfo=UTC)
    got = set(names(db, f"SELECT Name FROM Account WHERE CreatedDate {op} {literal}"))
    assert got == expect(ACCOUNTS, _range_pred(lambda r: r.get("CreatedDate"), op, lo, hi))


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
@pytest.mark.parametrize("literal", list(_ranges()))
def test_date_literals_on_date_field(db, literal: str, op: str) -> None:
    lo, hi = _ranges()[literal]
    got = set(names(db, f"SELECT Name FROM Invoice__c WHERE Due__c {op} {literal}"))
    assert got == expect(INVOICES, _range_pred(lambda r: r.get("Due__c"), op, lo, hi))


def test_date_literals_hand_checked(db) -> None:
    # now = 2024-03-15T12:30Z
    assert set(names(db, "SELECT Name FROM Account WHERE CreatedDate = TODAY")) == {"Acme"}
    assert set(names(db, "SELECT Name FROM Account WHERE CreatedDate = YESTERDAY")) == {"acme corp"}
    assert set(names(db, "SELECT Name FROM Account WHERE CreatedDate > TODAY")) == {
        "Beta", "Delta's \\ shop",
    }  # fmt: skip
    assert set(names(db, "SELECT Name FROM Account WHERE CreatedDate = LAST_N_DAYS:5")) == {
        "Acme", "acme corp", "gamma_50%",
    }  # fmt: skip
    assert set(names(db, "SELECT Name FROM Invoice__c WHERE Due__c = NEXT_N_DAYS:3")) == {
        "INV-3", "INV-5",
    }  # fmt: skip
    assert set(names(db, "SELECT Name FROM Invoice__c WHERE Due__c < TODAY")) == {
        "INV-2", "INV-4", "INV-7",
    }  # fmt: skip


def test_now_defaults_to_the_clock_and_naive_now_is_utc() -> None:
    q = compile_query("SELECT Id FROM Invoice__c WHERE Due__c = TODAY", SCHEMA)
    assert datetime.now(UTC).date().isoformat() in q.params
    q = compile_query(
        "SELECT Id FROM Invoice__c WHERE Due__c = TODAY", SCHEMA, now=datetime(2024, 1, 2, 23)
    )
    assert q.params == ("2024-01-02", "2024-01-03")


@pytest.mark.parametrize(
    ("literal", "stored"),
    [
        ("2024-03-15T08:00:00Z", "2024-03-15T08:00:00.000+0000"),
        ("2024-03-15T08:00:00.000+0000", "2024-03-15T08:00:00.000+0000"),
        ("2024-03-15T13:30:00+05:30", "2024-03-15T08:00:00.000+0000"),
        ("2024-03-15T00:00:00-0800", "2024-03-15T08:00:00.000+0000"),
        ("2024-03-15T08:00:00.5Z", "2024-03-15T08:00:00.500+0000"),
        ("2024-03-14T23:00:00-09:00", "2024-03-15T08:00:00.000+0000"),
    ],
)
def test_datetime_literals_are_normalised_to_utc(db, literal: str, stored: str) -> None:
    q = compile_query(f"SELECT Id FROM Account WHERE CreatedDate = {literal}", SCHEMA)
    assert stored in q.params
    want = {"Acme"} if stored == "2024-03-15T08:00:00.000+0000" else set()
    assert set(names(db, f"SELECT Name FROM Account WHERE CreatedDate = {literal}")) == want


def test_datetime_range_with_offsets(db) -> None:
    got = names(
        db,
        "SELECT Name FROM Account WHERE CreatedDate >= 2024-03-15T00:00:00+01:00 "
        "AND CreatedDate < 2024-03-16T01:00:00+01:00 ORDER BY CreatedDate",
    )
    lo, hi = dt(2024, 3, 14, 23), dt(2024, 3, 16)
    want = sorted(
        (r for r in live(ACCOUNTS) if lo <= r["CreatedDate"] < hi), key=lambda r: r["CreatedDate"]
    )
    assert got == [r["Name"] for r in want]


def test_date_field_literal(db) -> None:
    assert set(names(db, "SELECT Name FROM Invoice__c WHERE Due__c >= 2024-03-15")) == expect(
        INVOICES, lambda r: r["Due__c"] is not None and r["Due__c"] >= date(2024, 3, 15)
    )


# ---------------------------------------------------------------------------------------------
# ORDER BY, LIMIT, OFFSET


def _sorted_names(
    rows: list[dict[str, Any]], key: str, *, desc: bool, nulls_first: bool, fold: bool = False
) -> list[str]:
    present = [r for r in live(rows) if r.get(key) is not None]
    nulls = [r for r in live(rows) if r.get(key) is None]
    present.sort(key=lambda r: r["Id"])
    present.sort(key=lambda r: r[key].lower() if fold else r[key], reverse=desc)
    nulls.sort(key=lambda r: r["Id"])
    ordered = nulls + present if nulls_first else present + nulls
    return [r["Name"] for r in ordered]


@pytest.mark.parametrize(
    ("clause", "desc", "nulls_first"),
    [
        ("", False, True),
        (" ASC", False, True),
        (" DESC", True, False),
        (" ASC NULLS LAST", False, False),
        (" DESC NULLS FIRST", True, True),
        (" nulls first", False, True),
    ],
)
def test_order_by_nulls_placement(db, clause: str, desc: bool, nulls_first: bool) -> None:
    got = names(db, f"SELECT Name FROM Account ORDER BY NumberOfEmployees{clause}")
    assert got == _sorted_names(ACCOUNTS, "NumberOfEmployees", desc=desc, nulls_first=nulls_first)


def test_order_by_text_ignores_case(db) -> None:
    got = names(db, "SELECT Name FROM Account ORDER BY Name")
    assert got == ["Acme", "acme corp", "Beta", "Delta's \\ shop", "gamma_50%", "x' OR 1=1 --"]
    got = names(db, "SELECT Name FROM Account ORDER BY Site DESC")
    assert got == _sorted_names(ACCOUNTS, "Site", desc=True, nulls_first=False, fold=True)


def test_order_by_several_keys_with_id_tie_break(db) -> None:
    got = names(db, "SELECT Name FROM Account ORDER BY Rating DESC, NumberOfEmployees ASC")
    # Rating (case-insensitive) desc, nulls last; then employees asc, nulls first
    assert got == ["acme corp", "Delta's \\ shop", "Acme", "gamma_50%", "Beta", "x' OR 1=1 --"]
    # equal keys (Hot/hot twice) come back in Id order
    got = names(db, "SELECT Name FROM Account WHERE Rating = 'hot' ORDER BY Rating")
    assert got == ["Acme", "Delta's \\ shop"]


def test_default_order_is_by_id(db) -> None:
    assert names(db, "SELECT Name FROM Account") == [r["Name"] for r in live(ACCOUNTS)]


@pytest.mark.parametrize(("limit", "offset"), [(2, None), (2, 2), (None, 4), (10, 5), (0, None)])
def test_limit_offset_pagination_and_total_size(db, limit, offset) -> None:
    ordered = _sorted_names(ACCOUNTS, "Name", desc=False, nulls_first=True, fold=True)
    soql = "SELECT Name FROM Account ORDER BY Name"
    if limit is not None:
        soql += f" LIMIT {limit}"
    if offset is not None:
        soql += f" OFFSET {offset}"
    start = offset or 0
    want = ordered[start : start + limit] if limit is not None else ordered[start:]
    assert names(db, soql) == want
    q = compile_query(soql, SCHEMA)
    assert db.execute(q.count_sql, q.count_params).fetchone()[0] == len(want)


def test_pages_cover_everything_once(db) -> None:
    seen = []
    for page in range(4):
        seen += names(db, f"SELECT Name FROM Account ORDER BY Rating LIMIT 2 OFFSET {page * 2}")
    assert sorted(seen) == sorted(r["Name"] for r in live(ACCOUNTS))


def test_offset_cap() -> None:
    compile_query("SELECT Id FROM Account OFFSET 2000", SCHEMA)
    err = error("SELECT Id FROM Account LIMIT 10 OFFSET 2001")
    assert (err.error_code, err.message) == (
        "NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# COUNT and deleted records


def test_count_only(db) -> None:
    q = compile_query("SELECT COUNT() FROM Account WHERE Industry = 'banking'", SCHEMA)
    assert q.is_count and q.columns() == []
    want = len(expect(ACCOUNTS, lambda r: (r.get("Industry") or "").lower() == "banking"))
    assert db.execute(q.count_sql, q.count_params).fetchone()[0] == want == 2
    assert db.execute(q.sql, q.params).fetchone()[0] == want
    with pytest.raises(ValueError):
        q.to_record((2,), "59.0")


def test_count_respects_limit(db) -> None:
    q = compile_query("SELECT count() FROM Account LIMIT 1", SCHEMA)
    assert db.execute(q.count_sql, q.count_params).fetchone()[0] == 1


def test_count_field_aggregates(db) -> None:
    q = compile_query(
        "SELECT COUNT(Id), COUNT(NumberOfEmployees) emps, COUNT(Site) FROM Account", SCHEMA
    )
    assert not q.is_count and q.columns() == ["expr0", "emps", "expr1"]
    rows = db.execute(q.sql, q.params).fetchall()
    assert [q.to_record(r, "59.0") for r in rows] == [
        {
            "attributes": {"type": "AggregateResult"},
            "expr0": len(live(ACCOUNTS)),
            "emps": sum(1 for r in live(ACCOUNTS) if r.get("NumberOfEmployees") is not None),
            "expr1": sum(1 for r in live(ACCOUNTS) if r.get("Site") is not None),
        }
    ]
    assert db.execute(q.count_sql, q.count_params).fetchone()[0] == 1


def test_include_deleted(db) -> None:
    everyone = {r["Name"] for r in ACCOUNTS}
    assert set(names(db, "SELECT Name FROM Account")) == everyone - {"Zeta"}
    assert set(names(db, "SELECT Name FROM Account", include_deleted=True)) == everyone
    assert names(db, "SELECT Name FROM Account WHERE IsDeleted = true", include_deleted=True) == [
        "Zeta"
    ]
    assert names(db, "SELECT Name FROM Account WHERE IsDeleted = true") == []
    assert set(
        names(db, "SELECT Name FROM Account WHERE IsDeleted = false", include_deleted=True)
    ) == everyone - {"Zeta"}
    q = compile_query("SELECT COUNT() FROM Account", SCHEMA, include_deleted=True)
    assert db.execute(q.count_sql, q.count_params).fetchone()[0] == len(ACCOUNTS)


# ---------------------------------------------------------------------------------------------
# Errors


def test_unknown_field_message_is_salesforces() -> None:
    err = error("SELECT Foo FROM Account")
    assert err.error_code == "INVALID_FIELD"
    assert err.message == (
        "SELECT Foo FROM Account\n"
        "       ^\n"
        "ERROR at Row:1:Column:8\n"
        "No such column 'Foo' on entity 'Account'. If you are attempting to use a custom field, "
        "be sure to append the '__c' after the custom field name. Please reference your WSDL or "
        "the describe call for the appropriate names."
    )
    assert str(err).startswith("INVALID_FIELD: SELECT Foo")


def test_unknown_field_in_where_and_order_on_a_later_line() -> None:
    err = error("SELECT Id\nFROM Account\nWHERE Nme = 'x'")
    assert err.error_code == "INVALID_FIELD"
    assert err.message.startswith("WHERE Nme = 'x'\n      ^\nERROR at Row:3:Column:7\n")
    err = error("SELECT Id FROM Account ORDER BY Bogus__c")
    assert "No such column 'Bogus__c' on entity 'Account'" in err.message


def test_unknown_object() -> None:
    err = error("SELECT Id FROM Opportunity")
    assert err.error_code == "INVALID_TYPE"
    assert err.message == (
        "SELECT Id FROM Opportunity\n"
        "               ^\n"
        "ERROR at Row:1:Column:16\n"
        "sObject type 'Opportunity' is not supported. If you are attempting to use a custom "
        "object, be sure to append the '__c' after the entity name. Please reference your WSDL "
        "or the describe call for the appropriate names."
    )


@pytest.mark.parametrize(
    ("soql", "column", "token"),
    [
        ("SELECT Id, FROM Account", 12, "FROM"),
        ("SELECT FROM Account", 8, "FROM"),
        ("SELECT Id FROM Account WHERE", 29, "<EOF>"),
        ("SELECT Id FROM", 15, "<EOF>"),
        ("SELECT Id Account", 11, "Account"),
        ("SELECT Id FROM Account WHERE Name = = 'x'", 37, "="),
        ("SELECT Id FROM Account WHERE Name 'x'", 35, "'x'"),
        ("SELECT Id FROM Account LIMIT", 29, "<EOF>"),
        ("SELECT Id FROM Account WHERE Name IN ()", 39, ")"),
        ("SELECT Id FROM Account OFFSET 5 LIMIT 2", 33, "LIMIT"),
        ("SELECT Id FROM Account WHERE Name = Acme", 37, "Acme"),
        ("SELECT Id FROM Account a", 24, "a"),
        ("SELECT Id FROM Account ORDER Name", 30, "Name"),
        ("SELECT Id FROM Account; DROP TABLE Account", 23, ";"),
    ],
)
def test_syntax_errors(soql: str, column: int, token: str) -> None:
    err = error(soql)
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message.endswith(f"ERROR at Row:1:Column:{column}\nunexpected token: '{token}'")
    assert err.message.startswith(soql + "\n" + " " * (column - 1) + "^\n")


def test_duplicate_field() -> None:
    err = error("SELECT Name, Id, NAME FROM Account")
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message.endswith("duplicate field selected: Name")


@pytest.mark.parametrize(
    ("soql", "message"),
    [
        ("SELECT Id FROM Account WHERE NumberOfEmployees = '5'",
         "value of filter criterion for field 'NumberOfEmployees' must be of type double and "
         "should not be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE AnnualRevenue > '5'",
         "value of filter criterion for field 'AnnualRevenue' must be of type currency and "
         "should not be enclosed in quotes"),
        ("SELECT Id FROM Invoice__c WHERE Due__c = '2024-01-01'",
         "value of filter criterion for field 'Due__c' must be of type date and should not be "
         "enclosed in quotes"),
        ("SELECT Id FROM Invoice__c WHERE Due__c = 2024-01-01T00:00:00Z",
         "value of filter criterion for field 'Due__c' must be of type date and should not be "
         "enclosed in quotes"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2024-01-01",
         "value of filter criterion for field 'CreatedDate' must be of type dateTime and should "
         "not be enclosed in quotes"),
        ("SELECT Id FROM Invoice__c WHERE Paid__c = 'true'",
         "value of filter criterion for field 'Paid__c' must be of type boolean and should not "
         "be enclosed in quotes"),
        ("SELECT Id FROM Invoice__c WHERE Paid__c = 1",
         "value of filter criterion for field 'Paid__c' must be of type boolean and should not "
         "be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE Name = 5",
         "value of filter criterion for field 'Name' must be of type string and should be "
         "enclosed in quotes"),
        ("SELECT Id FROM Account WHERE Name = TODAY",
         "value of filter criterion for field 'Name' must be of type string and should be "
         "enclosed in quotes"),
        ("SELECT Id FROM Account WHERE Name IN ('a', 3)",
         "value of filter criterion for field 'Name' must be of type string and should be "
         "enclosed in quotes"),
        ("SELECT Id FROM Account WHERE NumberOfEmployees LIKE '5%'",
         "invalid operator on field 'NumberOfEmployees': LIKE is only valid on string fields"),
        ("SELECT Id FROM Invoice__c WHERE Paid__c LIKE 'x'",
         "invalid operator on field 'Paid__c': LIKE is only valid on string fields"),
        ("SELECT Id FROM Account WHERE BillingAddress != null",
         "field 'BillingAddress' can not be filtered in a query call"),
        ("SELECT Id FROM Account WHERE Description = 'x'",
         "field 'Description' can not be filtered in a query call"),
        ("SELECT Id FROM Account ORDER BY ShippingAddress",
         "field 'ShippingAddress' can not be sorted in a query call"),
        ("SELECT Id FROM Contact WHERE Account.Name = 'x'",
         "Relationship field paths such as 'Account.Name' are not supported by the dev org's "
         "SOQL subset; query the related object by its Id instead."),
        ("SELECT Account.Name FROM Contact",
         "Relationship field paths such as 'Account.Name' are not supported by the dev org's "
         "SOQL subset; query the related object by its Id instead."),
    ],
)  # fmt: skip
def test_invalid_field_errors(soql: str, message: str) -> None:
    err = error(soql)
    assert err.error_code == "INVALID_FIELD"
    assert err.message.splitlines()[-1] == message
    assert "ERROR at Row:1:Column:" in err.message


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        ("SELECT Id FROM Account GROUP BY Name", "MALFORMED_QUERY", "GROUP BY is not supported"),
        ("SELECT Id FROM Account WHERE Name != null HAVING COUNT(Id) > 1", "MALFORMED_QUERY",
         "HAVING is not supported"),
        ("SELECT Id, (SELECT Id FROM Contacts) FROM Account", "MALFORMED_QUERY",
         "subqueries and semi-joins are not supported"),
        ("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)", "MALFORMED_QUERY",
         "subqueries and semi-joins are not supported"),
        ("SELECT SUM(AnnualRevenue) FROM Account", "MALFORMED_QUERY", "SUM() is not supported"),
        ("SELECT FIELDS(ALL) FROM Account", "MALFORMED_QUERY", "FIELDS() is not supported"),
        ("SELECT Id FROM Account WITH SECURITY_ENFORCED", "MALFORMED_QUERY",
         "WITH clauses are not supported"),
        ("SELECT Id FROM Account FOR UPDATE", "MALFORMED_QUERY", "FOR UPDATE are not supported"),
        ("SELECT Id FROM Account USING SCOPE mine", "MALFORMED_QUERY", "USING SCOPE"),
        ("SELECT TYPEOF Owner WHEN User THEN Name END FROM Account", "MALFORMED_QUERY",
         "TYPEOF is not supported"),
        ("SELECT Id FROM Account WHERE CreatedDate = LAST_WEEK", "MALFORMED_QUERY",
         "date literal LAST_WEEK is not supported"),
        ("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS", "MALFORMED_QUERY",
         "invalid date literal: LAST_N_DAYS"),
        ("SELECT Id FROM Account WHERE CreatedDate = TODAY:3", "MALFORMED_QUERY",
         "invalid date literal: TODAY:3"),
        ("SELECT Id FROM Account WHERE CreatedDate IN (TODAY)", "MALFORMED_QUERY",
         "not supported inside IN"),
        ("SELECT Id FROM Account WHERE NumberOfEmployees > null", "MALFORMED_QUERY",
         "null can only be compared with = or !="),
        ("SELECT Id FROM Account WHERE Name LIKE null", "INVALID_FIELD", "must be of type string"),
        ("SELECT Id FROM Account WHERE Name = 'a\\%'", "MALFORMED_QUERY",
         "Illegal character sequence '\\%' in quoted string"),
        ("SELECT Id FROM Account WHERE Name = 'a\\d'", "MALFORMED_QUERY",
         "Illegal character sequence '\\d' in quoted string"),
        ("SELECT Id FROM Account WHERE Name = 'abc", "MALFORMED_QUERY",
         "unterminated string literal"),
        ('SELECT Id FROM Account WHERE Name = "abc"', "MALFORMED_QUERY",
         "SOQL strings are enclosed in single quotes"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2024-02-30T00:00:00Z", "MALFORMED_QUERY",
         "invalid datetime: 2024-02-30T00:00:00Z"),
        ("SELECT Id FROM Invoice__c WHERE Due__c > 2024-13-01", "MALFORMED_QUERY",
         "invalid date: 2024-13-01"),
        ("SELECT Id FROM Account LIMIT -1", "MALFORMED_QUERY",
         "LIMIT must be a non-negative integer"),
        ("SELECT Id FROM Account LIMIT 1.5", "MALFORMED_QUERY",
         "LIMIT must be a non-negative integer"),
        ("SELECT Name, COUNT(Id) FROM Account", "MALFORMED_QUERY",
         "Field must be grouped or aggregated: Name"),
        ("SELECT COUNT(), Name FROM Account", "MALFORMED_QUERY",
         "COUNT() must be the only element of the SELECT list"),
        ("SELECT COUNT(Id) FROM Account ORDER BY Name", "MALFORMED_QUERY",
         "Ordered field must be grouped or aggregated: Name"),
        ("SELECT COUNT(Id) c, COUNT(Name) C FROM Account", "MALFORMED_QUERY",
         "duplicate alias: C"),
        ("SELECT Id FROM Invoice__c WHERE Paid__c > false", "INVALID_QUERY_FILTER_OPERATOR",
         "invalid operator on boolean field 'Paid__c': >"),
        ("SELECT Id FROM Account WHERE Id LIKE '001%'", "INVALID_QUERY_FILTER_OPERATOR",
         "LIKE is only valid on string fields"),
        ("SELECT Id FROM Account WHERE ParentId IN ('001', null)",
         "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: 001"),
    ],
)  # fmt: skip
def test_refusals(soql: str, code: str, fragment: str) -> None:
    err = error(soql)
    assert err.error_code == code
    assert fragment in err.message


# ---------------------------------------------------------------------------------------------
# Injection and parameters


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT Name FROM Account WHERE Name = 'x'' OR 1=1 --'",
        "SELECT Name FROM Account WHERE Name = 'x' OR 1=1 --'",
        "SELECT Name FROM Account WHERE Name = 'x'; DELETE FROM Account",
        "SELECT Name FROM Account WHERE Name = 'x' -- comment",
        'SELECT "Name" FROM Account',
        "SELECT Name FROM Account WHERE Name = 'x' /* c */",
        'SELECT Name FROM Account" WHERE 1=1',
        "SELECT Name FROM Account WHERE 1 = 1",
        "SELECT Name FROM Account WHERE Name = 'a' UNION SELECT Id FROM Contact",
    ],
)
def test_injection_attempts_are_refused(db, soql: str) -> None:
    with pytest.raises(SoqlError) as info:
        compile_query(soql, SCHEMA)
    assert info.value.error_code in ("MALFORMED_QUERY", "INVALID_FIELD")
    assert db.execute('SELECT COUNT(*) FROM "Account"').fetchone()[0] == len(ACCOUNTS)


@pytest.mark.parametrize(
    ("literal", "want"),
    [
        (r"'x\' OR 1=1 --'", ["x' OR 1=1 --"]),
        (r"'x\' OR \'1\'=\'1'", []),
        (r"'\'; DROP TABLE \"Account\"; --'", []),
    ],
)
def test_quotes_inside_values_are_bound_not_pasted(db, literal: str, want: list[str]) -> None:
    soql = f"SELECT Name FROM Account WHERE Name = {literal}"
    q = compile_query(soql, SCHEMA)
    assert "DROP" not in q.sql and "1=1" not in q.sql and "OR '" not in q.sql
    assert names(db, soql) == want
    assert db.execute('SELECT COUNT(*) FROM "Account"').fetchone()[0] == len(ACCOUNTS)


def test_all_values_are_parameters() -> None:
    q = compile_query(
        "SELECT Name FROM Invoice__c WHERE Name LIKE 'IN%' AND Amount__c IN (10, 20.5) "
        "AND Due__c > 2024-01-01 AND Paid__c = false AND CreatedDate < 2024-01-01T00:00:00Z "
        "LIMIT 3 OFFSET 1",
        SCHEMA,
    )
    assert q.params == (
        "IN%", 10, 20.5, "2024-01-01", 0, "2024-01-01T00:00:00.000+0000", 3, 1,
    )  # fmt: skip
    for value in ("IN%", "20.5", "2024-01-01"):
        assert value not in q.sql
    assert q.sql.count("?") == len(q.params)
    assert q.count_sql.count("?") == len(q.count_params)


def test_keywords_and_identifiers_are_case_insensitive(db) -> None:
    got = names(
        db,
        "sElEcT nAmE fRoM aCcOuNt wHeRe nUmBeRoFeMpLoYeEs >= 50 aNd NoT sItE = NuLl "
        "oRdEr By NaMe DeSc NuLlS lAsT lImIt 5",
    )
    assert got == ["gamma_50%"]


def test_numbers_beyond_sqlite_integers_and_deep_nesting(db) -> None:
    assert (
        names(db, "SELECT Name FROM Account WHERE NumberOfEmployees > 99999999999999999999") == []
    )
    assert len(names(db, "SELECT Name FROM Account LIMIT 99999999999999999999")) == len(
        live(ACCOUNTS)
    )
    assert names(db, "SELECT Name FROM Account WHERE AnnualRevenue = .5") == []
    deep = "SELECT Name FROM Account WHERE " + "(" * 500 + "Name = 'beta'" + ")" * 500
    assert names(db, deep) == ["Beta"]
    err = error("SELECT Id FROM Account WHERE " + "NOT " * 5000 + "Name = 'x'")
    assert err.error_code == "MALFORMED_QUERY"


def test_empty_query() -> None:
    err = error("")
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message.endswith("unexpected token: '<EOF>'")
