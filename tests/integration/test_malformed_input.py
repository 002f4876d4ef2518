"""Bad input through the real broker: each kind lands in dead_letters with its own reason and
its exact bytes, and the good messages around it are processed."""

from __future__ import annotations

import copy

import orjson
import pytest

from sf_sync import synth
from tests.conftest import Project
from tests.integration.history_compare import assert_same_history, stored_history

UPDATE = orjson.loads(
    synth.render_cometd(synth.generate(seed=1, records=1, events=2)[1], replay_id=7)
)


def _cdc(mutate) -> bytes:
    doc = copy.deepcopy(UPDATE)
    mutate(doc)
    return orjson.dumps(doc)


def _hdr(**changes):
    def mutate(doc):
        for key, value in changes.items():
            if value is _DROP:
                doc["payload"]["ChangeEventHeader"].pop(key)
            else:
                doc["payload"]["ChangeEventHeader"][key] = value

    return mutate


_DROP = object()

# (kind, raw value, a phrase the error must contain)
CDC_CASES: list[tuple[str, bytes | None, str]] = [
    ("not json", b"{this is not json", "value is not JSON"),
    ("truncated json", _cdc(lambda d: None)[:-7], "value is not JSON"),
    ("invalid utf-8", b'{"payload": "\xff\xfe"}', "not valid UTF-8"),
    ("empty value", b"", "empty value"),
    ("null value", None, "null value (tombstone)"),
    ("huge value", b'{"x": "' + b"a" * 1_100_000 + b'"}', "exceeds the limit"),
    ("json array", b"[1, 2, 3]", "not an object (ARRAY)"),
    ("json string", b'"CREATE"', "not an object (VARCHAR)"),
    ("no payload", b'{"schema": "x", "event": {"replayId": 1}}', "missing ChangeEventHeader"),
    (
        "missing header",
        _cdc(lambda d: d["payload"].pop("ChangeEventHeader")),
        "missing ChangeEventHeader",
    ),
    (
        "header not object",
        _cdc(lambda d: d["payload"].update(ChangeEventHeader=[1])),
        "ChangeEventHeader is not an object",
    ),
    ("missing entityName", _cdc(_hdr(entityName=_DROP)), "header.entityName missing"),
    ("unknown object", _cdc(_hdr(entityName="Opportunity")), "unknown object Opportunity"),
    ("unknown change type", _cdc(_hdr(changeType="MERGE")), "unknown change type MERGE"),
    ("change type not a string", _cdc(_hdr(changeType=3)), "header.changeType missing or not"),
    ("recordIds not a list", _cdc(_hdr(recordIds="001")), "recordIds missing or not a list"),
    ("recordIds of numbers", _cdc(_hdr(recordIds=[1, 2])), "recordIds missing or not a list"),
    ("recordIds empty", _cdc(_hdr(recordIds=[])), "recordIds is empty"),
    ("malformed record id", _cdc(_hdr(recordIds=["not-an-id!"])), "malformed Salesforce Id"),
    (
        "timestamp as text",
        _cdc(_hdr(commitTimestamp="2024-04-26")),
        "commitTimestamp missing or not an integer",
    ),
    ("timestamp out of range", _cdc(_hdr(commitTimestamp=12)), "is out of range"),
    (
        "timestamp as float",
        _cdc(_hdr(commitTimestamp=1.5e12)),
        "commitTimestamp missing or not an integer",
    ),
    ("missing transactionKey", _cdc(_hdr(transactionKey=_DROP)), "transactionKey missing"),
    ("sequenceNumber text", _cdc(_hdr(sequenceNumber="one")), "sequenceNumber missing"),
    ("changeOrigin number", _cdc(_hdr(changeOrigin=5)), "changeOrigin is not a string"),
    ("commitUser object", _cdc(_hdr(commitUser={"Id": 1})), "commitUser is not a string"),
    (
        "changedFields not list",
        _cdc(_hdr(changedFields="Phone")),
        "changedFields is not a list of strings",
    ),
    ("nulledFields not list", _cdc(_hdr(nulledFields=7)), "nulledFields is not a list"),
    (
        "malformed field name",
        _cdc(_hdr(changedFields=["Phone; DROP TABLE x"])),
        "malformed field name",
    ),
    (
        "update without fields",
        _cdc(_hdr(changedFields=[], nulledFields=[])),
        "UPDATE event lists no changed fields",
    ),
]

PE_OK = {
    "schema": "s",
    "event": {"replayId": 3, "EventUuid": "3f1c"},
    "payload": {
        "CreatedDate": "2024-04-27T09:15:02.000Z",
        "CreatedById": "0055f000005mc66AAA",
        "Record_Id__c": "0015f00002JUXA8AAP",
        "Object__c": "Account",
        "Change_Type__c": "UPDATE",
        "Changed_Fields__c": "Phone",
        "Payload__c": '{"Phone": "+1 555"}',
    },
}


