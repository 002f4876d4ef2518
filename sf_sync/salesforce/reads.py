"""Reads into Arrow: count first, then REST ``query``/``queryAll`` or a Bulk API 2.0 query job.

``query_arrow`` asks ``SELECT COUNT() ...`` first. Up to the bulk threshold it pages through
REST ``query`` (``queryAll`` with ``include_deleted``) following ``nextRecordsUrl``; above it,
it runs a Bulk API 2.0 query job (``sf.bulk2.<Object>.query``/``query_all``, CSV pages by
locator). Each page becomes one Arrow record batch built column by column, and the page's JSON or
CSV text is dropped before the next page is fetched.

Types come from ``describe``:

=====================================================  ===========================
Salesforce type                                        Arrow type
=====================================================  ===========================
string, textarea, picklist, multipicklist, phone,      string
url, email, combobox, encryptedstring, base64, time,
anyType, id, reference
boolean                                                bool
int, long                                              int64
double, currency, percent                              float64
date                                                   date32
datetime                                               timestamp[ms, tz=UTC]
address, location (compound)                           not read (see below)
=====================================================  ===========================

Compound fields (``BillingAddress``, geolocations) are left out when no fields are named and
refused when named: the Bulk API cannot return them, and their components (``BillingStreet``,
``BillingCity``, ...) are ordinary fields to ask for instead, so a REST read and a bulk read of
the same fields give the same table. The table's schema metadata says which API read it
(``sf_sync.read_api``: ``rest`` or ``bulk``) and the object.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv

if TYPE_CHECKING:
    from sf_sync.salesforce.client import SalesforceClient

log = logging.getLogger(__name__)

_STRING_TYPES = {
    "string", "textarea", "picklist", "multipicklist", "phone", "url", "email", "combobox",
    "encryptedstring", "base64", "time", "anyType", "id", "reference",
}  # fmt: skip
_COMPOUND_TYPES = {"address", "location"}
ARROW_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "int": pa.int64(),
    "long": pa.int64(),
    "double": pa.float64(),
    "currency": pa.float64(),
    "percent": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("ms", tz="UTC"),
    **{t: pa.string() for t in _STRING_TYPES},
}
BULK_PAGE_RECORDS = 50_000


def arrow_type(sf_type: str) -> pa.DataType:
    """The Arrow type of a describe field type (unknown scalar types read as strings)."""
    if sf_type in _COMPOUND_TYPES:
        raise ValueError(f"compound field type {sf_type!r} has no column; read its components")
    return ARROW_TYPES.get(sf_type, pa.string())


def _soql_where(where: str | None) -> str:
    return f" WHERE {where}" if where and where.strip() else ""


def count(client: SalesforceClient, object_name: str, where: str | None = None, *,
          include_deleted: bool = False) -> int:  # fmt: skip
    """``SELECT COUNT() FROM object [WHERE where]`` (``queryAll`` with deleted rows)."""
    soql = f"SELECT COUNT() FROM {object_name}{_soql_where(where)}"
    return int(client.sf.query(soql, include_deleted=include_deleted)["totalSize"])


def schema_for(client: SalesforceClient, object_name: str,
               fields: list[str] | None) -> pa.Schema:  # fmt: skip
    """The Arrow schema of ``fields`` (describe's names and order when none are given)."""
    described = {f["name"].lower(): f for f in client.describe(object_name)["fields"]}
    if fields is None:
        chosen = [f for f in described.values() if f["type"] not in _COMPOUND_TYPES]
    else:
        chosen = []
        for name in fields:
            spec = described.get(name.strip().lower())
            if spec is None:
                raise ValueError(f"{object_name} has no field {name!r}")
            if spec["type"] in _COMPOUND_TYPES:
                raise ValueError(
                    f"{object_name}.{spec['name']} is a compound {spec['type']} field; "
                    "read its component fields instead"
                )
            chosen.append(spec)
    names = [f["name"] for f in chosen]
    if len({n.lower() for n in names}) != len(names):
        raise ValueError(f"fields named twice: {names}")
    return pa.schema(
        [pa.field(f["name"], arrow_type(f["type"])) for f in chosen],
        metadata={"sf_sync.object": object_name},
    )


def query_arrow(client: SalesforceClient, object_name: str, fields: list[str] | None = None,
                where: str | None = None, *, include_deleted: bool = False,
                bulk_threshold: int | None = None) -> pa.Table:  # fmt: skip
    """The records of ``object_name`` matching ``where`` as an Arrow table typed by describe."""
    schema = schema_for(client, object_name, fields)
    soql = f"SELECT {', '.join(schema.names)} FROM {object_name}{_soql_where(where)}"
    total = count(client, object_name, where, include_deleted=include_deleted)
    threshold = client.bulk_threshold if bulk_threshold is None else bulk_threshold
    api = "bulk" if total > threshold else "rest"
    log.info("reading %d %s records through %s", total, object_name, api)
    pages = _bulk_pages(client, object_name, soql, schema, include_deleted) if api == "bulk" \
        else _rest_pages(client, soql, schema, include_deleted)  # fmt: skip
    batches = list(pages)
    metadata = {**(schema.metadata or {}), b"sf_sync.read_api": api.encode()}
    schema = schema.with_metadata(metadata)
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches).replace_schema_metadata(metadata)


# ---------------------------------------------------------------------------------------------
# REST pages


def _rest_pages(client: SalesforceClient, soql: str, schema: pa.Schema,
                include_deleted: bool) -> Iterator[pa.RecordBatch]:  # fmt: skip
    page = client.sf.query(soql, include_deleted=include_deleted)
    while True:
        records = page["records"]
        if records:
            yield _json_batch(records, schema)
        next_url = page.get("nextRecordsUrl")
        if page.get("done", True) or not next_url:
            return
        page = client.sf.query_more(next_url, identifier_is_url=True)


def _json_batch(records: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    columns = []
    for field in schema:
        values = [r.get(field.name) for r in records]
        columns.append(_to_arrow(values, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _to_arrow(values: list[Any], typ: pa.DataType) -> pa.Array:
    """JSON values of one column to ``typ``: numbers and booleans directly, dates and
    datetimes through Arrow's ISO-8601 parser (``+0000`` and ``Z`` offsets both)."""
    if pa.types.is_date32(typ) or pa.types.is_timestamp(typ):
        return pa.array(values, pa.string()).cast(typ)
    return pa.array(values, typ)


# ---------------------------------------------------------------------------------------------
# Bulk API 2.0 pages


def _bulk_pages(client: SalesforceClient, object_name: str, soql: str, schema: pa.Schema,
                include_deleted: bool) -> Iterator[pa.RecordBatch]:  # fmt: skip
    bulk = getattr(client.sf.bulk2, object_name)
    run = bulk.query_all if include_deleted else bulk.query
    for page in run(soql, max_records=BULK_PAGE_RECORDS, wait=client.bulk_poll_wait_s):
        text = page if isinstance(page, str) else str(page)
        if text.strip():
            batch = csv_batch(text.encode("utf-8"), schema)
            if batch.num_rows:
                yield batch


def csv_batch(data: bytes, schema: pa.Schema) -> pa.RecordBatch:
    """One Bulk API 2.0 CSV page to a record batch of ``schema``.

    Columns come in the SELECT's order; every cell is read as text first (an empty cell is
    null: Salesforce does not distinguish empty strings from nulls), then cast.
    """
    names = [f"c{i}" for i in range(len(schema))]
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True,
            null_values=[""], quoted_strings_can_be_null=True,
        ),
    )  # fmt: skip
    columns = [table.column(i).combine_chunks().cast(field.type) for i, field in enumerate(schema)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)
