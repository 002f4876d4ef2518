"""Writes with one result per input record: sObject Collections, record PATCH, Bulk API 2.0.

* Up to the client's bulk threshold: sObject Collections (``/composite/sobjects``), 200 records
  a call, ``allOrNone=false`` so a bad record fails alone. Upserts use
  ``PATCH /composite/sobjects/{Object}/{ExternalIdField}``.
* Above it: one Bulk API 2.0 ingest job per ``BULK_JOB_RECORDS`` records
  (``sf.bulk2.<Object>.insert|update|upsert|delete``); each job's ``successfulResults`` and
  ``failedResults`` (and ``unprocessedrecords``) are matched back to the input rows by their CSV
  values (Bulk results are not in input order; identical input rows are interchangeable).
* Guarded updates (``if_unmodified_since``): Collections do not take ``If-Unmodified-Since``,
  so these go record by record as ``PATCH /sobjects/{Object}/{Id}`` with the header; 412
  becomes the record's failure ``PRECONDITION_FAILED``.

Every function returns a :class:`WriteReport` with a :class:`RecordResult` for each input
record, in input order, that was attempted. Nothing fails silently: a record Salesforce did not
report on is a failure (``NOT_REPORTED``). If the run stops part-way (``ApiLimitReached``,
``ApiBudgetExhausted``, ``RetriesExhausted``, ``SessionExpired``), the exception is re-raised with
``exc.partial`` set to the report so far; ``report.remaining(records)`` gives the inputs not yet
attempted, so the caller can resume with exactly those. One caveat for Bulk: a job cut off
while it runs (the stop came while polling it) may still finish on the server; its records count
as not attempted. Re-sending updates, upserts and deletes is harmless; re-sending inserts of such
a job could duplicate them, so prefer upserts by an external id for large creates.
"""

from __future__ import annotations

import csv
import email.utils
import io
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from simple_salesforce.exceptions import SalesforceError as SimpleSalesforceError

from sf_sync.salesforce.errors import SalesforceError, error_of

if TYPE_CHECKING:
    from sf_sync.salesforce.client import SalesforceClient

log = logging.getLogger(__name__)
COLLECTION_SIZE = 200
BULK_JOB_RECORDS = 10_000  # records per Bulk ingest job: the unit of a partial report
BULK_NULL = "#N/A"  # how Bulk API CSV sets a field to null (an empty cell leaves it unchanged)


@dataclass(frozen=True)
class RecordResult:
    """What happened to one input record (``index`` is its position in the input)."""

    index: int
    id: str | None
    success: bool
    error_code: str | None = None
    message: str | None = None
    fields: tuple[str, ...] = ()
    created: bool | None = None


@dataclass
class WriteReport:
    """One result per attempted input record, in input order."""

    operation: str
    object_name: str
    total: int  # input records
    api: str  # collections | records | bulk
    results: list[RecordResult] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # Bulk job ids

    @property
    def attempted(self) -> int:
        return len(self.results)

    @property
    def complete(self) -> bool:
        return self.attempted == self.total

    @property
    def succeeded(self) -> list[RecordResult]:
        return [r for r in self.results if r.success]

    @property
    def failed(self) -> list[RecordResult]:
        return [r for r in self.results if not r.success]

    def remaining(self, records: Sequence[Any]) -> list[Any]:
        """The inputs not attempted yet (to resume after a stop)."""
        return list(records[self.attempted :])

    def summary(self) -> dict[str, Any]:
        return {"operation": self.operation, "object": self.object_name, "api": self.api,
                "total": self.total, "attempted": self.attempted,
                "succeeded": len(self.succeeded), "failed": len(self.failed)}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Public functions


def create_records(client: SalesforceClient, object_name: str,
                   records: Sequence[Mapping[str, Any]], *,
                   bulk_threshold: int | None = None) -> WriteReport:  # fmt: skip
    return _write(client, "insert", object_name, records, bulk_threshold)


def update_records(client: SalesforceClient, object_name: str,
                   records: Sequence[Mapping[str, Any]], *,
                   if_unmodified_since: datetime | Mapping[str, datetime] | None = None,
                   bulk_threshold: int | None = None) -> WriteReport:  # fmt: skip
    """Updates by ``Id``. ``if_unmodified_since``: one moment for all records, or one per Id
    (records without one are updated unguarded); guarded updates go record by record."""
    for i, r in enumerate(records):
        if not (r.get("Id") or r.get("id")):
            raise ValueError(f"record {i} has no Id")
    if if_unmodified_since is not None:
        return _guarded_updates(client, object_name, records, if_unmodified_since)
    return _write(client, "update", object_name, records, bulk_threshold)


