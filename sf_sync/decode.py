"""Turns a batch of raw Kafka messages into normalised change rows, in bulk, inside DuckDB.

Every message ends in exactly one of two places: ``batch_changes`` (one row per event and
record, ready for the history) or ``batch_errors`` (a specific reason, for the dead-letter
table). Validation and extraction are SQL over the whole batch, not a Python loop per message:
DuckDB parses the JSON once per message and checks every rule column-wise.

This SQL decoder is the reference. ``decode`` (what a run calls)
first lets the columnar fast path (``decode_columnar``) take the CometD and Confluent messages
it can prove it decodes exactly as this module does, and sends every other message here.

The Salesforce rules applied here are those of ``docs/contract.md``: an UPDATE applies only
``changedFields`` and ``nulledFields`` (compound ``BillingAddress.City`` becomes
``BillingCity``); nulls elsewhere in the body and enriched fields are not changes; an event with
several ``recordIds`` changes each of them; GAP_* events become gaps.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sf_sync.config import Settings, StreamConfig

if TYPE_CHECKING:
    from sf_sync.decode_columnar import FastDecoded

log = logging.getLogger(__name__)

CHANGE_TYPES = ("CREATE", "UPDATE", "DELETE", "UNDELETE")
GAP_TYPES = ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW")

HEADER_KEYS = (
    "entityName",
    "recordIds",
    "changeType",
    "changeOrigin",
    "transactionKey",
    "sequenceNumber",
    "commitTimestamp",
    "commitNumber",
    "commitUser",
    "changedFields",
    "nulledFields",
    "diffFields",
)

#: Keys of a Confluent connector value that describe the message, not the record.
CONNECTOR_META_KEYS = ("ChangeEventHeader", "Id", "ReplayId", "_ObjectType", "_EventType")

RAW_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
    ]
)

_MACROS = r"""
CREATE OR REPLACE TEMP MACRO sf_flat_name(compound, part) AS CASE
    WHEN compound = 'Name' THEN part
    WHEN compound LIKE '%\_\_c' ESCAPE '\' THEN left(compound, -3) || '__' || part || '__s'
    WHEN compound LIKE '%Address' THEN left(compound, -7) || part
    ELSE compound || part END;
CREATE OR REPLACE TEMP MACRO sf_dotted_to_flat(name) AS CASE
    WHEN strpos(name, '.') > 0
    THEN sf_flat_name(split_part(name, '.', 1), split_part(name, '.', 2))
    ELSE name END;
CREATE OR REPLACE TEMP MACRO sf_json_text(v) AS CASE json_type(v)
    WHEN 'VARCHAR' THEN v ->> '$' WHEN 'NULL' THEN NULL ELSE CAST(v AS VARCHAR) END;
CREATE OR REPLACE TEMP MACRO sf_is_string_list(v) AS
    v IS NULL OR json_type(v) = 'NULL'
    OR (json_type(v) = 'ARRAY' AND json_structure(v) IN ('["VARCHAR"]', '["NULL"]'));
CREATE OR REPLACE TEMP MACRO sf_string_list(v) AS
    CASE WHEN v IS NULL OR json_type(v) = 'NULL' THEN []::VARCHAR[]
         ELSE CAST(json_transform(v, '["VARCHAR"]') AS VARCHAR[]) END;
CREATE OR REPLACE TEMP MACRO sf_is_int(v) AS json_type(v) IN ('UBIGINT', 'BIGINT');
CREATE OR REPLACE TEMP MACRO sf_is_text(v) AS json_type(v) = 'VARCHAR';
CREATE OR REPLACE TEMP MACRO sf_opt_text(v) AS v IS NULL OR json_type(v) IN ('VARCHAR', 'NULL');
CREATE OR REPLACE TEMP MACRO sf_field_ok(name) AS
    regexp_full_match(name, '[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?');
CREATE OR REPLACE TEMP MACRO sf_id_ok(id) AS
    regexp_full_match(id, '[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?');
-- Plausible commit times in epoch ms: 2000-01-01 to 2200-01-01.
CREATE OR REPLACE TEMP MACRO sf_epoch_ms_ok(v) AS
    TRY_CAST(v AS BIGINT) BETWEEN 946684800000 AND 7258118400000;
CREATE OR REPLACE TEMP MACRO sf_iso_ts(v) AS
    CASE WHEN regexp_full_match(
            v, '\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})')
         THEN TRY_CAST(v AS TIMESTAMPTZ) END;
CREATE OR REPLACE TEMP MACRO sf_normalise(v, kind) AS CASE
    WHEN kind = 'datetime' AND json_type(v) IN ('UBIGINT', 'BIGINT') AND sf_epoch_ms_ok(v)
        THEN strftime(make_timestamp(CAST(v AS BIGINT) * 1000), '%Y-%m-%dT%H:%M:%S.%gZ')
    WHEN kind = 'date' AND json_type(v) IN ('UBIGINT', 'BIGINT')
         AND TRY_CAST(v AS BIGINT) BETWEEN -100000 AND 100000
        THEN strftime(DATE '1970-01-01' + CAST(CAST(v AS BIGINT) AS INTEGER), '%Y-%m-%d')
    ELSE sf_json_text(v) END;
"""


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Defines the SQL helpers the decoders share (temp: they live as long as ``con``)."""
    con.execute(_MACROS)


def _first_error(checks: Iterable[tuple[str, str]]) -> str:
    """SQL ``CASE`` giving the first failed rule's message, NULL when all pass."""
    whens = "\n".join(f"WHEN NOT coalesce(({cond}), false) THEN {msg}" for cond, msg in checks)
    return f"CASE {whens} END"


