"""Bulk API 2.0: ingest jobs (CSV insert/update/upsert/delete) and query jobs (SOQL to CSV).

The flow simple-salesforce's ``sf.bulk2.<Object>`` drives, as Salesforce documents it:

* ingest: ``POST /jobs/ingest`` (state Open) -> ``PUT /jobs/ingest/{id}/batches`` (CSV, 201)
  -> ``PATCH /jobs/ingest/{id}`` ``{"state": "UploadComplete"}`` -> a background worker moves
  the job to InProgress and then JobComplete (or Failed) -> ``successfulResults``,
  ``failedResults`` and ``unprocessedrecords`` as CSV.
* query: ``POST /jobs/query`` (state UploadComplete; the SOQL is compiled at once, so a bad
  query is refused with its own error code) -> a background worker streams the rows to a CSV
  file plus an index of row byte offsets -> ``GET /jobs/query/{id}/results?maxRecords=&locator=``
  pages with ``Sforce-NumberOfRecords`` and ``Sforce-Locator`` (``null`` on the last page).

Ingest rows are processed in chunks of ``CHUNK_RECORDS``; one chunk is one store transaction
(so its change events share one transactionKey, as a Salesforce bulk chunk's do), each row in
its own savepoint so a bad row fails alone. The chunk's per-row results and the job's counters
are written in that same transaction, so they always agree with the records.

Job state lives in the org's SQLite file (``_bulk_jobs``, ``_bulk_results``); uploaded CSV and
query results live under ``<state_dir>/bulk/<jobId>/``. After a restart, finished jobs answer
as before. Jobs that were running are picked up again when the Bulk API is first called: an
ingest job resumes after its last committed chunk (``retries`` counts the resumptions), a query
job runs its query again from the start.

Differences from Salesforce (see the report in docs or the module's tests):
* only one upload per job, like Salesforce: a second PUT is accepted but closing the job is
  then refused with Salesforce's "Found multiple contents for job" INVALIDJOB error;
* ``hardDelete`` is refused (the dev org's user lacks the Bulk API Hard Delete permission);
* relationship columns (``Account.Customer_Number__c``) in ingest CSV are not supported: such a
  header fails the job like an unknown field;
* result CSVs use the job's column delimiter and line ending; ``maxRecords`` absent means all
  remaining records in one page.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import logging
import shutil
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.metadata import ObjectSpec
from sf_sync.devorg.store import CallContext, OrgStore
from sf_sync.devorg.values import format_datetime, now_utc
from sf_sync.salesforce_ids import make_id

log = logging.getLogger(__name__)

JOB_PREFIX = "750"
POD = "7Dv"
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
CHUNK_RECORDS = 200  # Salesforce saves bulk records in chunks of 200, one transaction each
QUERY_FETCH = 2000  # rows fetched from SQLite (and written to the CSV) at a time
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^",
              "BACKQUOTE": "`"}  # fmt: skip
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
TERMINAL = ("JobComplete", "Failed", "Aborted")
NULL_MARK = "#N/A"

# compile_query(text, schema, *, include_deleted=False, now=None) -> CompiledQuery
Compiler = Callable[..., Any]


def _default_compiler() -> tuple[Compiler, type[Exception]]:
    from sf_sync.devorg.soql import SoqlError, compile_query

    return compile_query, SoqlError


# ---------------------------------------------------------------------------------------------
# Job records


@dataclass
class Job:
    """One row of ``_bulk_jobs``: fixed facts in ``info``, moving parts in their own columns."""

    id: str
    kind: str  # ingest | query
    state: str
    info: dict[str, Any]
    private: dict[str, Any]
    processed: int = 0
    failed: int = 0
    error_message: str | None = None
    processing_ms: int = 0
    modstamp: str = ""
    retries: int = 0

    @property
    def delimiter(self) -> str:
        return DELIMITERS[self.info["columnDelimiter"]]

    @property
    def line_ending(self) -> str:
        return LINE_ENDINGS[self.info["lineEnding"]]

    def ctx(self) -> CallContext:
        p = self.private
        return CallContext(p["user_id"], p.get("client"), "bulkapi", self.info["apiVersion_s"])

    def public(self, full: bool = True) -> dict[str, Any]:
        out = {k: v for k, v in self.info.items() if not k.endswith("_s")}
        out["state"] = self.state
        out["systemModstamp"] = self.modstamp
        if not full:
            return out
        out["jobType"] = "V2Ingest" if self.kind == "ingest" else "V2Query"
        out["numberRecordsProcessed"] = self.processed
        if self.kind == "ingest":
            out["numberRecordsFailed"] = self.failed
        out["retries"] = self.retries
        out["totalProcessingTime"] = self.processing_ms
        if self.kind == "ingest":
            out["apiActiveProcessingTime"] = self.processing_ms
            out["apexProcessingTime"] = 0
        else:
            out["isPkChunkingSupported"] = False
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out


_COLUMNS = ("id, kind, state, info, private, processed, failed, error_message, processing_ms, "
            "modstamp, retries")  # fmt: skip


class BulkJobs:
    """The org's Bulk API 2.0 jobs: their table, their files and their worker threads."""

    def __init__(self, org: Any, compiler: tuple[Compiler, type[Exception]] | None = None):
        self.org = org
        self.store: OrgStore = org.store
        self.root: Path = org.settings.state_dir / "bulk"
        self._compiler = compiler
        self._threads: dict[str, threading.Thread] = {}
        with self.store.lock:
            c = self.store.conn
            c.execute(
                "CREATE TABLE IF NOT EXISTS _bulk_jobs (id TEXT PRIMARY KEY, kind TEXT, "
                "state TEXT, info TEXT, private TEXT, processed INTEGER DEFAULT 0, "
                "failed INTEGER DEFAULT 0, error_message TEXT, processing_ms INTEGER DEFAULT 0, "
                "modstamp TEXT, retries INTEGER DEFAULT 0, seq INTEGER)"
            )
            c.execute(
                "CREATE TABLE IF NOT EXISTS _bulk_results (job_id TEXT, row INTEGER, ok INTEGER, "
                "sf_id TEXT, created INTEGER, error TEXT, fields TEXT, "
                "PRIMARY KEY (job_id, row))"
            )
        self._recover()

    @property
    def compiler(self) -> tuple[Compiler, type[Exception]]:
        if self._compiler is None:
            self._compiler = _default_compiler()
        return self._compiler

    # ------------------------------------------------------------------ persistence

    def get(self, job_id: str, kind: str) -> Job:
        rows = self.store.read(
            f"SELECT {_COLUMNS} FROM _bulk_jobs WHERE id = ? AND kind = ?", (job_id, kind)
        )
        if not rows:
            raise ApiError("NOT_FOUND", "The requested resource does not exist")
        return _job(rows[0])

    def list(self, kind: str) -> list[Job]:
        rows = self.store.read(
            f"SELECT {_COLUMNS} FROM _bulk_jobs WHERE kind = ? ORDER BY seq", (kind,)
        )
        return [_job(r) for r in rows]

    def _insert(self, job: Job) -> None:
        with self.store.lock:
            self.store.conn.execute(
                "INSERT INTO _bulk_jobs (id, kind, state, info, private, modstamp, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM _bulk_jobs))",
                (job.id, job.kind, job.state, orjson.dumps(job.info).decode(),
                 orjson.dumps(job.private).decode(), job.modstamp),
            )  # fmt: skip

    def _set(self, job_id: str, when: tuple[str, ...] | None = None, **values: Any) -> bool:
        """Updates columns of one job (only while its state is in ``when``); True if it did."""
        values.setdefault("modstamp", _stamp())
        sets = ", ".join(f"{k} = ?" for k in values)
        sql = f"UPDATE _bulk_jobs SET {sets} WHERE id = ?"
        params: list[Any] = [*values.values(), job_id]
        if when:
            sql += f" AND state IN ({', '.join('?' * len(when))})"
            params += list(when)
        with self.store.lock:
            return self.store.conn.execute(sql, params).rowcount == 1

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def new_job(self, kind: str, info: dict[str, Any], private: dict[str, Any], state: str) -> Job:
        number = self.store.next_counter("id:750")
        job_id = make_id(JOB_PREFIX, number, pod=POD)
        stamp = _stamp()
        info = {"id": job_id, **info, "createdDate": stamp}
        job = Job(job_id, kind, state, info, private, modstamp=stamp)
        self.job_dir(job_id).mkdir(parents=True, exist_ok=True)
        self._insert(job)
        return job

    def delete(self, job: Job) -> None:
        with self.store.lock:
            self.store.conn.execute("DELETE FROM _bulk_jobs WHERE id = ?", (job.id,))
            self.store.conn.execute("DELETE FROM _bulk_results WHERE job_id = ?", (job.id,))
        shutil.rmtree(self.job_dir(job.id), ignore_errors=True)

    # ------------------------------------------------------------------ workers

    def start(self, job: Job) -> None:
        target = self._run_ingest if job.kind == "ingest" else self._run_query
        thread = threading.Thread(target=target, args=(job.id,), name=f"bulk-{job.id}", daemon=True)
        self._threads[job.id] = thread
        thread.start()

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)

    def _recover(self) -> None:
        """Jobs that were running when the dev org stopped: resume them (see the module doc)."""
        for kind in ("ingest", "query"):
            for job in self.list(kind):
                if job.state == "InProgress" or (job.state == "UploadComplete"):
                    self._set(job.id, retries=job.retries + 1)
                    log.info("bulk: resuming %s job %s after a restart", kind, job.id)
                    self.start(job)

    def _fail(self, job_id: str, message: str, began: float) -> None:
        self._set(
            job_id, ("UploadComplete", "InProgress"), state="Failed", error_message=message,
            processing_ms=_ms_since(began),
        )  # fmt: skip

    # ------------------------------------------------------------------ ingest

    def _run_ingest(self, job_id: str) -> None:
        began = time.monotonic()
        try:
            job = self.get(job_id, "ingest")
            if not self._set(job_id, ("UploadComplete", "InProgress"), state="InProgress"):
                return
            obj = self.store.object(job.info["object"])
            rows = _read_upload(self.job_dir(job_id), job)
            header = next(rows, None)
            if header is None:
                raise _JobFailure("InvalidBatch : Empty CSV: no header row")
            _check_header(obj, job, header)
            done = job.processed  # resuming after a restart: skip committed chunks
            chunk: list[tuple[int, list[str]]] = []
            for number, row in enumerate(rows):
                if number < done:
                    continue
                chunk.append((number, row))
                if len(chunk) == CHUNK_RECORDS:
                    if not self._ingest_chunk(job, obj, header, chunk, began):
                        return
                    chunk = []
            if chunk and not self._ingest_chunk(job, obj, header, chunk, began):
                return
            self._set(job_id, ("InProgress",), state="JobComplete",
                      processing_ms=_ms_since(began))  # fmt: skip
        except _JobFailure as exc:
            self._fail(job_id, str(exc), began)
        except Exception as exc:  # a bug of ours: the job fails visibly rather than hangs
            log.exception("bulk ingest job %s failed", job_id)
            self._fail(job_id, f"InternalServerError : {exc}", began)

    def _ingest_chunk(
        self,
        job: Job,
        obj: ObjectSpec,
        header: list[str],
        chunk: list[tuple[int, list[str]]],
        began: float,
    ) -> bool:
        """One transaction: the chunk's records, their results and the job's counters."""
        operation = job.info["operation"]
        results: list[tuple[Any, ...]] = []
        with self.store.transaction(job.ctx()) as tx:
            state = self.store.conn.execute(
                "SELECT state FROM _bulk_jobs WHERE id = ?", (job.id,)
            ).fetchone()
            if state is None or state[0] != "InProgress":  # aborted or deleted meanwhile
                return False
            failed = 0
            for number, row in chunk:
                fields = orjson.dumps(row).decode()
                try:
                    if len(row) != len(header):
                        raise ApiError(
                            "INVALID_FIELD", f"Row has {len(row)} columns, header has "
                            f"{len(header)}",
                        )  # fmt: skip
                    with tx.savepoint():
                        record_id, created = _apply(tx, obj, job, operation, header, row)
                    results.append((job.id, number, 1, record_id, int(created), None, fields))
                except ApiError as err:
                    failed += 1
                    rid = _row_id(header, row) if operation in ("update", "delete") else ""
                    results.append((job.id, number, 0, rid, 0, _sf_error(err), fields))
            self.store.conn.executemany(
                "INSERT OR REPLACE INTO _bulk_results VALUES (?, ?, ?, ?, ?, ?, ?)", results
            )
            self.store.conn.execute(
                "UPDATE _bulk_jobs SET processed = processed + ?, failed = failed + ?, "
                "processing_ms = ?, modstamp = ? WHERE id = ?",
                (len(chunk), failed, _ms_since(began), tx.stamp, job.id),
            )
        return True

    # ------------------------------------------------------------------ query

    def _run_query(self, job_id: str) -> None:
        began = time.monotonic()
        try:
            job = self.get(job_id, "query")
            if not self._set(job_id, ("UploadComplete", "InProgress"), state="InProgress"):
                return
            compile_query, _ = self.compiler
            compiled = compile_query(
                job.private["query"], self.org.settings.schema,
                include_deleted=job.info["operation"] == "queryAll",
            )  # fmt: skip
            count = write_query_results(
                compiled, self.store.path, self.job_dir(job_id), job, self._still_running
            )
            if count is None:
                return
            self._set(job_id, ("InProgress",), state="JobComplete", processed=count,
                      processing_ms=_ms_since(began))  # fmt: skip
        except Exception as exc:
            log.exception("bulk query job %s failed", job_id)
            self._fail(job_id, f"InternalServerError : {exc}", began)

    def _still_running(self, job_id: str, processed: int) -> bool:
        return self._set(job_id, ("InProgress",), processed=processed)