def upsert_records(client: SalesforceClient, object_name: str,
                   records: Sequence[Mapping[str, Any]], external_id_field: str, *,
                   bulk_threshold: int | None = None) -> WriteReport:  # fmt: skip
    for i, r in enumerate(records):
        if r.get(external_id_field) in (None, ""):
            raise ValueError(f"record {i} has no {external_id_field}")
    return _write(client, "upsert", object_name, records, bulk_threshold, external_id_field)


def delete_records(client: SalesforceClient, object_name: str, ids: Sequence[str], *,
                   bulk_threshold: int | None = None) -> WriteReport:  # fmt: skip
    return _write(client, "delete", object_name, [{"Id": i} for i in ids], bulk_threshold)


# ---------------------------------------------------------------------------------------------
# Dispatch and the partial-report guarantee


def _write(client: SalesforceClient, operation: str, object_name: str,
           records: Sequence[Mapping[str, Any]], bulk_threshold: int | None,
           external_id_field: str | None = None) -> WriteReport:  # fmt: skip
    threshold = client.bulk_threshold if bulk_threshold is None else bulk_threshold
    api = "bulk" if len(records) > threshold else "collections"
    report = WriteReport(operation, object_name, len(records), api)
    run = _bulk if api == "bulk" else _collections
    with _partial_on_stop(report):
        run(client, report, records, external_id_field)
    _log(report)
    return report


@contextmanager
def _partial_on_stop(report: WriteReport) -> Iterator[WriteReport]:
    """Attaches the report so far to a client error that stops a write part-way."""
    try:
        yield report
    except SalesforceError as exc:
        exc.partial = report
        log.warning("%s %s stopped after %d of %d records: %s", report.operation,
                    report.object_name, report.attempted, report.total, exc)  # fmt: skip
        raise


def _log(report: WriteReport) -> None:
    log.info("%s", report.summary())


# ---------------------------------------------------------------------------------------------
# sObject Collections


def _collections(client: SalesforceClient, report: WriteReport,
                 records: Sequence[Mapping[str, Any]],
                 external_id_field: str | None) -> None:  # fmt: skip
    obj, op = report.object_name, report.operation
    for start in range(0, len(records), COLLECTION_SIZE):
        chunk = records[start : start + COLLECTION_SIZE]
        if op == "delete":
            ids = ",".join(str(r["Id"]) for r in chunk)
            answer = client.sf.restful("composite/sobjects", method="DELETE",
                                       params={"ids": ids, "allOrNone": "false"})  # fmt: skip
        else:
            body = {"allOrNone": False, "records": [_sobject(obj, r, op) for r in chunk]}
            if op == "insert":
                answer = client.sf.restful("composite/sobjects", method="POST", json=body)
            elif op == "update":
                answer = client.sf.restful("composite/sobjects", method="PATCH", json=body)
            else:
                answer = client.sf.restful(f"composite/sobjects/{obj}/{external_id_field}",
                                           method="PATCH", json=body)  # fmt: skip
        results = answer if isinstance(answer, list) else []
        for offset, _record in enumerate(chunk):
            index = start + offset
            if offset < len(results) and isinstance(results[offset], dict):
                report.results.append(_collection_result(index, results[offset]))
            else:
                report.results.append(RecordResult(
                    index, None, False, "NOT_REPORTED",
                    "Salesforce returned no result for this record",
                ))  # fmt: skip