def _pe(**changes) -> bytes:
    doc = copy.deepcopy(PE_OK)
    doc["payload"].update(changes)
    return orjson.dumps(doc)


PE_CASES = [
    ("pe payload not json", _pe(Payload__c="{oops"), "Payload__c is not a JSON object"),
    ("pe bad created date", _pe(CreatedDate="yesterday"), "CreatedDate missing or not"),
    ("pe bad record id", _pe(Record_Id__c="x"), "Record_Id__c is not a Salesforce Id"),
    ("pe unknown change type", _pe(Change_Type__c="UPSERT"), "unknown change type UPSERT"),
    ("pe no uuid", orjson.dumps({**PE_OK, "event": {"replayId": 4}}), "lacks event.EventUuid"),
]

WEB_OK = {
    "event_id": "e1",
    "record_key": "W-1",
    "salesforce_id": None,
    "object": "Account",
    "operation": "UPDATE",
    "changed_fields": {"Phone": "1"},
    "timestamp": "2024-04-27T09:15:02.000Z",
    "origin": "webapp",
    "user": "u",
}

WEB_CASES = [
    ("web no record key", orjson.dumps({**WEB_OK, "record_key": None}), "record_key missing"),
    (
        "web bad timestamp",
        orjson.dumps({**WEB_OK, "timestamp": "27/04/2024"}),
        "timestamp missing, malformed",
    ),
    (
        "web bad operation",
        orjson.dumps({**WEB_OK, "operation": "PATCH"}),
        "unknown operation PATCH",
    ),
    (
        "web fields not object",
        orjson.dumps({**WEB_OK, "changed_fields": ["Phone"]}),
        "changed_fields is not an object",
    ),
]


def test_at_least_twenty_kinds_are_covered() -> None:
    assert len(CDC_CASES) + len(PE_CASES) + len(WEB_CASES) >= 20


@pytest.mark.parametrize("topic_name,cases", [("cdc.Account", CDC_CASES)])
def test_bad_messages_are_dead_lettered_and_good_ones_flow(
    project: Project, topic_name: str, cases: list
) -> None:
    good = list(synth.messages(synth.generate(seed=2, records=10, events=len(cases) * 3)))
    # Interleave: good, bad, good, bad... all in one partition so "behind it" is literal.
    stream: list[tuple[bytes | None, bytes | None, int]] = []
    for i, (key, value) in enumerate(good):
        stream.append((key, value, 0))
        if i < len(cases):
            stream.append((b"bad", cases[i][1], 0))
    project.produce(project.topic(topic_name), stream)

    project.ingest()

    con = project.history()
    letters = con.execute(
        "SELECT kafka_offset, error, raw_value FROM dead_letters ORDER BY kafka_offset"
    ).fetchall()
    assert len(letters) == len(cases)
    for (kind, raw, phrase), (_off, error, stored) in zip(cases, letters, strict=True):
        assert phrase in error, f"{kind}: {error!r} lacks {phrase!r}"
        assert stored == raw, f"{kind}: raw bytes not kept exactly"
    events = synth.generate(seed=2, records=10, events=len(cases) * 3)
    assert_same_history(stored_history(con), synth.expected_history(events))


def test_platform_event_and_external_errors(project: Project) -> None:
    pe_topic = project.topic("pe.Customer_Change__e")
    web_topic = project.topic("webapp.changes")
    project.produce(pe_topic, [(None, v, 0) for _, v, _ in PE_CASES] + [(None, _pe(), 0)])
    project.produce(
        web_topic, [(None, v, 0) for _, v, _ in WEB_CASES] + [(None, orjson.dumps(WEB_OK), 0)]
    )

    project.ingest()

    con = project.history()
    for topic, cases in ((pe_topic, PE_CASES), (web_topic, WEB_CASES)):
        errors = [
            e
            for (e,) in con.execute(
                "SELECT error FROM dead_letters WHERE topic = ? ORDER BY kafka_offset", [topic]
            ).fetchall()
        ]
        assert len(errors) == len(cases)
        for (kind, _raw, phrase), error in zip(cases, errors, strict=True):
            assert phrase in error, f"{kind}: {error!r} lacks {phrase!r}"
    # The good platform event and the good external event were applied.
    assert con.execute(
        "SELECT new_value FROM field_history WHERE event_key = '3f1c'"
    ).fetchall() == [("+1 555",)]
    assert con.execute("SELECT record_key, Phone FROM webapp_account_current").fetchall() == [
        ("W-1", "1")
    ]