class _JobFailure(Exception):
    """Fails the whole job with Salesforce's ``errorMessage``."""


def _job(row: tuple[Any, ...]) -> Job:
    (jid, kind, state, info, private, processed, failed, error, ms, stamp, retries) = row
    return Job(jid, kind, state, orjson.loads(info), orjson.loads(private), processed, failed,
               error, ms, stamp, retries)  # fmt: skip


def _stamp() -> str:
    return format_datetime(now_utc())


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


# ---------------------------------------------------------------------------------------------
# Ingest: CSV rows to record operations


def _read_upload(folder: Path, job: Job) -> Iterator[list[str]]:
    """The uploaded CSV's rows (header first), parsed lazily from the file."""
    path = folder / "upload-1.csv"
    if not path.exists():
        return iter(())

    def rows() -> Iterator[list[str]]:
        with path.open(encoding="utf-8-sig", newline="") as f:
            yield from csv.reader(f, delimiter=job.delimiter, strict=True)

    return rows()


def _check_header(obj: ObjectSpec, job: Job, header: list[str]) -> None:
    for name in header:
        if obj.field(name.strip()) is None:
            raise _JobFailure(f"InvalidBatch : Field name not found : {name}")
    lowered = [h.strip().lower() for h in header]
    if len(set(lowered)) != len(lowered):
        dup = next(h for h in header if lowered.count(h.strip().lower()) > 1)
        raise _JobFailure(f"InvalidBatch : Duplicate field name : {dup}")
    operation = job.info["operation"]
    if operation == "delete" and lowered != ["id"]:
        raise _JobFailure("InvalidBatch : The 'delete' batch must contain only 'Id'")