def _sobject(obj: str, record: Mapping[str, Any], op: str) -> dict[str, Any]:
    body: dict[str, Any] = {"attributes": {"type": obj}}
    for key, value in record.items():
        if key in ("Id", "id"):
            if op == "update":
                body["id"] = value
            continue
        body[key] = _json_value(value)
    return body


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _collection_result(index: int, raw: dict[str, Any]) -> RecordResult:
    if raw.get("success"):
        return RecordResult(index, raw.get("id"), True, created=raw.get("created"))
    errors = raw.get("errors") or [{}]
    first = errors[0]
    message = "; ".join(str(e.get("message", "")) for e in errors)
    return RecordResult(
        index, raw.get("id"), False, first.get("statusCode") or "UNKNOWN_ERROR", message,
        tuple(first.get("fields") or ()),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Guarded updates, record by record


def _http_date(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


def _guarded_updates(client: SalesforceClient, object_name: str,
                     records: Sequence[Mapping[str, Any]],
                     since: datetime | Mapping[str, datetime]) -> WriteReport:  # fmt: skip
    report = WriteReport("update", object_name, len(records), "records")
    sobject = getattr(client.sf, object_name)
    with _partial_on_stop(report):
        for index, record in enumerate(records):
            record_id = str(record.get("Id") or record.get("id"))
            moment = since.get(record_id) if isinstance(since, Mapping) else since
            headers = {"If-Unmodified-Since": _http_date(moment)} if moment else {}
            values = {k: _json_value(v) for k, v in record.items() if k not in ("Id", "id")}
            try:
                sobject.update(record_id, values, headers=headers)
            except SimpleSalesforceError as exc:
                code, message = error_of(getattr(exc, "content", None))
                if getattr(exc, "status", None) == 412:
                    code = "PRECONDITION_FAILED"
                    message = message or "modified since the If-Unmodified-Since date"
                fields = _fields_of(getattr(exc, "content", None))
                report.results.append(
                    RecordResult(index, record_id, False, code or "UNKNOWN_ERROR", message, fields)
                )
                continue
            report.results.append(RecordResult(index, record_id, True))
    _log(report)
    return report


def _fields_of(body: Any) -> tuple[str, ...]:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return tuple(body[0].get("fields") or ())
    return ()


# ---------------------------------------------------------------------------------------------
# Bulk API 2.0 ingest


def _csv_cell(value: Any) -> str:
    if value is None:
        return BULK_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return _json_value(value)
    return str(value)


def _bulk(client: SalesforceClient, report: WriteReport, records: Sequence[Mapping[str, Any]],
          external_id_field: str | None) -> None:  # fmt: skip
    op = report.operation
    columns: list[str] = ["Id"] if op == "delete" else []
    if op != "delete":
        for r in records:
            for key in r:
                name = "Id" if key == "id" else key
                if name not in columns:
                    columns.append(name)
    bulk = getattr(client.sf.bulk2, report.object_name)
    run: Callable[..., list[dict[str, Any]]] = {
        "insert": bulk.insert, "update": bulk.update, "upsert": bulk.upsert,
        "delete": bulk.delete,
    }[op]  # fmt: skip
    for start in range(0, len(records), BULK_JOB_RECORDS):
        chunk = records[start : start + BULK_JOB_RECORDS]
        rows = [{c: _csv_cell(_get(r, c)) if _has(r, c) else "" for c in columns} for r in chunk]
        kwargs: dict[str, Any] = {"records": rows, "wait": client.bulk_poll_wait_s}
        if op == "upsert":
            kwargs["external_id_field"] = external_id_field
        jobs = run(**kwargs)
        for job in jobs:
            report.jobs.append(job["job_id"])
        report.results.extend(_bulk_results(bulk, [j["job_id"] for j in jobs], rows, columns,
                                            start))  # fmt: skip


def _has(record: Mapping[str, Any], column: str) -> bool:
    return column in record or (column == "Id" and "id" in record)


def _get(record: Mapping[str, Any], column: str) -> Any:
    return record[column] if column in record else record.get("id")


def _bulk_results(bulk: Any, job_ids: list[str], rows: list[dict[str, str]], columns: list[str],
                  start: int) -> list[RecordResult]:  # fmt: skip
    """Matches each job's result rows back to the input rows by their uploaded CSV values."""
    waiting: dict[tuple[str, ...], deque[int]] = defaultdict(deque)
    for i, row in enumerate(rows):
        waiting[tuple(row[c] for c in columns)].append(i)
    found: dict[int, RecordResult] = {}

    def take(result: dict[str, str]) -> int | None:
        key = tuple(result.get(c, "") for c in columns)
        queue = waiting.get(key)
        return queue.popleft() if queue else None

    for job_id in job_ids:
        for result in _read_csv(bulk.get_successful_records(job_id)):
            i = take(result)
            if i is not None:
                created = result.get("sf__Created", "").lower()
                found[i] = RecordResult(start + i, result.get("sf__Id") or None, True,
                                        created=created == "true" if created else None)  # fmt: skip
        for result in _read_csv(bulk.get_failed_records(job_id)):
            i = take(result)
            if i is not None:
                code, _, message = (result.get("sf__Error") or "UNKNOWN_ERROR").partition(":")
                found[i] = RecordResult(start + i, result.get("sf__Id") or None, False,
                                        code.strip(), message.strip())  # fmt: skip
        for result in _read_csv(bulk.get_unprocessed_records(job_id)):
            i = take(result)
            if i is not None:
                found[i] = RecordResult(start + i, None, False, "UNPROCESSED",
                                        "the Bulk job did not process this record")  # fmt: skip
    return [
        found.get(i) or RecordResult(start + i, None, False, "NOT_REPORTED",
                                     "the Bulk job's results do not mention this record")
        for i in range(len(rows))
    ]  # fmt: skip


def _read_csv(text: str) -> list[dict[str, str]]:
    if not text or not text.strip():
        return []
    return list(csv.DictReader(io.StringIO(text)))