def _q(text: str) -> str:
    """Quotes a Python string as a SQL literal."""
    return "'" + text.replace("'", "''") + "'"


def _list_literal(items: Iterable[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]::VARCHAR[]"


#: The batch's Arrow table, registered by ``stage_raw`` until the next batch replaces it. The
#: raw bytes are read from it (lake files, dead letters) instead of being copied into DuckDB.
RAW_VIEW = "batch_arrow"

#: Formats whose decoder reads the message as text (the CDC ones read the parsed ``top``).
_TEXT_FORMATS = ("platform_event", "external")


def stage_raw(con: duckdb.DuckDBPyConnection, raw: pa.Table, settings: Settings) -> None:
    """Checks what every format shares: a body, size, UTF-8, JSON, an object.

    Creates ``batch_raw``: every message with ``error``, or its ``top``, the top-level object
    as a MAP of JSON values (and its ``text`` for the formats that read text). Parsing once
    here, into a MAP, and reading keys from it is several times faster than a JSON path per
    field (each re-parses the document). The bytes themselves (``key``, ``value``) are not
    copied: they stay in the registered Arrow table ``batch_arrow``, which is all the lake and
    the dead letters need, and which DuckDB's memory limit does not have to hold twice.
    """
    con.register(RAW_VIEW, raw)
    limit = settings.max_message_bytes
    text_topics = _list_literal(
        sorted(s.topic for s in settings.streams if s.format in _TEXT_FORMATS)
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE batch_raw AS
        WITH t0 AS (
            SELECT topic, kafka_partition, kafka_offset, kafka_timestamp, value,
                   CASE WHEN value IS NOT NULL AND octet_length(value) BETWEEN 1 AND {limit}
                        THEN try(decode(value)) END AS text
            FROM {RAW_VIEW}),
        t AS (SELECT *, try(json_transform(text, '"MAP(VARCHAR, JSON)"')) AS parsed FROM t0)
        SELECT topic, kafka_partition, kafka_offset, kafka_timestamp,
            CASE WHEN value IS NULL THEN 'null value (tombstone): a change event needs a body'
                 WHEN octet_length(value) = 0 THEN 'empty value'
                 WHEN octet_length(value) > {limit}
                    THEN 'value of ' || octet_length(value) || ' bytes exceeds the limit of {limit}'
                 WHEN text IS NULL THEN 'value is not valid UTF-8'
                 WHEN parsed IS NOT NULL THEN NULL
                 WHEN NOT json_valid(text) THEN 'value is not JSON'
                 WHEN json_type(text) <> 'OBJECT'
                    THEN 'value is JSON but not an object (' || json_type(text) || ')'
                 ELSE 'JSON object cannot be read as a record (duplicate keys?)'
            END AS error,
            CASE WHEN error IS NULL AND list_contains({text_topics}, topic) THEN text END AS text,
            CASE WHEN error IS NULL THEN parsed END AS top
        FROM t
        """
    )


def _header_checks(known_objects: tuple[str, ...]) -> list[tuple[str, str]]:
    """Rules for a CDC ChangeEventHeader (``h``) and its body (``env``).

    The header's lists are checked and read once per message (``rids_ok``/``rids``,
    ``changed_ok``/``changed_l``, ... in ``_cdc_events_sql``): a rule using a list comes after
    the rule that it is a list of strings, so the list is always there when it is used.
    """
    all_types = _list_literal(CHANGE_TYPES + GAP_TYPES)
    objects = _list_literal(known_objects)
    return [
        ("h_json IS NOT NULL", "'missing ChangeEventHeader'"),
        ("json_type(h_json) = 'OBJECT'", "'ChangeEventHeader is not an object'"),
        ("h IS NOT NULL", "'ChangeEventHeader cannot be read (duplicate keys?)'"),
        ("sf_is_text(h -> 'entityName')", "'header.entityName missing or not a string'"),
        (
            f"list_contains({objects}, h ->> 'entityName')",
            "'unknown object ' || (h ->> 'entityName') || ' (not declared for this stream)'",
        ),
        ("sf_is_text(h -> 'changeType')", "'header.changeType missing or not a string'"),
        (
            f"list_contains({all_types}, h ->> 'changeType')",
            "'unknown change type ' || (h ->> 'changeType')",
        ),
        (
            "(h -> 'recordIds') IS NOT NULL AND rids_ok",
            "'header.recordIds missing or not a list of strings'",
        ),
        (
            "h ->> 'changeType' = 'GAP_OVERFLOW' OR len(rids) > 0",
            "'header.recordIds is empty'",
        ),
        (
            "list_bool_and(list_transform(rids,"
            " lambda i: sf_id_ok(i) OR regexp_full_match(i, '[a-zA-Z0-9]{3}\\*')))"
            " OR len(rids) = 0",
            "'header.recordIds holds a malformed Salesforce Id'",
        ),
        (
            "sf_is_int(h -> 'commitTimestamp')",
            "'header.commitTimestamp missing or not an integer (epoch ms)'",
        ),
        (
            "sf_epoch_ms_ok(h -> 'commitTimestamp')",
            "'header.commitTimestamp ' || (h ->> 'commitTimestamp') || ' is out of range'",
        ),
        (
            "sf_is_text(h -> 'transactionKey') AND length(h ->> 'transactionKey') > 0",
            "'header.transactionKey missing or not a string'",
        ),
        (
            "sf_is_int(h -> 'sequenceNumber')"
            " AND TRY_CAST(h -> 'sequenceNumber' AS BIGINT) IS NOT NULL",
            "'header.sequenceNumber missing or not an integer'",
        ),
        ("sf_opt_text(h -> 'changeOrigin')", "'header.changeOrigin is not a string'"),
        ("sf_opt_text(h -> 'commitUser')", "'header.commitUser is not a string'"),
        ("changed_ok", "'header.changedFields is not a list of strings'"),
        ("nulled_ok", "'header.nulledFields is not a list of strings'"),
        ("diff_ok", "'header.diffFields is not a list of strings'"),
        (
            "list_bool_and(list_transform(changed_l || nulled_l, lambda f: sf_field_ok(f)))"
            " IS NOT false",
            "'header.changedFields or nulledFields holds a malformed field name'",
        ),
        (
            "h ->> 'changeType' <> 'UPDATE' OR len(changed_l) + len(nulled_l) > 0",
            "'UPDATE event lists no changed fields'",
        ),
        ("body_all IS NOT NULL", "'event body is not an object'"),
    ]


#: The header read as a STRUCT of JSON values: one parse, then cheap typed checks per key.
_HEADER_STRUCT = "'" + json.dumps({k: "JSON" for k in HEADER_KEYS}) + "'"


def _header_refs(sql: str) -> str:
    """``h -> 'key'`` / ``h ->> 'key'`` (JSON paths) to fields of the parsed header struct."""
    sql = re.sub(r"h ->> '(\w+)'", r"(h.\1 ->> '$')", sql)
    return re.sub(r"h -> '(\w+)'", r"h.\1", sql)


def _cdc_events_sql(stream: StreamConfig) -> str:
    """Normalises CometD and Confluent-connector CDC messages of one topic."""
    if stream.format == "cometd":
        body = """CASE WHEN json_type(top['payload']) = 'OBJECT'
                       THEN json_transform(top['payload'], '"MAP(VARCHAR, JSON)"') END"""
        replay = "top['event'] ->> 'replayId'"
    else:  # confluent: with (schemas.enable=true) or without the schema envelope
        body = """CASE WHEN json_type(top['payload']) = 'OBJECT'
                        AND json_exists(top['payload'], '$.ChangeEventHeader')
                       THEN json_transform(top['payload'], '"MAP(VARCHAR, JSON)"')
                       ELSE top END"""
        replay = "body_all['ReplayId'] ->> '$'"
    error = _first_error(_header_checks(stream.objects))
    return _header_refs(f"""
        WITH s AS (
            SELECT * FROM batch_raw WHERE error IS NULL AND topic = {_q(stream.topic)}),
        e AS (SELECT *, {body} AS body_all FROM s),
        h AS (SELECT *, body_all['ChangeEventHeader'] AS h_json,
                     CASE WHEN json_type(h_json) = 'OBJECT'
                          THEN try(json_transform(h_json, {_HEADER_STRUCT})) END AS h,
                     {replay} AS replay_id
              FROM e),
        ok AS (SELECT *, sf_is_string_list(h -> 'recordIds') AS rids_ok,
                      sf_is_string_list(h -> 'changedFields') AS changed_ok,
                      sf_is_string_list(h -> 'nulledFields') AS nulled_ok,
                      sf_is_string_list(h -> 'diffFields') AS diff_ok
               FROM h),
        l AS (SELECT *, CASE WHEN rids_ok THEN sf_string_list(h -> 'recordIds') END AS rids,
                     CASE WHEN changed_ok THEN sf_string_list(h -> 'changedFields') END
                         AS changed_l,
                     CASE WHEN nulled_ok THEN sf_string_list(h -> 'nulledFields') END AS nulled_l,
                     CASE WHEN diff_ok THEN sf_string_list(h -> 'diffFields') END AS diff_l
              FROM ok)
        SELECT topic, kafka_partition, kafka_offset, kafka_timestamp, {error} AS error,
            {_q(stream.source)} AS source,
            h ->> 'entityName' AS object,
            h ->> 'changeType' AS change_type,
            rids AS record_ids,
            (h ->> 'entityName') || ':' || (h ->> 'transactionKey') || ':'
                || (h ->> 'sequenceNumber') AS event_key,
            CASE WHEN sf_epoch_ms_ok(h -> 'commitTimestamp')
                 THEN make_timestamptz(CAST(h -> 'commitTimestamp' AS BIGINT) * 1000)
            END AS commit_timestamp,
            h ->> 'transactionKey' AS transaction_key,
            TRY_CAST(h -> 'sequenceNumber' AS BIGINT) AS sequence_number,
            h ->> 'changeOrigin' AS change_origin,
            h ->> 'commitUser' AS commit_user,
            changed_l AS changed_raw,
            nulled_l AS nulled_raw,
            diff_l AS diff_raw,
            -- Older connector versions omit nulledFields: then a null changed field is nulled.
            coalesce(json_type(h -> 'nulledFields') = 'ARRAY', false) AS strict_nulls,
            -- The connector's own keys (header, Id, ...) are dropped when the body is
            -- flattened (connector_meta): cheaper than rebuilding every body's map here.
            body_all AS body,
            true AS connector_meta,
            NULL::VARCHAR AS salesforce_id,
            replay_id
        FROM l
    """)


def _platform_event_sql(stream: StreamConfig) -> str:
    """Normalises platform events through the stream's field mapping."""
    m = stream.platform_event
    assert m is not None
    obj = f"(p ->> {_q(m.object_field)})" if m.object_field else _q(m.object or "")
    changed = (
        f"list_filter(string_split(coalesce(p ->> {_q(m.changed_fields_field)}, ''),"
        f" {_q(m.changed_fields_separator)}), lambda f: f <> '')"
        if m.changed_fields_field
        else "[]::VARCHAR[]"
    )
    data = f"(p ->> {_q(m.data_field)})"
    checks = [
        ("json_type(p) = 'OBJECT'", "'platform event has no payload object'"),
        ("sf_is_text(doc -> '$.event.EventUuid')", "'platform event lacks event.EventUuid'"),
        (f"({obj}) IS NOT NULL", "'platform event lacks the object field'"),
        (
            f"list_contains({_list_literal(stream.objects)}, {obj})",
            f"'unknown object ' || {obj} || ' (not declared for this stream)'",
        ),
        (
            f"sf_is_text(p -> {_q(m.record_id_field)}) AND sf_id_ok(p ->> {_q(m.record_id_field)})",
            f"'platform event field {m.record_id_field} is not a Salesforce Id'",
        ),
        (
            f"list_contains({_list_literal(CHANGE_TYPES)}, p ->> {_q(m.change_type_field)})",
            f"'unknown change type ' || coalesce(p ->> {_q(m.change_type_field)}, 'NULL')",
        ),
        (
            "sf_iso_ts(p ->> 'CreatedDate') IS NOT NULL",
            "'platform event CreatedDate missing or not an ISO-8601 timestamp'",
        ),
        (
            "data_text IS NULL OR json_type(data_doc) = 'OBJECT'",
            f"'platform event field {m.data_field} is not a JSON object'",
        ),
        (
            f"list_bool_and(list_transform({changed}, lambda f: sf_field_ok(f))) IS NOT false",
            f"'platform event field {m.changed_fields_field} holds a malformed field name'",
        ),
        (
            f"p ->> {_q(m.change_type_field)} <> 'UPDATE' OR len({changed}) > 0",
            "'UPDATE event lists no changed fields'",
        ),
    ]
    return f"""
        WITH s0 AS (
            SELECT *, CAST(text AS JSON) AS doc, top['payload'] AS p FROM batch_raw
            WHERE error IS NULL AND topic = {_q(stream.topic)}),
        s AS (
            -- try(): a malformed data field must become this row's error, not the batch's
            SELECT *, {data} AS data_text, try(CAST({data} AS JSON)) AS data_doc FROM s0)
        SELECT topic, kafka_partition, kafka_offset, kafka_timestamp,
            {_first_error(checks)} AS error,
            {_q(stream.source)} AS source,
            {obj} AS object,
            p ->> {_q(m.change_type_field)} AS change_type,
            [p ->> {_q(m.record_id_field)}] AS record_ids,
            doc ->> '$.event.EventUuid' AS event_key,
            sf_iso_ts(p ->> 'CreatedDate') AS commit_timestamp,
            doc ->> '$.event.EventUuid' AS transaction_key,
            TRY_CAST(doc -> '$.event.replayId' AS BIGINT) AS sequence_number,
            NULL::VARCHAR AS change_origin,
            p ->> 'CreatedById' AS commit_user,
            {changed} AS changed_raw,
            []::VARCHAR[] AS nulled_raw,
            []::VARCHAR[] AS diff_raw,
            false AS strict_nulls,
            CASE WHEN json_type(data_doc) = 'OBJECT'
                 THEN json_transform(data_doc, '"MAP(VARCHAR, JSON)"')
                 ELSE MAP {{}}::MAP(VARCHAR, JSON) END AS body,
            false AS connector_meta,
            NULL::VARCHAR AS salesforce_id,
            doc ->> '$.event.replayId' AS replay_id
        FROM s
    """


def _external_sql(stream: StreamConfig) -> str:
    """Normalises the other system's change events (shape in ``docs/contract.md``)."""
    ts = """CASE WHEN sf_is_int(doc -> 'timestamp') AND sf_epoch_ms_ok(doc -> 'timestamp')
                  THEN make_timestamptz(CAST(doc -> 'timestamp' AS BIGINT) * 1000)
                  WHEN sf_is_text(doc -> 'timestamp') THEN sf_iso_ts(doc ->> 'timestamp') END"""
    checks = [
        (
            "sf_is_text(doc -> 'event_id') AND length(doc ->> 'event_id') > 0",
            "'event_id missing or not a string'",
        ),
        (
            "sf_is_text(doc -> 'record_key') AND length(doc ->> 'record_key') > 0",
            "'record_key missing or not a string'",
        ),
        ("sf_is_text(doc -> 'object')", "'object missing or not a string'"),
        (
            f"list_contains({_list_literal(stream.objects)}, doc ->> 'object')",
            "'unknown object ' || (doc ->> 'object') || ' (not declared for this stream)'",
        ),
        (
            f"list_contains({_list_literal(CHANGE_TYPES)}, doc ->> 'operation')",
            "'unknown operation ' || coalesce(doc ->> 'operation', 'NULL')",
        ),
        (
            "sf_opt_text(doc -> 'salesforce_id') AND (json_type(doc -> 'salesforce_id')"
            " IS DISTINCT FROM 'VARCHAR' OR sf_id_ok(doc ->> 'salesforce_id'))",
            "'salesforce_id is not a Salesforce Id'",
        ),
        (f"{ts} IS NOT NULL", "'timestamp missing, malformed or out of range'"),
        (
            "(doc -> 'sequence') IS NULL OR sf_is_int(doc -> 'sequence')",
            "'sequence is not an integer'",
        ),
        (
            "(doc -> 'changed_fields') IS NULL OR json_type(doc -> 'changed_fields') = 'OBJECT'",
            "'changed_fields is not an object'",
        ),
        (
            "list_bool_and(list_transform(json_keys(coalesce(doc -> 'changed_fields', '{}')),"
            " lambda f: regexp_full_match(f, '[A-Za-z][A-Za-z0-9_]*'))) IS NOT false",
            "'changed_fields holds a malformed field name'",
        ),
        (
            "sf_opt_text(doc -> 'origin') AND sf_opt_text(doc -> 'user')",
            "'origin or user is not a string'",
        ),
    ]
    return f"""
        WITH s AS (
            SELECT *, CAST(text AS JSON) AS doc FROM batch_raw
            WHERE error IS NULL AND topic = {_q(stream.topic)})
        SELECT topic, kafka_partition, kafka_offset, kafka_timestamp,
            {_first_error(checks)} AS error,
            {_q(stream.source)} AS source,
            doc ->> 'object' AS object,
            doc ->> 'operation' AS change_type,
            [doc ->> 'record_key'] AS record_ids,
            doc ->> 'event_id' AS event_key,
            {ts} AS commit_timestamp,
            doc ->> 'event_id' AS transaction_key,
            coalesce(TRY_CAST(doc -> 'sequence' AS BIGINT), 0) AS sequence_number,
            doc ->> 'origin' AS change_origin,
            doc ->> 'user' AS commit_user,
            CASE WHEN doc ->> 'operation' = 'UPDATE'
                 THEN json_keys(coalesce(doc -> 'changed_fields', '{{}}')) ELSE []::VARCHAR[]
            END AS changed_raw,
            []::VARCHAR[] AS nulled_raw,
            []::VARCHAR[] AS diff_raw,
            false AS strict_nulls,
            CASE WHEN json_type(doc -> 'changed_fields') = 'OBJECT'
                 THEN json_transform(doc -> 'changed_fields', '"MAP(VARCHAR, JSON)"')
                 ELSE MAP {{}}::MAP(VARCHAR, JSON) END AS body,
            false AS connector_meta,
            doc ->> 'salesforce_id' AS salesforce_id,
            NULL::VARCHAR AS replay_id
        FROM s
    """


_FORMAT_SQL = {
    "cometd": _cdc_events_sql,
    "confluent": _cdc_events_sql,
    "platform_event": _platform_event_sql,
    "external": _external_sql,
}


#: Temp tables a decode leaves behind (``batch_raw`` is rebuilt from the whole batch).
DECODE_OUTPUTS = ("batch_decoded", "batch_errors", "batch_changes", "batch_fields", "batch_gaps")
#: Outputs numbering events with ``ev``; pieces decoded apart are renumbered when joined.
_NUMBERED = ("batch_decoded", "batch_changes", "batch_fields")


@dataclass(frozen=True)
class DecodeReport:
    """How a batch was decoded."""

    fast: int  # messages decoded by the columnar fast path (``decode_columnar``)
    isolated: int  # messages dead-lettered by bisection: the SQL itself failed on them


#: What the fast path may raise on input nobody foresaw; the batch then takes the SQL path.
_FAST_PATH_ERRORS = (pa.ArrowException, duckdb.Error, ValueError, LookupError)


def decode(
    con: duckdb.DuckDBPyConnection, raw: pa.Table, settings: Settings, *, sql_only: bool = False
) -> DecodeReport:
    """Decodes ``raw`` into the batch's temp tables (``batch_raw`` and ``DECODE_OUTPUTS``).

    The CDC messages (``cometd``, ``confluent``) the columnar fast path accepts are decoded
    there (``decode_columnar``: it accepts only what it decodes exactly as the SQL decoder
    does); every other message goes through the SQL decoder, with bisection
    (``decode_sql_isolating``), which gives the exact error or result. ``sql_only`` sends every
    message through the SQL decoder (the reference the fast path is tested against). The fast
    path's events are added to the SQL decoder's tables, numbered after its ``ev``; should the
    fast path itself fail, the whole batch goes through the SQL decoder.

    Differences from ``sql_only`` in the tables, for fast-decoded messages only: ``top`` in
    ``batch_raw`` and ``body`` in ``batch_decoded`` are NULL (the parsed document is not kept
    as a MAP), and they have no rows in ``batch_flat``/``batch_listed`` (internal to the SQL
    decoder).
    """
    if sql_only:
        return DecodeReport(0, decode_sql_isolating(con, raw, settings))
    from sf_sync import decode_columnar  # it imports this module's constants

    install_macros(con)
    try:
        fast = decode_columnar.decode(
            con, raw, decode_columnar.candidates(con, raw, settings), settings
        )
    except _FAST_PATH_ERRORS:
        log.exception("columnar decoding failed; the batch goes through the SQL decoder")
        return DecodeReport(0, decode_sql_isolating(con, raw, settings))
    if fast.count == 0:
        return DecodeReport(0, decode_sql_isolating(con, raw, settings))
    rest = np.ones(raw.num_rows, dtype=bool)
    rest[fast.rows] = False
    first_ev = int(rest.sum())  # the SQL decoder's ``ev`` never exceeds its message count
    if first_ev:
        isolated = decode_sql_isolating(con, raw.filter(pa.array(rest)), settings)
    else:
        isolated = _decode_nothing(con, raw.slice(0, 0), settings)
    try:
        _add_fast(con, raw, fast, first_ev)
    except duckdb.Error:
        log.exception("adding the fast path's rows failed; the batch goes through SQL")
        return DecodeReport(0, decode_sql_isolating(con, raw, settings))
    return DecodeReport(fast.count, isolated)


#: The temp tables the SQL decoder leaves (``field_types`` aside, made from the settings).
_SQL_TABLES = (
    "batch_raw",
    "batch_decoded",
    "batch_errors",
    "batch_flat",
    "batch_listed",
    "batch_field_errors",
    "batch_fields",
    "batch_changes",
    "batch_gaps",
)


#: The SQL decoder's tables as DuckDB describes them (``CREATE TEMP TABLE name(...)``), kept
#: from its first run in this process: they do not depend on the batch or the settings.
_EMPTY_DDL: dict[str, str] = {}


def _decode_nothing(con: duckdb.DuckDBPyConnection, empty: pa.Table, settings: Settings) -> int:
    """What the SQL decoder does with an empty batch (its tables, empty), from their
    definitions: running its statements costs ~0.1 s, mostly planning."""
    if len(_EMPTY_DDL) < len(_SQL_TABLES):
        decode_sql_isolating(con, empty, settings)
        _EMPTY_DDL.update(
            con.execute(
                "SELECT table_name, sql FROM duckdb_tables()"
                " WHERE temporary AND list_contains(?, table_name)",
                [list(_SQL_TABLES)],
            ).fetchall()
        )
        return 0
    con.execute(
        ";".join(
            ddl.replace("CREATE TEMP TABLE ", "CREATE OR REPLACE TEMP TABLE ", 1)
            for ddl in _EMPTY_DDL.values()
        )
    )
    return 0


def _add_fast(
    con: duckdb.DuckDBPyConnection, raw: pa.Table, fast: FastDecoded, first_ev: int
) -> None:
    """Adds the fast path's events to the tables the SQL decoder built for the other messages.

    Their ``batch_changes`` and ``batch_gaps`` rows come from the SQL decoder's own statements
    (``changes_sql``, ``gaps_sql``) over the fast path's events.
    """
    con.register(RAW_VIEW, raw)  # the SQL decoder registered only its part of the batch
    # Several record batches: DuckDB scans them in parallel.
    con.register("fast_events", _batches(fast.events))
    con.register("fast_fields", _batches(fast.fields))
    events = f"""(SELECT * EXCLUDE (ev, commit_ms), ev + {first_ev} AS ev,
                         make_timestamptz(commit_ms * 1000) AS commit_timestamp,
                         true AS connector_meta, NULL::VARCHAR AS salesforce_id
                  FROM fast_events)"""
    try:
        con.execute(
            f"""
            INSERT INTO batch_raw BY NAME
            SELECT topic, kafka_partition, kafka_offset, kafka_timestamp FROM fast_events;
            INSERT INTO batch_decoded BY NAME SELECT * EXCLUDE (changed_fields) FROM {events};
            INSERT INTO batch_fields BY NAME
            SELECT ev + {first_ev} AS ev, field, value FROM fast_fields;
            INSERT INTO batch_changes BY NAME {changes_sql(events, None)};
            """
        )
        if _may_have_gaps(fast.events):
            con.execute(f"INSERT INTO batch_gaps BY NAME {gaps_sql(events)}")
    finally:
        con.unregister("fast_events")
        con.unregister("fast_fields")


def _may_have_gaps(events: pa.Table) -> bool:
    """Whether ``gaps_sql`` can give rows for ``events``: only GAP_ events, UPDATEs with
    ``diffFields`` and wildcard Ids do (its three parts)."""
    return bool(
        pc.any(pc.starts_with(events["change_type"], "GAP_")).as_py()
        or pc.any(pc.greater(pc.list_value_length(events["diff_raw"]), 0)).as_py()
        or pc.any(pc.ends_with(pc.list_flatten(events["record_ids"]), "*")).as_py()
    )


def _batches(table: pa.Table, parts: int = 8) -> pa.Table:
    rows = max(1, -(-table.num_rows // parts))
    return pa.Table.from_batches(table.combine_chunks().to_batches(max_chunksize=rows))


def decode_sql_isolating(con: duckdb.DuckDBPyConnection, raw: pa.Table, settings: Settings) -> int:
    """``decode_batch``, but a message that makes the bulk SQL itself fail cannot block others.

    Every rule we know of is a per-row check, so this fallback should never run; when some
    unforeseen input does raise inside DuckDB, the batch is bisected until the offending
    messages stand alone, and each is dead-lettered with the database's error. Returns how many
    messages were isolated that way.
    """
    try:
        decode_batch(con, raw, settings)
        return 0
    except duckdb.Error:
        pass
    pieces: dict[str, list[pa.Table]] = {name: [] for name in DECODE_OUTPUTS}
    poisoned: list[tuple[int, str]] = []
    numbered = 0

    def run(start: int, length: int) -> None:
        nonlocal numbered
        try:
            decode_batch(con, raw.slice(start, length), settings)
        except duckdb.Error as exc:
            if length == 0:  # not the data: the SQL itself is broken
                raise
            if length == 1:
                poisoned.append((start, f"decoder failed on this message: {exc}"))
                return
            half = length // 2
            run(start, half)
            run(start + half, length - half)
            return
        for name in DECODE_OUTPUTS:
            shift = f" REPLACE (ev + {numbered} AS ev)" if name in _NUMBERED else ""
            pieces[name].append(con.sql(f"SELECT *{shift} FROM {name}").to_arrow_table())
        # ``ev`` has holes where rows failed a rule: shift the next piece past the largest.
        numbered += con.execute("SELECT coalesce(max(ev), 0) FROM batch_decoded").fetchall()[0][0]

    run(0, 0)  # the empty batch gives every output its columns, even if nothing else decodes
    run(0, raw.num_rows)
    stage_raw(con, raw, settings)
    for name, tables in pieces.items():
        con.register("piece", pa.concat_tables(tables, promote_options="permissive"))
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM piece")
        con.unregister("piece")
    for row, error in poisoned:
        r = raw.slice(row, 1).to_pylist()[0]
        con.execute(
            "INSERT INTO batch_errors VALUES (?, ?, ?, ?, ?, ?)",
            [
                r["topic"],
                r["kafka_partition"],
                r["kafka_offset"],
                error,
                r["value"],
                r["kafka_timestamp"],
            ],
        )
    return len(poisoned)


def decode_batch(con: duckdb.DuckDBPyConnection, raw: pa.Table, settings: Settings) -> None:
    """Decodes ``raw`` (``RAW_SCHEMA``) into temp tables ``batch_changes`` and ``batch_errors``.

    ``batch_decoded`` keeps one normalised row per good message (``ev`` numbers them, not
    densely: the numbers of rejected messages are left out);
    ``batch_changes`` has one row per (event, record); ``batch_fields`` the flat values each
    event (``ev``) sets; ``batch_gaps`` the gaps.
    """
    install_macros(con)
    stage_raw(con, raw, settings)
    topics = {row[0] for row in con.execute("SELECT DISTINCT topic FROM batch_raw").fetchall()}
    streams = [s for s in settings.streams if s.topic in topics]
    unknown = topics - {s.topic for s in streams}
    parts = [_FORMAT_SQL[s.format](s) for s in streams]
    # ``ev`` numbers the events as they are decoded; rows that fail a rule are deleted below
    # rather than the table being copied without them (a copy of every body's map).
    if parts:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE batch_decoded AS SELECT row_number() OVER () AS ev, *"
            " FROM (" + " UNION ALL ".join(f"({p})" for p in parts) + ")"
        )
    else:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE batch_decoded AS SELECT 0::BIGINT AS ev, * FROM ("
            + _cdc_events_sql(StreamConfig("none", "", "cometd"))
            + " LIMIT 0)"
        )
    undeclared = _list_literal(sorted(unknown))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE batch_errors AS
        WITH bad AS (
            SELECT topic, kafka_partition, kafka_offset, error, kafka_timestamp
            FROM batch_raw WHERE error IS NOT NULL
            UNION ALL
            SELECT topic, kafka_partition, kafka_offset,
                   'topic is not declared in the configuration', kafka_timestamp
            FROM batch_raw WHERE error IS NULL AND list_contains({undeclared}, topic)
            UNION ALL
            SELECT topic, kafka_partition, kafka_offset, error, kafka_timestamp
            FROM batch_decoded WHERE error IS NOT NULL)
        SELECT b.topic, b.kafka_partition, b.kafka_offset, b.error, r.value AS raw_value,
               b.kafka_timestamp
        FROM bad b JOIN {RAW_VIEW} r USING (topic, kafka_partition, kafka_offset)
        """
    )
    con.execute("DELETE FROM batch_decoded WHERE error IS NOT NULL")
    _explode_changes(con, settings)


def _reject_inconsistent_bodies(con: duckdb.DuckDBPyConnection) -> None:
    """Moves events whose body contradicts the rules from ``batch_decoded`` to the errors.

    A field value must be a scalar (compound fields are flattened first), and an UPDATE that
    lists a field as changed but not nulled must carry its value.
    """
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE batch_field_errors AS
        SELECT ev, min(error) AS error FROM (
            SELECT ev, 'field ' || field || ' holds ' || json_type(v) || ', not a value'
                AS error
            FROM batch_flat WHERE json_type(v) IN ('OBJECT', 'ARRAY')
            UNION ALL
            SELECT l.ev, 'changed field ' || l.field || ' is missing from the body'
            FROM batch_listed l LEFT JOIN batch_flat f USING (ev, field)
            WHERE l.strict_nulls AND NOT l.nulled AND NOT l.diffed AND f.value IS NULL)
        GROUP BY ev;
        INSERT INTO batch_errors
        SELECT d.topic, d.kafka_partition, d.kafka_offset, e.error, r.value, d.kafka_timestamp
        FROM batch_field_errors e JOIN batch_decoded d USING (ev)
        JOIN {RAW_VIEW} r USING (topic, kafka_partition, kafka_offset);
        DELETE FROM batch_decoded WHERE ev IN (SELECT ev FROM batch_field_errors);
        """
    )


def _explode_changes(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Builds ``batch_changes``: one row per (event, record) with the flat values it applies."""
    types = [
        (obj, fld, kind)
        for obj, fields in settings.field_types.items()
        for fld, kind in fields.items()
    ]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE field_types (object VARCHAR, field VARCHAR, kind VARCHAR)"
    )
    if types:
        con.executemany("INSERT INTO field_types VALUES (?, ?, ?)", types)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE batch_flat AS
        WITH all_entries AS (
            SELECT ev, object, connector_meta, unnest(map_entries(body)) AS kv
            FROM batch_decoded WHERE change_type IN ('CREATE', 'UPDATE', 'UNDELETE')),
        entries AS (
            SELECT ev, object, kv FROM all_entries
            WHERE NOT (connector_meta
                       AND list_contains({_list_literal(CONNECTOR_META_KEYS)}, kv.key))),
        flat AS (
            SELECT ev, object, kv.key AS field, kv.value AS v, false AS compound
            FROM entries WHERE json_type(kv.value) IS DISTINCT FROM 'OBJECT'
            UNION ALL
            SELECT ev, object, sf_flat_name(compound, sub.key) AS field, sub.value AS v, true
            FROM (SELECT ev, object, kv.key AS compound, unnest(map_entries(
                             json_transform(kv.value, '"MAP(VARCHAR, JSON)"'))) AS sub
                  FROM entries WHERE json_type(kv.value) = 'OBJECT')),
        typed AS (
            SELECT ev, field, v, sf_normalise(f.v, t.kind) AS value, compound
            FROM flat f LEFT JOIN field_types t USING (object, field)),
        -- A body's own keys are unique (a MAP); only names made from a compound field can
        -- meet another value of the same name, so only those names need a choice.
        clash AS (SELECT DISTINCT ev, field FROM typed WHERE compound)
        SELECT ev, field, v, value FROM typed ANTI JOIN clash USING (ev, field)
        UNION ALL
        SELECT ev, field, v, value FROM (
            SELECT * FROM typed SEMI JOIN clash USING (ev, field)
            QUALIFY row_number() OVER (PARTITION BY ev, field ORDER BY value NULLS LAST) = 1);

        CREATE OR REPLACE TEMP TABLE batch_listed AS
        SELECT ev, field, bool_or(nulled) AS nulled, bool_or(diffed) AS diffed,
               any_value(strict_nulls) AS strict_nulls
        FROM (
            SELECT ev, sf_dotted_to_flat(unnest(changed_raw)) AS field, false AS nulled,
                   false AS diffed, strict_nulls FROM batch_decoded WHERE change_type = 'UPDATE'
            UNION ALL
            SELECT ev, sf_dotted_to_flat(unnest(nulled_raw)), true, false, strict_nulls
            FROM batch_decoded WHERE change_type = 'UPDATE'
            UNION ALL
            SELECT ev, sf_dotted_to_flat(unnest(diff_raw)), false, true, strict_nulls
            FROM batch_decoded WHERE change_type = 'UPDATE')
        GROUP BY ev, field;
        """
    )
    _reject_inconsistent_bodies(con)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE batch_fields AS
        -- CREATE and UNDELETE carry every field: those with a value are set.
        SELECT f.ev, f.field, f.value FROM batch_flat f
        JOIN batch_decoded d USING (ev)
        WHERE d.change_type IN ('CREATE', 'UNDELETE') AND f.value IS NOT NULL
        UNION ALL
        -- UPDATE applies only the listed fields; nulledFields win over any body value;
        -- diffFields carry a diff, not a value, and are repaired through the gaps table.
        SELECT l.ev, l.field, CASE WHEN NOT l.nulled THEN f.value END
        FROM batch_listed l
        JOIN batch_decoded d USING (ev)
        LEFT JOIN batch_flat f USING (ev, field)
        WHERE NOT l.diffed
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE batch_changes AS "
        + changes_sql(
            "batch_decoded",
            "(SELECT ev, list_sort(list(field)) AS changed_fields FROM batch_fields GROUP BY ev)",
        )
    )
    con.execute("CREATE OR REPLACE TEMP TABLE batch_gaps AS " + gaps_sql("batch_decoded"))