def _row_id(header: list[str], row: list[str]) -> str:
    for name, value in zip(header, row, strict=False):
        if name.strip().lower() == "id":
            return value
    return ""


def _values(header: list[str], row: list[str], *, creating: bool) -> dict[str, Any]:
    """CSV cells to API values: empty means "not given", ``#N/A`` means null (updates)."""
    out: dict[str, Any] = {}
    for name, value in zip(header, row, strict=True):
        if value == "":
            continue
        if value == NULL_MARK:
            if creating:
                continue
            out[name.strip()] = None
        else:
            out[name.strip()] = value
    return out


def _apply(
    tx: Any, obj: ObjectSpec, job: Job, operation: str, header: list[str], row: list[str]
) -> tuple[str, bool]:
    """One CSV row's operation; returns (record Id, created)."""
    if operation == "insert":
        return tx.create(obj, _values(header, row, creating=True)), True
    if operation in ("update", "delete"):
        record_id = _row_id(header, row)
        if not record_id:
            raise ApiError("MISSING_ARGUMENT", f"Id not specified in an {operation} call")
        values = {k: v for k, v in _values(header, row, creating=False).items()
                  if k.lower() != "id"}  # fmt: skip
        with _unknown_id_is_a_bad_reference():
            if operation == "delete":
                return tx.delete(obj, record_id), False
            return tx.update(obj, record_id, values), False
    if operation == "upsert":
        spec = obj.field(job.info["externalIdFieldName"])
        assert spec is not None
        values = _values(header, row, creating=False)
        key = next((v for k, v in values.items() if k.lower() == spec.name.lower()), None)
        values = {k: v for k, v in values.items() if k.lower() != spec.name.lower()}
        if spec.name == "Id" and not key:
            return tx.create(obj, {k: v for k, v in values.items() if v is not None}), True
        if not key:
            raise ApiError("MISSING_ARGUMENT", f"{obj.name}.{spec.name} not specified", [spec.name])
        with _unknown_id_is_a_bad_reference():
            return tx.upsert(obj, spec, key, values)
    raise ApiError("INVALIDJOB", f"operation {operation} is not supported")


