"""The dev org's records in one SQLite file, with a transactional outbox for change events.

Every API call that changes data runs in one SQLite transaction; the change events it causes
are written to the ``_outbox`` table in that same transaction, and a publisher sends them to
Kafka afterwards. So a crash or restart of the stand-in never loses or invents an event: a change
is committed together with its events or not at all, as Salesforce's event bus promises.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.metadata import FieldSpec, ObjectSpec, Schema
from sf_sync.devorg.values import format_datetime, now_utc, parse_datetime, to_storage
from sf_sync.salesforce_ids import make_id
from sf_sync.salesforce_ids import normalise as normalise_id

SQL_TYPES = {"boolean": "INTEGER", "int": "INTEGER", "double": "REAL", "currency": "REAL",
             "percent": "REAL"}  # fmt: skip
ORG_ID_PREFIX = "00D"
USER_PREFIX = "005"
POD = "7Dv"  # the instance part of our Ids, unlike the synthetic streams' "5f0"
SYSTEM_FIELDS = {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate",
                 "LastModifiedById", "SystemModstamp"}  # fmt: skip


def q(name: str) -> str:
    """Quotes an identifier taken from metadata (never from request data)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class CallContext:
    """Who makes a call and through which API: it ends up in every change event's header."""

    user_id: str
    client: str | None = None  # from ``Sforce-Call-Options: client=...``
    api: str = "rest"
    api_version: str = "59.0"

    @property
    def change_origin(self) -> str:
        origin = f"com/salesforce/api/{self.api}/{self.api_version}"
        return f"{origin};client={self.client}" if self.client else origin


@dataclass
class Change:
    """One record's committed change within a transaction, as CDC will describe it."""

    obj: ObjectSpec
    record_id: str
    change_type: str
    record: dict[str, Any]
    changed: list[str] = field(default_factory=list)
    nulled: list[str] = field(default_factory=list)


# Turns one committed transaction's changes into outbox rows (topic, key, value).
EventSink = Callable[
    [list[Change], CallContext, datetime, "Transaction"], list[tuple[str, bytes, bytes]]
]