def changes_sql(decoded: str, changed: str | None) -> str:
    """``batch_changes``' rows of the events in ``decoded`` (``batch_decoded``'s columns), with
    the sorted ``changed_fields`` per ``ev`` of ``changed`` (None: ``decoded`` has them)."""
    join = f"LEFT JOIN {changed} v USING (ev)" if changed else ""
    fields = "v.changed_fields" if changed else "d.changed_fields"
    return f"""
        SELECT * FROM (
            SELECT d.ev, d.event_key, d.source, d.object, unnest(d.record_ids) AS record_id,
                   d.change_type, d.commit_timestamp, d.transaction_key, d.sequence_number,
                   d.change_origin, d.commit_user,
                   coalesce({fields}, []::VARCHAR[]) AS changed_fields,
                   d.topic, d.kafka_partition, d.kafka_offset, d.salesforce_id, d.replay_id
            FROM {decoded} d {join}
            WHERE d.change_type NOT IN ('GAP_OVERFLOW'))
        -- A wildcard Id ("001*", after a type conversion) names no record: it is a gap.
        WHERE NOT ends_with(record_id, '*')
    """


def gaps_sql(decoded: str) -> str:
    """``batch_gaps``' rows of the events in ``decoded`` (``batch_decoded``'s columns)."""
    return f"""
        SELECT event_key, source, object, unnest(CASE WHEN len(record_ids) = 0
                                                      THEN [NULL::VARCHAR] ELSE record_ids END)
                   AS record_id,
               change_type AS gap_type, commit_timestamp, transaction_key, topic,
               kafka_partition, kafka_offset, []::VARCHAR[] AS fields
        FROM {decoded} WHERE starts_with(change_type, 'GAP_')
        UNION ALL
        SELECT event_key, source, object, unnest(record_ids), 'DIFF_FIELDS', commit_timestamp,
               transaction_key, topic, kafka_partition, kafka_offset,
               list_transform(diff_raw, lambda f: sf_dotted_to_flat(f))
        FROM {decoded} WHERE len(diff_raw) > 0 AND change_type = 'UPDATE'
        UNION ALL
        SELECT * FROM (
            SELECT event_key, source, object, unnest(record_ids) AS record_id, 'WILDCARD_IDS',
                   commit_timestamp, transaction_key, topic, kafka_partition, kafka_offset,
                   []::VARCHAR[]
            FROM {decoded} WHERE NOT starts_with(change_type, 'GAP_'))
        WHERE ends_with(record_id, '*')
    """