@contextmanager
def _unknown_id_is_a_bad_reference() -> Iterator[None]:
    """Bulk reports a row naming a record that does not exist as a bad cross reference."""
    try:
        yield
    except ApiError as err:
        if err.error_code == "NOT_FOUND":
            raise ApiError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id") from None
        raise


def _sf_error(err: ApiError) -> str:
    """``sf__Error`` as Salesforce writes it: ``CODE:message:fields --``."""
    fields = ",".join(err.fields)
    return f"{err.error_code}:{err.message}:{fields + ' ' if fields else ''}--"


# ---------------------------------------------------------------------------------------------
# Query: SOQL rows to a CSV file with a row-offset index


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
        return text
    return str(value)


def write_query_results(
    compiled: Any,
    database: Path,
    folder: Path,
    job: Job,
    progress: Callable[[str, int], bool],
) -> int | None:
    """Streams a compiled query's rows to ``results.csv`` (no header) and ``index.bin`` (one
    little-endian int64 byte offset per row). Reads through its own read-only connection, so
    the store stays free for other calls, and holds at most ``QUERY_FETCH`` rows at a time.
    Returns the row count, or None if ``progress`` says the job was aborted."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = compiled.columns()
    paths = [c.split(".") for c in columns]
    version = job.info["apiVersion_s"]
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=job.delimiter, lineterminator=job.line_ending, quoting=csv.QUOTE_ALL
    )
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, check_same_thread=False)
    count = 0
    offset = 0
    try:
        cur = conn.execute(compiled.sql, compiled.params)
        with (folder / "results.csv").open("wb") as out, (folder / "index.bin").open("wb") as idx:
            while True:
                rows = cur.fetchmany(QUERY_FETCH)
                if not rows:
                    break
                offsets = array("q")
                data = bytearray()
                for row in rows:
                    record = compiled.to_record(row, version)
                    values = []
                    for path in paths:
                        value: Any = record
                        for part in path:
                            value = value.get(part) if isinstance(value, dict) else None
                        values.append(_csv_value(value))
                    buffer.seek(0)
                    buffer.truncate()
                    writer.writerow(values)
                    offsets.append(offset)
                    line = buffer.getvalue().encode("utf-8")
                    data += line
                    offset += len(line)
                out.write(data)
                if offsets.itemsize != 8:  # pragma: no cover - "q" is 8 bytes everywhere
                    raise RuntimeError("int64 array expected")
                idx.write(offsets.tobytes())
                count += len(rows)
                if not progress(job.id, count):
                    return None
    finally:
        conn.close()
    header = io.StringIO()
    csv.writer(
        header, delimiter=job.delimiter, lineterminator=job.line_ending, quoting=csv.QUOTE_ALL
    ).writerow(columns)
    (folder / "header.csv").write_text(header.getvalue(), encoding="utf-8", newline="")
    return count


def _encode_locator(start: int) -> str:
    return base64.b64encode(str(start).encode()).decode().rstrip("=")


def _decode_locator(locator: str, total: int) -> int:
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
        start = int(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        start = -1
    if not 0 <= start <= total or _encode_locator(start) != locator:
        raise ApiError("INVALIDLOCATOR", f"Invalid locator: {locator}", status=400)
    return start


def _page(folder: Path, start: int, count: int, total: int) -> tuple[int, int]:
    """Byte range [begin, end) of rows ``start .. start+count`` from the offset index."""
    results = folder / "results.csv"
    with (folder / "index.bin").open("rb") as idx:

        def at(row: int) -> int:
            if row >= total:
                return results.stat().st_size
            idx.seek(row * 8)
            return int.from_bytes(idx.read(8), "little", signed=True)

        return at(start), at(start + count)


def _stream(path: Path, begin: int, end: int, head: bytes) -> Iterator[bytes]:
    yield head
    with path.open("rb") as f:
        f.seek(begin)
        left = end - begin
        while left > 0:
            block = f.read(min(left, 1 << 20))
            if not block:
                break
            left -= len(block)
            yield block


# ---------------------------------------------------------------------------------------------
# HTTP handlers


_MANAGERS_LOCK = threading.Lock()


def jobs_of(org: Any) -> BulkJobs:
    """The org's job manager, made (and interrupted jobs resumed) on the first Bulk call."""
    with _MANAGERS_LOCK:
        manager = getattr(org, "bulk_jobs", None)
        if manager is None:
            manager = BulkJobs(org)
            org.bulk_jobs = manager
        return manager