class OrgStore:
    """All record state. One connection, serialised by a lock: simple and plenty fast here."""

    def __init__(self, path: Path, schema: Schema) -> None:
        self.path = path
        self.schema = schema
        self.lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.event_sink: EventSink | None = None
        self._create_tables()

    # ------------------------------------------------------------------ schema and meta

    def _create_tables(self) -> None:
        c = self.conn
        c.execute("CREATE TABLE IF NOT EXISTS _meta (key TEXT PRIMARY KEY, value TEXT)")
        c.execute(
            "CREATE TABLE IF NOT EXISTS _outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL)"
        )
        c.execute(
            "CREATE TABLE IF NOT EXISTS _sessions (token TEXT PRIMARY KEY, user_id TEXT, "
            "expires_at REAL)"
        )
        for obj in self.schema.objects:
            cols = [f"{q(f.name)} {SQL_TYPES.get(f.type, 'TEXT')}" for f in obj.stored_fields]
            cols[0] += " PRIMARY KEY"
            c.execute(f"CREATE TABLE IF NOT EXISTS {q(obj.name)} ({', '.join(cols)})")
            have = {row[1] for row in c.execute(f"PRAGMA table_info({q(obj.name)})")}
            for f in obj.stored_fields:
                if f.name not in have:  # a custom field added to the configuration later
                    c.execute(
                        f"ALTER TABLE {q(obj.name)} ADD COLUMN {q(f.name)} "
                        f"{SQL_TYPES.get(f.type, 'TEXT')}"
                    )
            for f in obj.stored_fields:
                if f.unique or f.external_id:
                    unique = "UNIQUE " if f.unique else ""
                    index = q(f"ix_{obj.name}_{f.name}")
                    c.execute(
                        f"CREATE {unique}INDEX IF NOT EXISTS {index} "
                        f"ON {q(obj.name)} ({q(f.name)} COLLATE NOCASE)"
                    )
            c.execute(
                f"CREATE INDEX IF NOT EXISTS {q(f'ix_{obj.name}_modstamp')} "
                f"ON {q(obj.name)} (SystemModstamp)"
            )
        if self.meta("org_id") is None:
            self.set_meta("org_id", make_id(ORG_ID_PREFIX, 1, pod=POD))
            self.set_meta("user_id", make_id(USER_PREFIX, 1, pod=POD))

    def meta(self, key: str) -> str | None:
        with self.lock:
            row = self.conn.execute("SELECT value FROM _meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.lock:
            self.conn.execute(
                "INSERT INTO _meta VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def next_counter(self, key: str, n: int = 1) -> int:
        """Reserves ``n`` numbers of a persistent counter; returns the first."""
        with self.lock:
            row = self.conn.execute(
                "INSERT INTO _meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = CAST(value AS INTEGER) + ? RETURNING value",
                (key, str(n), n),
            ).fetchone()
        return int(row[0]) - n + 1

    @property
    def org_id(self) -> str:
        return self.meta("org_id")  # type: ignore[return-value]

    @property
    def user_id(self) -> str:
        return self.meta("user_id")  # type: ignore[return-value]

    def object(self, name: str) -> ObjectSpec:
        obj = self.schema.get(name)
        if obj is None:
            raise ApiError("NOT_FOUND", f"The requested resource does not exist: {name}")
        return obj

    def object_of_id(self, record_id: str) -> ObjectSpec | None:
        return self.schema.by_prefix(record_id[:3])

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self, ctx: CallContext) -> Iterator[Transaction]:
        """One API call's changes: committed with their outbox events, or not at all."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(self, ctx, now_utc())
            try:
                yield tx
                rows = list(tx.published)
                if tx.changes and self.event_sink is not None:
                    rows += self.event_sink(tx.changes, ctx, tx.now, tx)
                self.conn.executemany(
                    "INSERT INTO _outbox (topic, key, value) VALUES (?, ?, ?)", rows
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def get(self, obj: ObjectSpec, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            cur = self.conn.execute(f"SELECT * FROM {q(obj.name)} WHERE Id = ?", (record_id,))
            row = cur.fetchone()
            names = [d[0] for d in cur.description]
        return dict(zip(names, row, strict=True)) if row else None

    # ------------------------------------------------------------------ outbox

    def outbox_batch(self, limit: int) -> list[tuple[int, str, bytes, bytes]]:
        return self.read(
            "SELECT seq, topic, key, value FROM _outbox ORDER BY seq LIMIT ?", (limit,)
        )

    def outbox_done(self, last_seq: int) -> None:
        with self.lock:
            self.conn.execute("DELETE FROM _outbox WHERE seq <= ?", (last_seq,))

    def outbox_size(self) -> int:
        return self.read("SELECT count(*) FROM _outbox")[0][0]


class Transaction:
    """The record operations of one call. Validation errors raise ``ApiError``."""

    def __init__(self, store: OrgStore, ctx: CallContext, now: datetime) -> None:
        self.store = store
        self.ctx = ctx
        self.now = now
        self.stamp = format_datetime(now)
        self.changes: list[Change] = []
        self.published: list[tuple[str, bytes, bytes]] = []  # platform events, sent as given
        self._savepoints = 0

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """One record of a non-atomic batch: its failure undoes only its own writes."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        mark = len(self.changes)
        self.store.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
            self.store.conn.execute(f"RELEASE {name}")
        except BaseException:
            self.store.conn.execute(f"ROLLBACK TO {name}")
            self.store.conn.execute(f"RELEASE {name}")
            del self.changes[mark:]
            raise

    # ---------------------------------------------------------------- helpers

    def _fields(self, obj: ObjectSpec, values: Mapping[str, Any], creating: bool) -> dict[str, Any]:
        """Validates request fields (names, write access, types) into stored values."""
        out: dict[str, Any] = {}
        bad_access: list[str] = []
        for name, value in values.items():
            if name == "attributes":
                continue
            spec = obj.field(name)
            if spec is None:
                raise ApiError(
                    "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}"
                )
            if not (spec.createable if creating else spec.updateable):
                if name.lower() == "id" and not creating:
                    continue
                bad_access.append(spec.name)
                continue
            out[spec.name] = to_storage(obj, spec, value, self.store.schema)
        if bad_access:
            verb = "create" if creating else "update"
            raise ApiError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to {verb} fields: {', '.join(bad_access)}. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                bad_access,
            )
        return out

    def _derive(self, obj: ObjectSpec, record: dict[str, Any]) -> None:
        """Fields Salesforce computes: Contact's Name from its parts."""
        if obj.name == "Contact":
            parts = [record.get("FirstName"), record.get("LastName")]
            record["Name"] = " ".join(p for p in parts if p) or None

    def _check_required(self, obj: ObjectSpec, record: Mapping[str, Any]) -> None:
        missing = [f.name for f in obj.stored_fields if f.required and record.get(f.name) is None]
        if missing:
            raise ApiError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )  # fmt: skip

    def _check_unique(self, obj: ObjectSpec, record: Mapping[str, Any]) -> None:
        for f in obj.stored_fields:
            if not f.unique or record.get(f.name) is None:
                continue
            rows = self.store.conn.execute(
                f"SELECT Id FROM {q(obj.name)} WHERE {q(f.name)} = ? COLLATE NOCASE AND Id != ?",
                (record[f.name], record["Id"]),
            ).fetchall()
            if rows:
                raise ApiError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: "
                    f"{rows[0][0]}",
                    [f.name],
                )

    def _write(self, obj: ObjectSpec, record: dict[str, Any], insert: bool) -> None:
        names = [f.name for f in obj.stored_fields]
        values = [record.get(n) for n in names]
        if insert:
            self.store.conn.execute(
                f"INSERT INTO {q(obj.name)} ({', '.join(map(q, names))}) "
                f"VALUES ({', '.join('?' * len(names))})",
                values,
            )
        else:
            sets = ", ".join(f"{q(n)} = ?" for n in names[1:])
            self.store.conn.execute(
                f"UPDATE {q(obj.name)} SET {sets} WHERE Id = ?", [*values[1:], record["Id"]]
            )

    def _load(self, obj: ObjectSpec, record_id: str, *, deleted_ok: bool = False) -> dict[str, Any]:
        rid = normalise_id(record_id)
        record = self.store.get(obj, rid) if rid and rid[:3] == obj.key_prefix else None
        if record is None:
            raise ApiError("NOT_FOUND", "The requested resource does not exist")
        if record["IsDeleted"] and not deleted_ok:
            raise ApiError("ENTITY_IS_DELETED", "entity is deleted", status=404)
        return record

    # ---------------------------------------------------------------- operations

    def create(self, obj: ObjectSpec, values: Mapping[str, Any]) -> str:
        fields = self._fields(obj, values, creating=True)
        number = self.store.next_counter(f"id:{obj.key_prefix}")
        record: dict[str, Any] = {f.name: f.default for f in obj.stored_fields}
        record.update(
            {"OwnerId": self.ctx.user_id} if obj.field("OwnerId") else {},
        )
        record.update(fields)
        record.update(
            Id=make_id(obj.key_prefix, number, pod=POD),
            IsDeleted=0,
            CreatedDate=self.stamp,
            CreatedById=self.ctx.user_id,
            LastModifiedDate=self.stamp,
            LastModifiedById=self.ctx.user_id,
            SystemModstamp=self.stamp,
        )
        for f in obj.stored_fields:
            if f.type == "boolean" and record.get(f.name) is None:
                record[f.name] = 0
        self._derive(obj, record)
        self._check_required(obj, record)
        self._check_unique(obj, record)
        self._write(obj, record, insert=True)
        self.changes.append(Change(obj, record["Id"], "CREATE", record))
        return record["Id"]

    def update(
        self,
        obj: ObjectSpec,
        record_id: str,
        values: Mapping[str, Any],
        if_unmodified_since: datetime | None = None,
    ) -> str:
        before = self._load(obj, record_id)
        if if_unmodified_since is not None and parse_datetime(before["LastModifiedDate"]) > (
            if_unmodified_since
        ):
            raise ApiError(
                "PRECONDITION_FAILED",
                "The requested resource has been modified since the date in the "
                "If-Unmodified-Since header",
            )
        fields = self._fields(obj, values, creating=False)
        after = {**before, **fields}
        after.update(
            LastModifiedDate=self.stamp, LastModifiedById=self.ctx.user_id,
            SystemModstamp=self.stamp,
        )  # fmt: skip
        self._derive(obj, after)
        self._check_required(obj, after)
        self._check_unique(obj, after)
        self._write(obj, after, insert=False)
        changed = [
            n for n in after
            if n not in ("SystemModstamp",) and after[n] != before[n] and not (
                obj.name == "Contact" and n == "Name"
            )
        ]  # fmt: skip
        nulled = [n for n in changed if after[n] is None]
        self.changes.append(Change(obj, after["Id"], "UPDATE", after, changed, nulled))
        return after["Id"]

    def delete(self, obj: ObjectSpec, record_id: str) -> str:
        record = self._load(obj, record_id)
        # Deleting and undeleting move SystemModstamp only: LastModifiedDate stays the last edit.
        record.update(IsDeleted=1, SystemModstamp=self.stamp)
        self._write(obj, record, insert=False)
        self.changes.append(Change(obj, record["Id"], "DELETE", record))
        return record["Id"]

    def undelete(self, obj: ObjectSpec, record_id: str) -> str:
        record = self._load(obj, record_id, deleted_ok=True)
        if not record["IsDeleted"]:
            raise ApiError("UNDELETE_FAILED", "Entity is not in the recycle bin")
        record.update(IsDeleted=0, SystemModstamp=self.stamp)
        self._check_unique(obj, record)
        self._write(obj, record, insert=False)
        self.changes.append(Change(obj, record["Id"], "UNDELETE", record))
        return record["Id"]

    def upsert(
        self, obj: ObjectSpec, spec: FieldSpec, key: Any, values: Mapping[str, Any]
    ) -> tuple[str, bool]:
        """Updates the one live record whose external Id ``spec`` equals ``key``, or creates it
        with that key; returns (Id, created). Several matches refuse, as Salesforce does."""
        matches = [key] if spec.name == "Id" else self.find_by(obj, spec, key)
        if len(matches) > 1:
            raise ApiError(
                "DUPLICATE_EXTERNAL_ID",
                f"{spec.label}: more than one record found for external id field: "
                f"[{', '.join(matches)}]",
                [spec.name], status=300,
            )  # fmt: skip
        if matches:
            return self.update(obj, matches[0], values), False
        fields = {k: v for k, v in values.items() if v is not None}
        if spec.name != "Id":
            fields[spec.name] = key
        return self.create(obj, fields), True

    def find_by(self, obj: ObjectSpec, spec: FieldSpec, value: Any) -> list[str]:
        """Live records whose external Id equals ``value`` (case-insensitive, as Salesforce)."""
        stored = to_storage(obj, spec, value, self.store.schema)
        rows = self.store.conn.execute(
            f"SELECT Id FROM {q(obj.name)} WHERE {q(spec.name)} = ? COLLATE NOCASE "
            "AND IsDeleted = 0",
            (stored,),
        ).fetchall()
        return [r[0] for r in rows]


def utc_from_header(value: str) -> datetime:
    """``If-Unmodified-Since`` comes in HTTP date form."""
    from email.utils import parsedate_to_datetime

    moment = parsedate_to_datetime(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
