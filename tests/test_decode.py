"""The decoding rules, on the reference samples, in a real (in-memory) DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest

from sf_sync import decode
from sf_sync.config import load_settings
from sf_sync.decode import RAW_SCHEMA, decode_batch

#: Copies of the reference samples (shared/reference/samples), kept with the tests.
SAMPLES = Path(__file__).resolve().parent / "fixtures" / "samples"
ACCOUNT = "salesforce.cdc.Account"
CONTACT = "salesforce.cdc.Contact"
PE = "salesforce.pe.Customer_Change__e"
WEB = "webapp.changes"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def raw(*messages: tuple[str, bytes | None]) -> pa.Table:
    n = len(messages)
    return pa.table(
        {
            "topic": [t for t, _ in messages],
            "kafka_partition": [0] * n,
            "kafka_offset": list(range(n)),
            "kafka_timestamp": [1_714_156_685_000] * n,
            "key": [None] * n,
            "value": [v for _, v in messages],
        },
        schema=RAW_SCHEMA,
    )


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    return c


def changes(con, *messages) -> list[dict]:
    """Decoded (event, record) rows, each with the ``field_values`` its event sets."""
    decode_batch(con, raw(*messages), load_settings())
    rel = con.sql("SELECT * FROM batch_changes ORDER BY kafka_offset, record_id")
    rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    for row in rows:
        row["field_values"] = dict(
            con.execute(
                "SELECT field, value FROM batch_fields WHERE ev = ?", [row["ev"]]
            ).fetchall()
        )
    return rows


def test_create_sets_every_valued_field_with_flat_compound_names(con) -> None:
    [row] = changes(con, (ACCOUNT, sample("cometd-account-create.json")))
    values = dict(row["field_values"])
    assert row["change_type"] == "CREATE"
    assert (
        values["BillingCity"] == "San Francisco" and values["BillingStreet"] == "415 Mission Street"
    )
    assert "Type" not in values and "ShippingCity" not in values  # nulls are not values
    assert "BillingAddress" not in values and "ChangeEventHeader" not in values
    assert row["event_key"] == "Account:00006bec-ce66-0611-9018-30a98446c9f2:1"


def test_a_compound_part_meets_a_flat_field_of_the_same_name(con) -> None:
    # Both the flat BillingCity (null) and BillingAddress.City arrive: the value wins, once.
    doc = orjson.loads(sample("cometd-account-create.json"))
    doc["payload"]["BillingCity"] = None
    doc["payload"]["BillingStreet"] = "1 Other Street"
    [row] = changes(con, (ACCOUNT, orjson.dumps(doc)))
    assert row["field_values"]["BillingCity"] == "San Francisco"
    assert row["field_values"]["BillingStreet"] == "1 Other Street"  # the smaller value, as before
    (n,) = con.execute(
        "SELECT count(*) FROM batch_flat WHERE ev = ? AND field = 'BillingCity'", [row["ev"]]
    ).fetchone()
    assert n == 1


def test_update_applies_only_changed_and_nulled_fields(con) -> None:
    [row] = changes(con, (ACCOUNT, sample("cometd-account-update.json")))
    # Industry is in the body (enriched) but not in changedFields: not a change.
    assert dict(row["field_values"]) == {
        "BillingCity": "Riga",
        "BillingPostalCode": "LV-1010",
        "Phone": None,
        "LastModifiedDate": "2024-04-26T23:06:35.000Z",
    }
    assert row["change_origin"].endswith("client=webapp-sync")


def test_connector_update_matches_cometd_update(con) -> None:
    [cometd] = changes(con, (ACCOUNT, sample("cometd-account-update.json")))
    [connector] = changes(
        con, (CONTACT.replace("Contact", "Contact"), sample("confluent-account-update.json"))
    )
    assert dict(connector["field_values"]) == dict(cometd["field_values"])


def test_connector_with_schema_envelope(con) -> None:
    body = orjson.loads(sample("confluent-contact-create.json"))
    wrapped = orjson.dumps({"schema": {"type": "struct"}, "payload": body})
    plain, enveloped = changes(con, (CONTACT, orjson.dumps(body)), (CONTACT, wrapped))
    assert dict(plain["field_values"]) == dict(enveloped["field_values"])
    assert dict(plain["field_values"])["CreatedDate"] == "2020-07-30T13:33:45.000Z"


def test_several_record_ids_change_every_record(con) -> None:
    doc = orjson.loads(sample("cometd-account-update.json"))
    doc["payload"]["ChangeEventHeader"]["recordIds"] = ["0015f00002JUXA8AAP", "0015f00002JUXB2AAP"]
    rows = changes(con, (ACCOUNT, orjson.dumps(doc)))
    assert [r["record_id"] for r in rows] == ["0015f00002JUXA8AAP", "0015f00002JUXB2AAP"]
    assert dict(rows[0]["field_values"]) == dict(rows[1]["field_values"])


def test_gaps_and_overflow_become_gap_rows(con) -> None:
    decode_batch(
        con,
        raw(
            (ACCOUNT, sample("cometd-account-gap.json")),
            (ACCOUNT, sample("cometd-account-overflow.json")),
        ),
        load_settings(),
    )
    gaps = con.execute("SELECT gap_type, record_id FROM batch_gaps ORDER BY ALL").fetchall()
    assert gaps == [
        ("GAP_OVERFLOW", None),
        ("GAP_UPDATE", "0015f00002JUXA8AAP"),
        ("GAP_UPDATE", "0015f00002JUXB2AAP"),
    ]
    kinds = con.execute("SELECT DISTINCT change_type FROM batch_changes").fetchall()
    assert kinds == [("GAP_UPDATE",)]  # overflow has no record to attach a change to


def test_platform_event_through_its_mapping(con) -> None:
    [row] = changes(con, (PE, sample("platform-event-customer-change.json")))
    assert row["object"] == "Account" and row["record_id"] == "0015f00002JUXA8AAP"
    assert dict(row["field_values"]) == {"BillingCity": "Riga", "BillingPostalCode": "LV-1050"}
    assert row["event_key"] == "5a2e8f4c-93b1-4f5e-9d2a-7c1b0e6f3a11"


def test_external_event_keeps_explicit_nulls(con) -> None:
    event = {
        "event_id": "e-1",
        "record_key": "W-9",
        "salesforce_id": "0015f00002JUXA8AAP",
        "object": "Account",
        "operation": "UPDATE",
        "changed_fields": {"Phone": None, "Name": "Acme"},
        "timestamp": 1714172795000,
        "origin": "webapp",
        "user": "ann",
    }
    [row] = changes(con, (WEB, orjson.dumps(event)))
    assert row["source"] == "webapp" and row["record_id"] == "W-9"
    assert dict(row["field_values"]) == {"Name": "Acme", "Phone": None}
    assert row["salesforce_id"] == "0015f00002JUXA8AAP"


def test_diff_fields_are_left_for_repair(con) -> None:
    doc = orjson.loads(sample("cometd-account-update.json"))
    header = doc["payload"]["ChangeEventHeader"]
    header["changedFields"].append("Description")
    header["diffFields"] = ["Description"]
    doc["payload"]["Description"] = "@@ -1 +1 @@\n-old\n+new"
    [row] = changes(con, (ACCOUNT, orjson.dumps(doc)))
    assert "Description" not in dict(row["field_values"])
    assert con.execute("SELECT gap_type, fields FROM batch_gaps").fetchall() == [
        ("DIFF_FIELDS", ["Description"])
    ]


def test_changed_field_missing_from_body_is_rejected(con) -> None:
    doc = orjson.loads(sample("cometd-account-update.json"))
    del doc["payload"]["BillingAddress"]
    assert changes(con, (ACCOUNT, orjson.dumps(doc))) == []
    [(error,)] = con.execute("SELECT error FROM batch_errors").fetchall()
    assert "BillingCity is missing from the body" in error


#: Makes the bulk SQL itself raise on a message whose changeOrigin is "POISON".
POISON_MACRO = (
    "CREATE OR REPLACE TEMP MACRO sf_opt_text(v) AS CASE WHEN CAST(v AS VARCHAR) = "
    "'\"POISON\"' THEN error('unforeseen') ELSE v IS NULL OR json_type(v) IN "
    "('VARCHAR', 'NULL') END;"
)


def test_unforeseen_sql_failure_is_isolated_by_bisection(con, monkeypatch) -> None:
    """A message that makes the bulk SQL raise is dead-lettered alone; the rest decode."""
    monkeypatch.setattr(decode, "_MACROS", decode._MACROS + POISON_MACRO)
    doc = orjson.loads(sample("cometd-account-update.json"))
    doc["payload"]["ChangeEventHeader"]["changeOrigin"] = "POISON"
    good = sample("cometd-account-create.json")
    batch = raw(*([(ACCOUNT, good)] * 5 + [(ACCOUNT, orjson.dumps(doc))] + [(ACCOUNT, good)] * 4))
    with pytest.raises(duckdb.Error):
        decode_batch(con, batch, load_settings())
    # SQL only: the columnar fast path would decode this message without the macro (the fast
    # path's own version of this test is in test_decode_columnar.py).
    assert decode.decode(con, batch, load_settings(), sql_only=True).isolated == 1
    assert con.execute("SELECT count(*) FROM batch_changes").fetchone() == (9,)
    [(offset, error)] = con.execute("SELECT kafka_offset, error FROM batch_errors").fetchall()
    assert offset == 5 and "unforeseen" in error


def test_a_wildcard_record_id_is_a_gap_not_a_record(con) -> None:
    doc = orjson.loads(sample("cometd-account-update.json"))
    doc["payload"]["ChangeEventHeader"]["recordIds"] = ["001*", "0015f00002JUXB2AAP"]
    rows = changes(con, (ACCOUNT, orjson.dumps(doc)))
    assert [r["record_id"] for r in rows] == ["0015f00002JUXB2AAP"]
    assert con.execute("SELECT gap_type, record_id FROM batch_gaps").fetchall() == [
        ("WILDCARD_IDS", "001*")
    ]