def _body(call: Any) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise ApiError("JSON_PARSER_ERROR", "The request body must be a JSON object")
    return call.body


def _format_options(body: dict[str, Any]) -> tuple[str, str]:
    delimiter = body.get("columnDelimiter") or "COMMA"
    line_ending = body.get("lineEnding") or "LF"
    if delimiter not in DELIMITERS:
        raise ApiError("INVALIDJOB", f"Invalid column delimiter: {delimiter}")
    if line_ending not in LINE_ENDINGS:
        raise ApiError("INVALIDJOB", f"Invalid line ending: {line_ending}")
    content_type = body.get("contentType") or "CSV"
    if content_type != "CSV":
        raise ApiError("INVALIDJOB", f"Unsupported content type: {content_type}")
    return delimiter, line_ending


def _common(call: Any, operation: str, obj: str) -> dict[str, Any]:
    return {
        "operation": operation,
        "object": obj,
        "createdById": call.ctx.user_id,
    }


def _tail(call: Any, delimiter: str, line_ending: str) -> dict[str, Any]:
    return {
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": float(call.version),
        "apiVersion_s": call.version,
        "lineEnding": line_ending,
        "columnDelimiter": delimiter,
    }


def _private(call: Any, **extra: Any) -> dict[str, Any]:
    return {"user_id": call.ctx.user_id, "client": call.ctx.client, **extra}


