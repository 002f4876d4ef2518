"""Change events as Salesforce plus a CDC source connector would put them on Kafka.

One committed transaction becomes one event per changed record, all sharing a
``transactionKey`` and numbered by ``sequenceNumber``, in the format of the object's stream:
CometD JSON as forwarded from the Streaming API, or the Confluent connector's JSON. Faults
(drops, gaps, overflow, duplicates) are applied here, as the event bus would suffer them.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime
from typing import Any

import orjson

from sf_sync.devorg.faults import FaultState
from sf_sync.devorg.metadata import FieldSpec, ObjectSpec
from sf_sync.devorg.settings import DevorgSettings
from sf_sync.devorg.store import CallContext, Change, Transaction
from sf_sync.devorg.values import datetime_to_epoch_ms, to_json

# Salesforce never sends these in change events.
NOT_IN_EVENTS = {"Id", "IsDeleted", "SystemModstamp"}

Row = tuple[str, bytes, bytes]


def schema_id(obj: ObjectSpec) -> str:
    """A stable stand-in for the event schema's id (changes when the fields change)."""
    digest = hashlib.sha256(",".join(obj.field_names).encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def dotted(obj: ObjectSpec, spec: FieldSpec) -> str:
    """``BillingCity`` -> ``BillingAddress.City``; ``FirstName`` -> ``Name.FirstName``."""
    compound = spec.compound_field_name
    if not compound:
        return spec.name
    part = (
        spec.name[len(compound) - len("Address") :] if compound.endswith("Address") else spec.name
    )
    return f"{compound}.{part}"


class EventBuilder:
    """The store's event sink: turns a transaction's changes into outbox rows."""

    def __init__(self, settings: DevorgSettings, faults: FaultState) -> None:
        self.settings = settings
        self.faults = faults

    def __call__(
        self, changes: list[Change], ctx: CallContext, now: datetime, tx: Transaction
    ) -> list[Row]:
        streamed = [c for c in changes if c.obj.name in self.settings.change_streams]
        if not streamed:
            return []
        faults = self.faults.faults
        limit = faults.overflow_after
        sent, overflowed = (streamed, []) if limit is None else (streamed[:limit], streamed[limit:])
        headers = [self._header(c, ctx, now) for c in sent]
        overflow_objects = list(dict.fromkeys(c.obj.name for c in overflowed))
        first_replay = tx.store.next_counter("replay_id", len(sent) + len(overflow_objects))
        commit_number = tx.store.next_counter("commit_number")
        key = str(uuid.uuid4())
        rows: list[Row] = []
        seq = 0
        for change, header in zip(sent, headers, strict=True):
            seq += 1
            header.update(transactionKey=key, sequenceNumber=seq, commitNumber=commit_number)
            replay = first_replay + seq - 1
            if self.faults.chance(faults.drop_events):
                continue
            if self.faults.chance(faults.gap_events):
                header["changeType"] = "GAP_" + header["changeType"]
                header["changedFields"], header["nulledFields"] = [], []
                row = self._row(change.obj, change.record_id, header, {}, replay)
            else:
                row = self._row(change.obj, change.record_id, header, self._body(change), replay)
            rows.append(row)
            if self.faults.chance(faults.duplicate_events):
                rows.append(row)
        for i, name in enumerate(overflow_objects):
            obj = next(c.obj for c in overflowed if c.obj.name == name)
            header = {
                "entityName": name, "recordIds": [], "changeType": "GAP_OVERFLOW",
                "changeOrigin": ctx.change_origin, "transactionKey": key,
                "sequenceNumber": seq + i + 1, "commitTimestamp": int(now.timestamp() * 1000),
                "commitNumber": commit_number, "commitUser": ctx.user_id,
                "changedFields": [], "nulledFields": [], "diffFields": [],
            }  # fmt: skip
            rows.append(self._row(obj, name, header, {}, first_replay + len(sent) + i))
        return rows

    def _header(self, change: Change, ctx: CallContext, now: datetime) -> dict[str, Any]:
        obj = change.obj
        return {
            "entityName": obj.name,
            "recordIds": [change.record_id],
            "changeType": change.change_type,
            "changeOrigin": ctx.change_origin,
            "commitTimestamp": int(now.timestamp() * 1000),
            "commitUser": ctx.user_id,
            "changedFields": [dotted(obj, obj.field(n)) for n in change.changed],  # type: ignore[arg-type]
            "nulledFields": [dotted(obj, obj.field(n)) for n in change.nulled],  # type: ignore[arg-type]
            "diffFields": [],
        }

    def _body(self, change: Change) -> dict[str, Any]:
        """Flat field -> stored value of what the event carries: every field of a CREATE or
        UNDELETE, the changed ones of an UPDATE, none of a DELETE."""
        obj = change.obj
        if change.change_type == "DELETE":
            return {}
        names = change.changed if change.change_type == "UPDATE" else obj.field_names
        return {
            n: change.record.get(n)
            for n in names
            if n not in NOT_IN_EVENTS
            and obj.field(n).type != "address"  # type: ignore[union-attr]
            and not (obj.name == "Contact" and n == "Name")
        }

    def _row(
        self, obj: ObjectSpec, key: str, header: dict[str, Any], body: dict[str, Any], replay: int
    ) -> Row:
        stream = self.settings.change_streams[obj.name]
        if stream.format == "cometd":
            value = self._cometd(obj, header, body, replay)
        else:
            value = self._connector(obj, header, body, replay)
        return stream.topic, key.encode(), orjson.dumps(value)

    def _cometd(
        self, obj: ObjectSpec, header: dict[str, Any], body: dict[str, Any], replay: int
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"ChangeEventHeader": header}
        for name, stored in body.items():
            spec = obj.field(name)
            assert spec is not None
            value = to_json(spec, stored)
            if spec.type == "datetime" and value is not None:
                value = value.replace("+0000", "Z")
            if spec.compound_field_name:
                part = dotted(obj, spec).split(".", 1)[1]
                payload.setdefault(spec.compound_field_name, {})[part] = value
            else:
                payload[name] = value
        return {"schema": schema_id(obj), "payload": payload, "event": {"replayId": replay}}

    def _connector(
        self, obj: ObjectSpec, header: dict[str, Any], body: dict[str, Any], replay: int
    ) -> dict[str, Any]:
        """Every field present (null where the event carries nothing), flat and compound."""
        record_id = header["recordIds"][0] if header["recordIds"] else None
        value: dict[str, Any] = {
            "Id": record_id,
            "ReplayId": str(replay),
            "ChangeEventHeader": header,
        }
        compounds: dict[str, dict[str, Any]] = {}
        for spec in obj.fields:
            if spec.name in NOT_IN_EVENTS or spec.type == "address":
                continue
            stored = body.get(spec.name)
            v = to_json(spec, stored)
            if spec.type == "datetime" and v is not None:
                v = datetime_to_epoch_ms(v)
            if spec.compound_field_name:
                part = dotted(obj, spec).split(".", 1)[1]
                compounds.setdefault(spec.compound_field_name, {})[part] = v
            if not (obj.name == "Contact" and spec.name == "Name"):
                value[spec.name] = v
        for compound, parts in compounds.items():
            value[compound] = parts if any(p is not None for p in parts.values()) else None
        value["_ObjectType"] = f"{obj.name.removesuffix('__c')}ChangeEvent"
        value["_EventType"] = schema_id(obj)
        if self.settings.connector_schemas:
            name = f"io.confluent.salesforce.{value['_ObjectType']}"
            return {"schema": {"type": "struct", "name": name}, "payload": value}
        return value


def platform_event_row(
    settings: DevorgSettings, event: str, fields: dict[str, Any], ctx: CallContext,
    created: str, replay: int,
) -> Row:  # fmt: skip
    """A published platform event as the Streaming API delivers it."""
    stream = settings.platform_event_streams[event]
    event_uuid = str(uuid.uuid4())
    payload = {"CreatedDate": created.replace("+0000", "Z"), "CreatedById": ctx.user_id, **fields}
    value = {
        "schema": hashlib.sha256(event.encode()).hexdigest()[:22],
        "payload": payload,
        "event": {"replayId": replay, "EventUuid": event_uuid},
    }
    return stream.topic, event_uuid.encode(), orjson.dumps(value)
