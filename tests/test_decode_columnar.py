"""The columnar fast path gives exactly the SQL decoder's tables, and really takes the messages.

Every test decodes a batch twice on one connection, SQL only (the reference) and then with the
fast path, and compares the temp tables with EXCEPT ALL both ways; ``ev`` numbers differ
between the two, so rows are matched on (topic, kafka_partition, kafka_offset) instead.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest

from sf_sync import decode, decode_columnar, synth
from sf_sync.config import load_settings
from sf_sync.decode import RAW_SCHEMA, DecodeReport
from tests.integration.test_malformed_input import CDC_CASES, PE_CASES, WEB_CASES
from tests.test_decode import POISON_MACRO

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "samples"
ACCOUNT = "salesforce.cdc.Account"  # cometd
CONTACT = "salesforce.cdc.Contact"  # confluent
PE = "salesforce.pe.Customer_Change__e"
WEB = "webapp.changes"

#: Each temp table as compared: ``ev`` left out or replaced by where the message was read;
#: ``top`` and ``body`` are not kept by the fast path (NULL there).
TABLES = {
    "batch_raw": "SELECT * EXCLUDE (top) FROM batch_raw",
    "batch_decoded": "SELECT * EXCLUDE (ev, body) FROM batch_decoded",
    "batch_errors": "SELECT * FROM batch_errors",
    "batch_changes": "SELECT * EXCLUDE (ev) FROM batch_changes",
    "batch_gaps": "SELECT * FROM batch_gaps",
    "batch_fields": "SELECT d.topic, d.kafka_partition, d.kafka_offset, f.field, f.value"
    " FROM batch_fields f JOIN batch_decoded d USING (ev)",
}


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    return c


def raw(messages: list[tuple[str, bytes | None]], partitions: int = 3) -> pa.Table:
    n = len(messages)
    return pa.table(
        {
            "topic": [t for t, _ in messages],
            "kafka_partition": [i % partitions for i in range(n)],
            "kafka_offset": [100 + i for i in range(n)],
            "kafka_timestamp": [1_714_156_685_000 + i for i in range(n)],
            "key": [None] * n,
            "value": [v for _, v in messages],
        },
        schema=RAW_SCHEMA,
    )


def decode_both(con: duckdb.DuckDBPyConnection, batch: pa.Table) -> DecodeReport:
    """Decodes ``batch`` SQL only, then with the fast path; asserts equal tables."""
    settings = load_settings()
    assert decode.decode(con, batch, settings, sql_only=True).fast == 0
    for name, query in TABLES.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE ref_{name} AS {query}")
    types = {name: con.execute(f"DESCRIBE {name}").fetchall() for name in TABLES}
    report = decode.decode(con, batch, settings)
    assert {name: con.execute(f"DESCRIBE {name}").fetchall() for name in TABLES} == types
    for name, query in TABLES.items():
        only_sql = con.sql(f"SELECT * FROM ref_{name} EXCEPT ALL ({query})").fetchall()
        only_fast = con.sql(f"({query}) EXCEPT ALL SELECT * FROM ref_{name}").fetchall()
        assert not only_sql and not only_fast, (name, only_sql[:3], only_fast[:3])
    (rows, distinct, raw_rows) = con.execute(
        "SELECT count(*), count(DISTINCT ev), (SELECT count(*) FROM batch_raw) FROM batch_decoded"
    ).fetchone()
    assert rows == distinct and raw_rows == batch.num_rows
    for name in ("batch_fields", "batch_changes"):
        (orphans,) = con.execute(
            f"SELECT count(*) FROM {name} ANTI JOIN batch_decoded USING (ev)"
        ).fetchone()
        assert orphans == 0, name
    return report


def compact(name: str) -> bytes:
    """A sample as one line (the files are pretty-printed, which the fast path leaves alone)."""
    return orjson.dumps(json.loads((SAMPLES / name).read_bytes()))


def doc(name: str) -> dict:
    return json.loads((SAMPLES / name).read_bytes())


def synth_messages(seed: int, fmt: str, events: int = 300) -> list[bytes]:
    stream = synth.generate(seed, records=max(1, events // 10), events=events)
    return [v for _, v in synth.messages(stream, fmt)]


# ---- clean streams: all fast, all equal ------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "fmt,topic",
    [("cometd", ACCOUNT), ("confluent", CONTACT), ("confluent-envelope", CONTACT)],
)
def test_synthetic_streams_are_decoded_fast_and_identically(con, seed, fmt, topic) -> None:
    values = synth_messages(seed, fmt)
    report = decode_both(con, raw([(topic, v) for v in values]))
    assert report == DecodeReport(fast=len(values), isolated=0)


def test_both_connector_shapes_in_one_topic(con) -> None:
    plain = synth_messages(4, "confluent", 100)
    enveloped = synth_messages(5, "confluent-envelope", 100)
    mixed = [v for pair in zip(plain, enveloped, strict=True) for v in pair]
    assert decode_both(con, raw([(CONTACT, v) for v in mixed])).fast == len(mixed)


def test_reference_samples(con) -> None:
    messages = [
        (ACCOUNT, compact("cometd-account-create.json")),
        (ACCOUNT, compact("cometd-account-update.json")),
        (ACCOUNT, compact("cometd-account-gap.json")),
        (ACCOUNT, compact("cometd-account-overflow.json")),
        (CONTACT, compact("confluent-account-update.json")),
        (CONTACT, compact("confluent-contact-create.json")),
        (PE, compact("platform-event-customer-change.json")),
    ]
    pretty = [(t, (SAMPLES / n).read_bytes()) for t, n in _SAMPLE_FILES]
    report = decode_both(con, raw(messages + pretty))
    assert report.fast == 6  # the CDC ones on one line; pretty-printed ones have newlines


_SAMPLE_FILES = [
    (ACCOUNT, "cometd-account-create.json"),
    (ACCOUNT, "cometd-account-update.json"),
    (ACCOUNT, "cometd-account-gap.json"),
    (CONTACT, "confluent-contact-create.json"),
]


# ---- bad and unusual messages mixed with good ones -----------------------------------------


def _update() -> dict:
    return orjson.loads(synth.render_cometd(synth.generate(1, records=1, events=2)[1], 7))


def _dumps(d: object) -> bytes:
    """Compact JSON; unlike orjson, takes integers beyond 64 bits and infinities."""
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()


def _cometd(mutate) -> bytes:
    d = _update()
    mutate(d)
    return _dumps(d)


def _header(**changes):
    def mutate(d: dict) -> None:
        d["payload"]["ChangeEventHeader"].update(changes)

    return mutate


def _body(**changes):
    def mutate(d: dict) -> None:
        d["payload"].update(changes)
        header = d["payload"]["ChangeEventHeader"]
        header["changedFields"] = sorted({*header["changedFields"], *changes})

    return mutate


def _sample(name: str, mutate) -> bytes:
    d = doc(name)
    mutate(d)
    return _dumps(d)


def _connector(mutate) -> bytes:
    d = doc("confluent-contact-create.json")
    mutate(d)
    return _dumps(d)


GOOD = orjson.dumps(_update())

#: (topic, value): what test_decode.py checks, and what could trip a columnar reader.
UNUSUAL: list[tuple[str, bytes | None]] = [
    # test_decode.py's cases
    (ACCOUNT, _sample("cometd-account-create.json", lambda d: d["payload"].update(
        BillingCity=None, BillingStreet="1 Other Street"))),
    (ACCOUNT, _sample("cometd-account-update.json", lambda d: d["payload"]["ChangeEventHeader"]
                      .update(recordIds=["0015f00002JUXA8AAP", "0015f00002JUXB2AAP"]))),
    (ACCOUNT, _sample("cometd-account-update.json", lambda d: d["payload"].pop("BillingAddress"))),
    (ACCOUNT, _sample("cometd-account-update.json", lambda d: (
        d["payload"]["ChangeEventHeader"]["changedFields"].append("Description"),
        d["payload"]["ChangeEventHeader"].update(diffFields=["Description"]),
        d["payload"].update(Description="@@ -1 +1 @@\n-old\n+new")))),
    (ACCOUNT, _sample("cometd-account-update.json", lambda d: d["payload"]["ChangeEventHeader"]
                      .update(recordIds=["001*", "0015f00002JUXB2AAP"]))),
    (ACCOUNT, _sample("cometd-account-update.json", lambda d: d["payload"]["ChangeEventHeader"]
                      .update(changeOrigin="POISON"))),
    (CONTACT, orjson.dumps({"schema": {"type": "struct"}, "payload": doc(
        "confluent-contact-create.json")})),
    (WEB, orjson.dumps({"event_id": "e-1", "record_key": "W-9", "object": "Account",
                        "operation": "UPDATE", "changed_fields": {"Phone": None},
                        "timestamp": 1714172795000})),
    # values whose text a columnar reader could get wrong
    (ACCOUNT, _cometd(_body(AnnualRevenue=1500.5))),
    (ACCOUNT, _cometd(_body(AnnualRevenue=1500.0))),
    (ACCOUNT, _cometd(_body(AnnualRevenue=7))),  # int here, double in its piece
    (ACCOUNT, _cometd(_body(NumberOfEmployees=2**63))),
    (ACCOUNT, _cometd(_body(NumberOfEmployees=-(2**63) - 1))),
    (ACCOUNT, _cometd(_body(NumberOfEmployees=18446744073709551615))),
    (ACCOUNT, _cometd(_body(LastActivityDate="2024-04-26"))),  # a date kind, as a string
    (ACCOUNT, _cometd(_body(LastActivityDate=19839))),
    (ACCOUNT, _cometd(_body(LastActivityDate=100000))),
    (ACCOUNT, _cometd(_body(LastActivityDate=-100001))),
    (ACCOUNT, _cometd(_body(LastModifiedDate="2024-04-26T18:38:05Z"))),  # inferred timestamp
    (ACCOUNT, _cometd(_body(LastModifiedDate=946684800000))),
    (ACCOUNT, _cometd(_body(LastModifiedDate=7258118400000))),
    (ACCOUNT, _cometd(_body(LastModifiedDate=7258118400001))),
    (ACCOUNT, _cometd(_body(LastModifiedDate=946684799999))),
    (ACCOUNT, _cometd(_body(LastModifiedDate=1714156685123))),
    (ACCOUNT, _cometd(_body(Phone=True, Website=False))),
    (ACCOUNT, _cometd(_body(Description="caf\u00e9 \U0001f600 \\ \" \t \u0000 end"))),
    (ACCOUNT, _cometd(_body(Tags=["a", "b"]))),
    (ACCOUNT, _cometd(_body(Extra={"Deep": {"x": 1}}))),
    (ACCOUNT, _cometd(_body(Extra={"List": [1]}))),
    (ACCOUNT, _cometd(_body(Extra={}))),
    (ACCOUNT, _cometd(_body(Name={"FirstName": "Ann", "LastName": "Lee"}, FirstName="Zed"))),
    (ACCOUNT, _cometd(_body(Name={"FirstName": None}, FirstName="Zed"))),
    (ACCOUNT, _cometd(_body(Geo__c={"Latitude": 56, "Longitude": "24.1"}))),
    (ACCOUNT, _cometd(_body(Phone="x", phone="y"))),
    (ACCOUNT, _cometd(lambda d: d["payload"].update(Id={"not": "a value"}, ReplayId=[1]))),
    (ACCOUNT, _cometd(_header(changedFields=["BillingAddress"]))),
    (ACCOUNT, _cometd(_header(changedFields=["Phone", "Phone"], nulledFields=["Phone"]))),
    (ACCOUNT, _cometd(_header(changedFields=["Phone", "Website"], diffFields=["Website"]))),
    (ACCOUNT, _cometd(_header(changedFields=["Phone"], diffFields=["Geo__c.Lat", "a.b.c"]))),
    (ACCOUNT, _cometd(lambda d: d["payload"]["ChangeEventHeader"].pop("nulledFields"))),
    (ACCOUNT, _cometd(lambda d: (d["payload"]["ChangeEventHeader"].pop("nulledFields"),
                                 d["payload"]["ChangeEventHeader"]["changedFields"].append("Fax")))),
    (ACCOUNT, _cometd(_header(nulledFields=None, diffFields=None))),
    (ACCOUNT, _cometd(_header(changedFields=[], nulledFields=["Phone"]))),
    (ACCOUNT, _cometd(_header(changeOrigin=None, commitUser=None))),
    (ACCOUNT, _cometd(lambda d: d["payload"]["ChangeEventHeader"].pop("commitUser"))),
    (ACCOUNT, _cometd(_header(commitNumber="not a number"))),
    (ACCOUNT, _cometd(_header(sequenceNumber=2**63))),
    (ACCOUNT, _cometd(_header(sequenceNumber=-0))),
    (ACCOUNT, _cometd(_header(recordIds=["0015f00002JUXA8AAP", None]))),
    (ACCOUNT, _cometd(_header(changedFields=["Phone", None]))),
    (ACCOUNT, _cometd(_header(diffFields=[None]))),
    (ACCOUNT, _cometd(_header(recordIds=["0015f00002jUXA8"]))),
    (ACCOUNT, _cometd(_header(entityName="account"))),
    (ACCOUNT, _cometd(_header(transactionKey=""))),
    (ACCOUNT, _cometd(_header(changeType="GAP_CREATE"))),
    (ACCOUNT, _cometd(_header(changeType="GAP_DELETE"))),
    (ACCOUNT, _cometd(_header(changeType="GAP_OVERFLOW"))),
    (ACCOUNT, _cometd(_header(changeType="DELETE", recordIds=["001*"]))),
    (ACCOUNT, _cometd(_header(changeType="DELETE") and _body(Tags=[1]))),
    (ACCOUNT, _cometd(lambda d: d.update(event={"replayId": "77"}))),
    (ACCOUNT, _cometd(lambda d: d.update(event={"replayId": 7.5}))),
    (ACCOUNT, _cometd(lambda d: d.update(event={"replayId": {"x": 1}}))),
    (ACCOUNT, _cometd(lambda d: d.update(event=None))),
    (ACCOUNT, _cometd(lambda d: d.pop("event"))),
    (ACCOUNT, _cometd(lambda d: d.update(payload=None))),
    (ACCOUNT, _cometd(lambda d: d.update(payload={}))),
    (ACCOUNT, _cometd(lambda d: d["payload"].update(ChangeEventHeader=None))),
    (ACCOUNT, b"{}"),
    (ACCOUNT, GOOD[:-1] + b', "payload": {}}'),  # a duplicate key
    (ACCOUNT, GOOD.replace(b'"entityName"', b'"entityName":"Contact","entityName"')),
    (ACCOUNT, GOOD + b' {"payload": {}}'),  # two documents in one message
    (ACCOUNT, b" " + GOOD),
    (ACCOUNT, GOOD + b" "),
    (ACCOUNT, GOOD + b"\n"),
    (ACCOUNT, GOOD.replace(b'"payload":', b'"payload":\r\n')),
    (ACCOUNT, GOOD.replace(b"}", b",}", 1)),  # a trailing comma
    (ACCOUNT, GOOD.replace(b'"schema":"synth-schema"', b'"schema":NaN')),
    (ACCOUNT, _cometd(_body(Score=float("inf")))),
    (CONTACT, _connector(lambda d: d.update(payload={"Title": "no header"}))),
    (CONTACT, _connector(lambda d: d.update(payload=None))),
    (CONTACT, _connector(lambda d: d.update(payload="text"))),
    (CONTACT, _connector(lambda d: d.update(Birthdate=3653, ReplayId=9))),
    (CONTACT, _connector(lambda d: d.update(Birthdate=-100000, CreatedDate=12))),
    (CONTACT, _connector(lambda d: d.update(MailingAddress={"City": "Riga", "Street": None}))),
    (CONTACT, _connector(lambda d: d.update(_ObjectType={"x": [1]}, ReplayId=None))),
    (CONTACT, _connector(lambda d: d["ChangeEventHeader"].update(changeType="UNDELETE"))),
    (ACCOUNT, None),
    (ACCOUNT, b""),
    ("not.a.declared.topic", GOOD),
    *[(ACCOUNT, value) for _, value, _ in CDC_CASES],
    *[(PE, value) for _, value, _ in PE_CASES],
    *[(WEB, value) for _, value, _ in WEB_CASES],
]  # fmt: skip


def test_unusual_messages_mixed_with_good_ones(con) -> None:
    good = synth_messages(7, "cometd", 200)
    messages = [(ACCOUNT, v) for v in good] + UNUSUAL
    random.Random(3).shuffle(messages)
    report = decode_both(con, raw(messages))
    # Not all: where an odd message makes a column double (a replay Id of 7.5, an integer
    # beyond 64 bits), pyarrow promotes that column in the whole piece, and the good messages
    # beside it go to the SQL decoder too (``5`` and ``5.0`` cannot be told apart any more).
    assert report.fast > 0.9 * len(good)


@pytest.mark.parametrize("case", range(len(UNUSUAL)))
def test_each_unusual_message_between_good_ones(con, case) -> None:
    good = synth_messages(8, "cometd", 20)
    decode_both(con, raw([(ACCOUNT, v) for v in good[:10]] + [UNUSUAL[case]]
                         + [(ACCOUNT, v) for v in good[10:]]))  # fmt: skip


# ---- the fast path really decodes, and refusals do not spread ------------------------------


def test_a_refused_piece_still_decodes_every_good_message(con) -> None:
    """pyarrow refuses the piece (bad JSON, a type conflict): the good messages stay fast."""
    good = synth_messages(9, "cometd", 1000)
    bad = [
        b'{"payload": {"ChangeEventHeader": {"entityName": "Account"}, "x": }}',
        _cometd(_body(Phone=12345)),  # Phone is a string in every other message
        _cometd(_header(sequenceNumber="one")),
    ]
    messages = [(ACCOUNT, v) for v in good[:400] + bad[:1] + good[400:700] + bad[1:] + good[700:]]
    report = decode_both(con, raw(messages))
    assert report.fast == len(good) + 1  # and the Phone that is a number, alone in its piece
    [(errors,)] = con.execute("SELECT count(*) FROM batch_errors").fetchall()
    assert errors == 2


def test_fast_count_excludes_what_it_leaves_to_sql(con) -> None:
    good = synth_messages(10, "cometd", 50)
    double = _cometd(_body(AnnualRevenue=1.5))
    report = decode_both(con, raw([(ACCOUNT, v) for v in [*good, double]]))
    assert report.fast == len(good)


def test_sql_failure_in_the_rest_is_isolated_while_the_fast_path_decodes(con, monkeypatch) -> None:
    monkeypatch.setattr(decode, "_MACROS", decode._MACROS + POISON_MACRO)
    poisoned = b" " + _cometd(_header(changeOrigin="POISON"))  # the space: not a candidate
    good = synth_messages(11, "cometd", 40)
    batch = raw([(ACCOUNT, v) for v in [*good[:20], poisoned, *good[20:]]], partitions=1)
    report = decode.decode(con, batch, load_settings())
    assert report == DecodeReport(fast=40, isolated=1)
    [(offset, error)] = con.execute("SELECT kafka_offset, error FROM batch_errors").fetchall()
    assert offset == 120 and "unforeseen" in error
    assert con.execute("SELECT count(*) FROM batch_raw").fetchone() == (41,)


def test_a_failing_fast_path_leaves_the_batch_to_sql(con, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise pa.ArrowInvalid("unforeseen")

    monkeypatch.setattr(decode_columnar, "decode", broken)
    good = synth_messages(12, "cometd", 30)
    assert decode_both(con, raw([(ACCOUNT, v) for v in good])).fast == 0


def test_batch_after_batch_on_one_connection(con) -> None:
    """Nothing of a batch stays behind for the next (the empty SQL tables are reused)."""
    first = synth_messages(14, "cometd", 60)
    second = synth_messages(15, "confluent", 60)
    assert decode_both(con, raw([(ACCOUNT, v) for v in first])).fast == 60
    assert decode_both(con, raw([(CONTACT, v) for v in second])).fast == 60
    assert decode.decode(con, raw([(ACCOUNT, v) for v in first]), load_settings()).fast == 60
    assert con.execute("SELECT count(*) FROM batch_flat").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM batch_decoded").fetchone() == (60,)


def test_empty_batch(con) -> None:
    assert decode_both(con, raw([])) == DecodeReport(0, 0)


def test_timestamp_inference_is_undone_across_pieces(con, monkeypatch) -> None:
    monkeypatch.setattr(decode_columnar, "PIECE_MESSAGES", 16)
    values = []
    for i, v in enumerate(synth_messages(13, "cometd", 100)):
        d = orjson.loads(v)
        d["payload"]["LastActivityDate"] = f"2024-04-{1 + i % 28:02d}"
        d["payload"]["Note"] = "2024-04-26 10:00:00" if i % 2 else "plain"
        values.append(orjson.dumps(d))
    assert decode_both(con, raw([(ACCOUNT, v) for v in values])).fast == 100


def test_normalised_epoch_values_match_sql_at_the_edges(con) -> None:
    edges = [946684800000, 946684800001, 7258118399999, 7258118400000, 7258118400001,
             946684799999, 0, -1, 1714156685123, 2**62]  # fmt: skip
    days = [-100001, -100000, -1, 0, 1, 19839, 99999, 100000, 100001]
    rnd = random.Random(5)
    edges += [rnd.randint(*decode_columnar._EPOCH_MS) for _ in range(200)]
    days += [rnd.randint(-100000, 100000) for _ in range(200)]
    base = doc("confluent-contact-create.json")
    values = []
    for i in range(max(len(edges), len(days))):
        d = copy.deepcopy(base)
        d["CreatedDate"] = edges[i % len(edges)]
        d["Birthdate"] = days[i % len(days)]
        d["ChangeEventHeader"]["sequenceNumber"] = i
        values.append(orjson.dumps(d))
    assert decode_both(con, raw([(CONTACT, v) for v in values])).fast == len(values)