def create_ingest(call: Any) -> Response:
    body = _body(call)
    operation = body.get("operation")
    if operation not in INGEST_OPERATIONS:
        raise ApiError("INVALIDJOB", f"Invalid operation: {operation}")
    if operation == "hardDelete":
        raise ApiError(
            "INVALIDJOB", "You do not have permission to hard delete: the Bulk API Hard Delete "
            "permission is not offered by the dev org",
        )  # fmt: skip
    name = body.get("object")
    obj = call.org.settings.schema.get(str(name)) if name else None
    if obj is None:
        raise ApiError("INVALIDJOB", f"Unable to find object: {name}")
    delimiter, line_ending = _format_options(body)
    info = _common(call, operation, obj.name)
    if operation == "upsert":
        ext = body.get("externalIdFieldName")
        spec = obj.field(str(ext)) if ext else None
        if spec is None or not (spec.external_id or spec.name == "Id"):
            raise ApiError(
                "INVALIDJOB", f"The field {ext} is not an external id field of {obj.name}"
                if ext else "External ID field name is required for upsert",
            )  # fmt: skip
        info["externalIdFieldName"] = spec.name
    jobs = jobs_of(call.org)
    job = jobs.new_job("ingest", {**info, **_tail(call, delimiter, line_ending)},
                       _private(call), "Open")  # fmt: skip
    job.info["contentUrl"] = f"services/data/v{call.version}/jobs/ingest/{job.id}/batches"
    jobs._set(job.id, info=orjson.dumps(job.info).decode(), modstamp=job.modstamp)
    return _json(job.public(full=False))


def create_query(call: Any) -> Response:
    body = _body(call)
    operation = body.get("operation") or "query"
    if operation not in QUERY_OPERATIONS:
        raise ApiError("INVALIDJOB", f"Invalid operation: {operation}")
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise ApiError("INVALIDJOB", "A query is required")
    delimiter, line_ending = _format_options(body)
    jobs = jobs_of(call.org)
    compile_query, soql_error = jobs.compiler
    try:
        compiled = compile_query(text, call.org.settings.schema,
                                 include_deleted=operation == "queryAll")  # fmt: skip
    except soql_error as err:
        raise ApiError(err.error_code, err.message) from None  # type: ignore[attr-defined]
    if compiled.is_count or getattr(compiled, "is_aggregate", False):
        raise ApiError("INVALIDJOB", "Aggregate queries are not supported by Bulk API 2.0")
    obj = getattr(compiled, "object", None)
    for column in compiled.columns():
        if obj is not None and obj.is_compound(column):
            raise ApiError("INVALIDJOB", "Selecting compound data not supported in Bulk Query")
    info = _common(call, operation, obj.name if obj is not None else "")
    job = jobs.new_job("query", {**info, **_tail(call, delimiter, line_ending)},
                       _private(call, query=text), "UploadComplete")  # fmt: skip
    jobs.start(job)
    return _json(job.public(full=False))


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def list_jobs(kind: str) -> Callable[[Any], Response]:
    def handler(call: Any) -> Response:
        records = [j.public(full=False) for j in jobs_of(call.org).list(kind)]
        return _json({"done": True, "records": records, "nextRecordsUrl": None})

    return handler


def job_resource(kind: str) -> Callable[[Any], Response]:
    """GET (info), PATCH (state change) and DELETE of one job."""

    def handler(call: Any) -> Response:
        jobs = jobs_of(call.org)
        job = jobs.get(call.request.path_params["job_id"], kind)
        method = call.request.method
        if method == "GET":
            return _json(job.public())
        if method == "DELETE":
            closed = job.state in TERMINAL or (kind == "ingest" and job.state == "UploadComplete")
            if not closed:
                raise ApiError(
                    "INVALIDJOBSTATE", f"Job {job.id} is in state {job.state}; only a closed, "
                    "completed, failed or aborted job can be deleted",
                )  # fmt: skip
            if jobs._set(job.id, ("UploadComplete", "InProgress"), state="Aborted"):
                jobs.wait(job.id, 30)  # let its worker see the abort before the files go
            jobs.delete(job)
            return Response(status_code=204)
        new = _body(call).get("state")
        if new == "Aborted":
            allowed: tuple[str, ...] = ("Open", "UploadComplete", "InProgress")
        elif new == "UploadComplete" and kind == "ingest":
            allowed = ("Open",)
        else:
            raise ApiError("INVALIDJOBSTATE", f"Invalid state change to {new}")
        if job.state not in allowed:
            raise ApiError(
                "INVALIDJOBSTATE", f"Job {job.id} is in state {job.state} and cannot change to "
                f"{new}",
            )  # fmt: skip
        if new == "UploadComplete":
            uploads = job.private.get("uploads", 0)
            if uploads > 1:
                raise ApiError(
                    "INVALIDJOB", f"Found multipe contents for job: <{job.id[:15]}>, please "
                    "'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make "
                    "sure you only do 'PUT' once on a given Job.",
                )  # fmt: skip
        if not jobs._set(job.id, allowed, state=new):
            raise ApiError("INVALIDJOBSTATE", f"Job {job.id} changed state meanwhile")
        job = jobs.get(job.id, kind)
        if new == "UploadComplete":
            jobs.start(job)
        return _json(job.public(full=False))

    return handler


def upload(call: Any) -> Response:
    jobs = jobs_of(call.org)
    job = jobs.get(call.request.path_params["job_id"], "ingest")
    if job.state != "Open":
        raise ApiError(
            "INVALIDJOBSTATE", f"Job {job.id} is in state {job.state}; data can only be "
            "uploaded to an Open job",
        )  # fmt: skip
    data = call.body
    if isinstance(data, dict | list) or data is None:
        raise ApiError("INVALIDJOB", "The request body must be CSV (Content-Type: text/csv)")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError("INVALIDJOB", "The uploaded data exceeds the maximum size of 100 MB")
    uploads = job.private.get("uploads", 0) + 1
    if uploads == 1:  # Salesforce keeps the first content; more only spoil the job
        (jobs.job_dir(job.id) / "upload-1.csv").write_bytes(data)
    job.private["uploads"] = uploads
    jobs._set(job.id, ("Open",), private=orjson.dumps(job.private).decode())
    return Response(status_code=201)


def ingest_results(call: Any) -> Response:
    jobs = jobs_of(call.org)
    job = jobs.get(call.request.path_params["job_id"], "ingest")
    which = call.request.path_params["which"].lower()
    if which not in ("successfulresults", "failedresults", "unprocessedrecords"):
        raise ApiError("NOT_FOUND", "The requested resource does not exist")
    if job.state not in TERMINAL:
        raise ApiError("INVALIDJOBSTATE", f"Job {job.id} is not finished (state {job.state})")
    rows = _read_upload(jobs.job_dir(job.id), job)
    header = next(rows, None) or []
    out = io.StringIO()
    writer = csv.writer(
        out, delimiter=job.delimiter, lineterminator=job.line_ending, quoting=csv.QUOTE_ALL
    )
    d, le = job.delimiter, job.line_ending
    original = d.join(_quote_if_needed(h, d) for h in header)
    if which == "unprocessedrecords":
        out.write(original + le if header else "")
        for number, row in enumerate(rows):
            if number >= job.processed:
                writer.writerow(row)
        return Response(out.getvalue(), media_type="text/csv")
    ok = which == "successfulresults"
    extra = '"sf__Created"' if ok else '"sf__Error"'
    out.write(f'"sf__Id"{d}{extra}' + (d + original if header else "") + le)
    results = call.store.read(
        "SELECT sf_id, created, error, fields FROM _bulk_results WHERE job_id = ? AND ok = ? "
        "ORDER BY row",
        (job.id, int(ok)),
    )
    for sf_id, created, error, fields in results:
        second = ("true" if created else "false") if ok else error
        writer.writerow([sf_id or "", second, *orjson.loads(fields)])
    return Response(out.getvalue(), media_type="text/csv")


def _quote_if_needed(text: str, delimiter: str) -> str:
    if any(ch in text for ch in (delimiter, '"', "\n", "\r")):
        return '"' + text.replace('"', '""') + '"'
    return text


def query_results(call: Any) -> Response:
    jobs = jobs_of(call.org)
    job = jobs.get(call.request.path_params["job_id"], "query")
    if job.state != "JobComplete":
        raise ApiError("INVALIDJOBSTATE", f"Job {job.id} is not complete (state {job.state})")
    total = job.processed
    raw_max = call.param("maxRecords")
    if raw_max is None:
        size = total
    elif raw_max.isdigit() and int(raw_max) > 0:
        size = int(raw_max)
    else:
        raise ApiError("INVALIDPARAMETER", f"Invalid maxRecords: {raw_max}")
    locator = call.param("locator")
    start = _decode_locator(locator, total) if locator and locator != "null" else 0
    count = max(0, min(size, total - start))
    folder = jobs.job_dir(job.id)
    begin, end = _page(folder, start, count, total)
    nxt = _encode_locator(start + count) if start + count < total else "null"
    head = (folder / "header.csv").read_bytes()
    return StreamingResponse(
        _stream(folder / "results.csv", begin, end, head),
        media_type="text/csv",
        headers={"Sforce-NumberOfRecords": str(count), "Sforce-Locator": nxt},
    )


def bulk_routes() -> list[Route]:
    from sf_sync.devorg.gate import rest

    v = "/services/data/v{version:str}/jobs"
    routes = []
    for slash in ("", "/"):
        routes += [
            Route(f"{v}/ingest{slash}", rest(create_ingest), methods=["POST"]),
            Route(f"{v}/query{slash}", rest(create_query), methods=["POST"]),
        ]
    routes += [
        Route(f"{v}/ingest", rest(list_jobs("ingest")), methods=["GET"]),
        Route(f"{v}/ingest/", rest(list_jobs("ingest")), methods=["GET"]),
        Route(f"{v}/query", rest(list_jobs("query")), methods=["GET"]),
        Route(f"{v}/query/", rest(list_jobs("query")), methods=["GET"]),
        Route(f"{v}/ingest/{{job_id}}", rest(job_resource("ingest")),
              methods=["GET", "PATCH", "DELETE"]),
        Route(f"{v}/ingest/{{job_id}}/batches", rest(upload), methods=["PUT"]),
        Route(f"{v}/ingest/{{job_id}}/batches/", rest(upload), methods=["PUT"]),
        Route(f"{v}/ingest/{{job_id}}/{{which}}", rest(ingest_results), methods=["GET"]),
        Route(f"{v}/ingest/{{job_id}}/{{which}}/", rest(ingest_results), methods=["GET"]),
        Route(f"{v}/query/{{job_id}}", rest(job_resource("query")),
              methods=["GET", "PATCH", "DELETE"]),
        Route(f"{v}/query/{{job_id}}/results", rest(query_results), methods=["GET"]),
        Route(f"{v}/query/{{job_id}}/results/", rest(query_results), methods=["GET"]),
    ]  # fmt: skip
    return routes
