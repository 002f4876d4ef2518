"""A columnar fast path for CDC messages (``cometd``, ``confluent``): pyarrow parses, vectors check.

Why: the SQL decoder (``decode.py``) parses each message with DuckDB's JSON functions several
times over (the document, the payload as a MAP, the header as a STRUCT, every compound value)
and spends most of a batch's decode time there (about 5 s per 100,000 CometD messages of 800
bytes). pyarrow's JSON reader parses newline-delimited JSON into typed columns in one
multi-threaded pass, and every rule is then a vector operation over those columns.

How it stays exact: this module only *accepts*. A message is decoded here only when every rule
of the SQL decoder (``decode._header_checks`` and ``decode._reject_inconsistent_bodies``) holds
for it and every value it gives is known to read exactly as the SQL decoder writes it; its rows
are then the rows the SQL decoder would give. Everything else is left to the SQL decoder, which
``decode.py`` runs on the remaining messages and which words the errors:

* messages that cannot be one NDJSON line as they are (see ``candidates``);
* messages pyarrow refuses (bad JSON, duplicate keys, a header value of another type than
  ``HEADER_TYPE``, a body field whose type changes inside a piece): a refused piece is read
  again in parts, down to the messages that do not parse alone (``_bisect``);
* values whose text pyarrow cannot give back as the SQL decoder writes it: a double (once a
  column is double, ``5`` and ``5.0`` look alike, and DuckDB writes them differently), a list
  or object where a value belongs, a list holding nulls, a replay Id that is neither a string
  nor an integer (a timestamp pyarrow infers from a string is read again as a string);
* a ``confluent`` message whose ``payload`` is an object without a header.

A JSON null and a missing key read the same in Arrow; they also give the same rows in the SQL
decoder (a null is never a value, and a listed field without a value is NULL either way), so
only non-null values are looked at here. Field names are mapped with the SQL decoder's own
macros (``sf_flat_name``, ``sf_dotted_to_flat``), once per distinct name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from sf_sync.config import Settings, StreamConfig
from sf_sync.decode import CHANGE_TYPES, CONNECTOR_META_KEYS, GAP_TYPES

#: Stream formats decoded here.
FORMATS = ("cometd", "confluent")

#: The header as declared to pyarrow: a message whose header contradicts one of these types is
#: refused by the reader and goes to the SQL decoder, which names the rule. ``commitNumber``
#: is left to inference (the SQL decoder never reads it).
HEADER_TYPE = pa.struct(
    [
        ("entityName", pa.string()),
        ("recordIds", pa.list_(pa.string())),
        ("changeType", pa.string()),
        ("changeOrigin", pa.string()),
        ("transactionKey", pa.string()),
        ("sequenceNumber", pa.int64()),
        ("commitTimestamp", pa.int64()),
        ("commitUser", pa.string()),
        ("changedFields", pa.list_(pa.string())),
        ("nulledFields", pa.list_(pa.string())),
        ("diffFields", pa.list_(pa.string())),
    ]
)
_HEADER = "ChangeEventHeader"
_PAYLOAD = pa.field("payload", pa.struct([(_HEADER, HEADER_TYPE)]))
#: What is declared per format. The body fields are inferred, and so are the envelope's other
#: keys (CometD's ``schema`` and ``event``, the connector's ``schema``): the SQL decoder reads
#: only the replay Id of them, which is taken here when it is a string or an integer.
BASE_SCHEMAS = {
    "cometd": pa.schema([_PAYLOAD]),
    "confluent": pa.schema([(_HEADER, HEADER_TYPE), _PAYLOAD]),
}

#: Messages per ``read_json`` call (the next piece is read while this one is checked).
PIECE_MESSAGES = 16384
#: A refused piece is read again in this many parts, a refused part likewise.
_SPLIT = 16

# The SQL decoder's rules as RE2 patterns (DuckDB's ``regexp_full_match`` is RE2 as well).
_ID_RE = r"\A(?:[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?|[a-zA-Z0-9]{3}\*)\z"
_FIELD_RE = r"\A[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?\z"
_EPOCH_MS = (946684800000, 7258118400000)  # sf_epoch_ms_ok
_DAYS = (-100000, 100000)  # sf_normalise, kind 'date'
_DATA_TYPES = ("CREATE", "UPDATE", "UNDELETE")  # the events whose body is read

_LIST = pa.list_(pa.string())
_NAME = pa.dictionary(pa.int32(), pa.string())  # field names: DuckDB reads them as VARCHAR
#: ``FastDecoded.events``: ``batch_decoded``'s values, the commit time in epoch ms, and the
#: sorted flat names of the fields the event sets (``batch_changes.changed_fields``).
EVENT_SCHEMA = pa.schema(
    [
        ("ev", pa.int64()),
        ("topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp", pa.int64()),
        ("source", pa.string()),
        ("object", pa.string()),
        ("change_type", pa.string()),
        ("record_ids", _LIST),
        ("event_key", pa.string()),
        ("commit_ms", pa.int64()),
        ("transaction_key", pa.string()),
        ("sequence_number", pa.int64()),
        ("change_origin", pa.string()),
        ("commit_user", pa.string()),
        ("changed_raw", _LIST),
        ("nulled_raw", _LIST),
        ("diff_raw", _LIST),
        ("strict_nulls", pa.bool_()),
        ("replay_id", pa.string()),
        ("changed_fields", pa.list_(_NAME)),
    ]
)
#: ``FastDecoded.fields``: ``batch_fields``' rows.
FIELD_SCHEMA = pa.schema([("ev", pa.int64()), ("field", _NAME), ("value", pa.string())])


@dataclass(frozen=True)
class FastDecoded:
    """What the fast path decoded, events numbered ``ev`` 1..n (``decode.py`` shifts them).

    ``rows``: the positions in the raw batch of the accepted messages (one event each).
    """

    events: pa.Table  # EVENT_SCHEMA
    fields: pa.Table  # FIELD_SCHEMA
    rows: np.ndarray

    @property
    def count(self) -> int:
        return self.events.num_rows


def candidates(con: duckdb.DuckDBPyConnection, raw: pa.Table, settings: Settings) -> np.ndarray:
    """Positions of the messages of CDC topics that can be one NDJSON line as they are.

    Not null, 1 byte up to the size limit, valid UTF-8 (DuckDB's ``decode``, the very check
    the SQL decoder makes), no newline or CR byte, the first byte ``{`` and the last ``}``.
    Then no record can run from one line into the next (after a ``}``, outside a string, a
    JSON parser needs ``,``, ``}``, ``]`` or the end, and the next line starts with ``{``), and
    every line starts a record: as many records as messages means one record per message.
    """
    topics = sorted(s.topic for s in settings.streams if s.format in FORMATS)
    if not topics or raw.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    view = raw.select(["topic", "value"]).append_column(
        "pos", pa.array(np.arange(raw.num_rows, dtype=np.int64))
    )
    con.register("fast_candidates", view)
    try:
        found = con.sql(
            """
            SELECT pos FROM (
                SELECT pos, try(decode(value)) AS text FROM fast_candidates
                WHERE list_contains(?, topic) AND octet_length(value) BETWEEN 1 AND ?)
            WHERE starts_with(text, '{') AND ends_with(text, '}')
                  AND NOT contains(text, chr(10)) AND NOT contains(text, chr(13))
            """,
            params=[topics, settings.max_message_bytes],
        ).to_arrow_table()
    finally:
        con.unregister("fast_candidates")
    return np.sort(found["pos"].to_numpy())


def decode(
    con: duckdb.DuckDBPyConnection, raw: pa.Table, rows: np.ndarray, settings: Settings
) -> FastDecoded:
    """Decodes what it can of the messages of ``raw`` at ``rows`` (from ``candidates``).

    Needs the SQL helpers of ``decode.install_macros`` on ``con``.
    """
    units: list[_Unit] = []
    names = _Names(con)
    topics = raw["topic"].take(pa.array(rows, pa.int64()))
    for stream in settings.streams:
        if stream.format not in FORMATS:
            continue
        mine = rows[_np(pc.equal(topics, stream.topic))]
        if len(mine) == 0:
            continue
        values = _rows(raw["value"], mine).combine_chunks().cast(pa.binary())
        for positions, table in _parse(values, BASE_SCHEMAS[stream.format]):
            for shape in _shapes(stream, table):
                accepted, events, fields = _decode_shape(names, stream, settings, shape)
                units.append(
                    _Unit(stream.source, mine[positions[shape.rows[accepted]]], events, fields)
                )
    return _concat(raw, units)


@dataclass(frozen=True)
class _Unit:
    """The accepted messages of one parsed table and shape."""

    source: str
    rows: np.ndarray  # positions in the raw batch
    events: pa.Table  # EVENT_SCHEMA's columns from ``object`` on
    fields: pa.Table  # FIELD_SCHEMA, ``ev`` counting ``events`` from 0


def _concat(raw: pa.Table, units: list[_Unit]) -> FastDecoded:
    """Joins the units, numbering their events 1..n and adding where each message was read."""
    events, fields, first = [], [], 1
    for unit in units:
        n = len(unit.rows)
        where = raw.select(["topic", "kafka_partition", "kafka_offset", "kafka_timestamp"])
        where = where.take(pa.array(unit.rows, pa.int64()))
        ev = pa.array(np.arange(first, first + n, dtype=np.int64))
        head = {"ev": ev, **{c: where[c] for c in where.column_names}}
        head["source"] = pa.repeat(pa.scalar(unit.source, pa.string()), n)
        body = {c: unit.events[c] for c in unit.events.column_names}
        events.append(pa.table(head | body).cast(EVENT_SCHEMA))
        shifted = pc.add(unit.fields["ev"], first)
        fields.append(unit.fields.set_column(0, "ev", shifted).cast(FIELD_SCHEMA))
        first += n
    return FastDecoded(
        pa.concat_tables(events) if events else EVENT_SCHEMA.empty_table(),
        pa.concat_tables(fields) if fields else FIELD_SCHEMA.empty_table(),
        np.concatenate([u.rows for u in units]) if units else np.zeros(0, dtype=np.int64),
    )


# ---- parsing ----------------------------------------------------------------------------


class _Misaligned(ValueError):
    """pyarrow read more records than there were messages (a message holding two values)."""


def _read(values: pa.Array, schema: pa.Schema) -> pa.Table:
    """One ``read_json`` over the messages joined by newlines; one record per message."""
    lines = pc.binary_join_element_wise(
        values, pa.scalar(b"", pa.binary()), pa.scalar(b"\n", pa.binary())
    )
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    longest = pc.max(pc.binary_length(lines)).as_py() or 0
    table = pj.read_json(
        pa.BufferReader(lines.buffers()[2][start:end]),
        read_options=pj.ReadOptions(block_size=max(1 << 20, longest + 1)),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
    )
    if table.num_rows != len(values):
        raise _Misaligned(f"{table.num_rows} records from {len(values)} messages")
    return table


def _read_exact(values: pa.Array, schema: pa.Schema) -> tuple[pa.Table, pa.Schema]:
    """``_read``, again with the fields declared strings where pyarrow inferred a timestamp.

    (It turns ``"2024-04-26"`` into a timestamp and cannot give the text back.) Returns the
    schema for the next piece too, so each such field is read twice once, not per piece.
    """
    table = _read(values, schema)
    paths = _timestamp_paths(table.schema)
    if not paths:
        return table, schema
    schema = pa.schema(_declare_strings(list(schema), paths))
    return _read(values, schema), schema


def _timestamp_paths(fields: Iterable[pa.Field], path: tuple[str, ...] = ()) -> list[tuple]:
    out: list[tuple] = []
    for f in fields:
        if pa.types.is_timestamp(f.type):
            out.append((*path, f.name))
        elif pa.types.is_struct(f.type):
            out += _timestamp_paths(f.type, (*path, f.name))
    return out


def _declare_strings(fields: list[pa.Field], paths: list[tuple]) -> list[pa.Field]:
    """``fields`` with every path of ``paths`` declared a string (structs added as needed)."""
    out = {f.name: f for f in fields}
    heads: dict[str, list[tuple]] = defaultdict(list)
    for p in paths:
        heads[p[0]].append(p[1:])
    for name, rests in heads.items():
        if any(not rest for rest in rests):
            out[name] = pa.field(name, pa.string())
            continue
        old = out.get(name)
        children = list(old.type) if old is not None and pa.types.is_struct(old.type) else []
        out[name] = pa.field(name, pa.struct(_declare_strings(children, rests)))
    return list(out.values())


def _parse(values: pa.Array, schema: pa.Schema) -> Iterator[tuple[np.ndarray, pa.Table]]:
    """Parses ``values`` piece by piece, one piece ahead of the caller, in a thread (pyarrow's
    reader releases the GIL, so reading the next piece overlaps the work on this one).

    Yields (positions in ``values``, table) per piece; a refused piece is bisected and its
    refused messages are left out.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sf-sync-json") as reader:
        pieces = _pieces(values, schema)
        ahead = reader.submit(next, pieces, None)
        while (piece := ahead.result()) is not None:
            ahead = reader.submit(next, pieces, None)
            yield piece


def _pieces(values: pa.Array, schema: pa.Schema) -> Iterator[tuple[np.ndarray, pa.Table]]:
    for start in range(0, len(values), PIECE_MESSAGES):
        parsed: list[tuple[int, pa.Table]] = []
        schema = _bisect(values, start, min(PIECE_MESSAGES, len(values) - start), schema, parsed)
        yield from _runs(parsed)


def _bisect(
    values: pa.Array, start: int, length: int, schema: pa.Schema, out: list[tuple[int, pa.Table]]
) -> pa.Schema:
    """Reads ``values[start:start+length]`` into ``out``; what pyarrow refuses (bad JSON, a
    declared type contradicted, a type changing...) is split in ``_SPLIT`` parts and read
    again, down to single messages, which are left out. A refused message costs about two
    reads of its piece. Returns the schema to read on with (see ``_read_exact``)."""
    try:
        table, schema = _read_exact(values.slice(start, length), schema)
    except (pa.ArrowException, ValueError):
        if length > 1:
            step = -(-length // _SPLIT)
            for part in range(start, start + length, step):
                schema = _bisect(values, part, min(step, start + length - part), schema, out)
        return schema
    out.append((start, table))
    return schema


def _runs(parsed: list[tuple[int, pa.Table]]) -> Iterator[tuple[np.ndarray, pa.Table]]:
    """The parts of a bisected piece joined into runs whose types unify (usually one)."""
    runs: list[list[tuple[int, pa.Table]]] = []
    unified = None
    for start, table in parsed:
        try:
            if unified is None:
                raise pa.ArrowInvalid("no run yet")
            unified = pa.unify_schemas([unified, table.schema], promote_options="permissive")
            runs[-1].append((start, table))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            unified = table.schema
            runs.append([(start, table)])
    for run in runs:
        positions = np.concatenate([np.arange(s, s + t.num_rows) for s, t in run])
        yield positions, pa.concat_tables([t for _, t in run], promote_options="permissive")


# ---- shapes: where the body and the replay Id are ---------------------------------------


@dataclass(frozen=True)
class _Shape:
    rows: np.ndarray  # rows of the parsed table
    body: pa.ChunkedArray  # struct, the header among its fields
    replay_id: pa.ChunkedArray | pa.Array  # as the SQL decoder's ``->>`` reads it
    odd_replay: np.ndarray  # rows whose replay Id is neither a string nor an integer


def _shapes(stream: StreamConfig, table: pa.Table) -> list[_Shape]:
    """CometD: the body is ``payload``, the replay Id ``event.replayId``. Confluent: the body is
    ``payload`` when it is an object with a header (the schema envelope), else the document,
    and the replay Id the body's ``ReplayId``; a payload object without a header is left out.
    """
    everyone = np.arange(table.num_rows)
    if stream.format == "cometd":
        i = table.schema.get_field_index("event")
        event = table.column(i) if i >= 0 else None
        return [_Shape(everyone, table["payload"], *_replay(event, "replayId", table.num_rows))]
    payload = table["payload"]
    has_payload = _valid(payload)
    header = pc.struct_field(payload, [payload.type.get_field_index(_HEADER)])
    enveloped = has_payload & _valid(header)
    out = []
    for rows, body in (
        (np.flatnonzero(enveloped), payload),
        (np.flatnonzero(~has_payload), table.to_struct_array()),
    ):
        if len(rows) < table.num_rows:
            body = body.take(pa.array(rows, pa.int64()))
        if len(rows):
            out.append(_Shape(rows, body, *_replay(body, "ReplayId", len(rows))))
    return out


def _replay(
    parent: pa.ChunkedArray | None, name: str, n: int
) -> tuple[pa.ChunkedArray | pa.Array, np.ndarray]:
    """The text of ``parent.name`` and the rows where it is not a string or an integer."""
    nothing = pa.nulls(n, pa.string()), np.zeros(n, dtype=bool)
    if parent is None:
        return nothing
    if not pa.types.is_struct(parent.type):
        return nothing[0], _valid(parent)
    i = parent.type.get_field_index(name)
    if i < 0:
        return nothing
    value = pc.struct_field(parent, [i])
    if pa.types.is_string(value.type):
        return value, nothing[1]
    if pa.types.is_int64(value.type):
        return pc.cast(value, pa.string()), nothing[1]
    return nothing[0], _valid(value)


# ---- one shape ----------------------------------------------------------------------------


def _decode_shape(
    names: _Names, stream: StreamConfig, settings: Settings, shape: _Shape
) -> tuple[np.ndarray, pa.Table, pa.Table]:
    """Which rows of ``shape`` are accepted, their events, and their field rows."""
    h = _header_fields(shape.body)
    ok = _header_ok(h, stream) & ~shape.odd_replay
    change_type = h["changeType"]
    sources, odd = _sources(names, shape.body)
    ok &= ~(odd & _np(pc.is_in(change_type, pa.array(_DATA_TYPES))))  # only their bodies count
    listed = _listed(names, h, ok & _np(pc.equal(change_type, "UPDATE")))
    # Field names are coded by their place in sorted order: sorting codes sorts names.
    vocab = sorted(set(sources) | set(listed.names))
    code = {name: i for i, name in enumerate(vocab)}
    texts = {
        code[name]: _array(_normalised(values, name, h["entityName"], stream, settings))
        for name, values in sources.items()
    }
    created = ok & _np(pc.is_in(change_type, pa.array(["CREATE", "UNDELETE"])))
    rows_c, codes_c, values_c = _all_values(texts, np.flatnonzero(created))
    listed_codes = np.array([code[n] for n in listed.names], dtype=np.int64)[listed.index]
    rows_u, codes_u, values_u, missing = _listed_values(listed, listed_codes, texts)
    strict = _valid(h["nulledFields"])  # without nulledFields a null changed field is nulled
    ok[rows_u[missing & strict[rows_u]]] = False

    rows = np.concatenate([rows_c, rows_u])
    codes = np.concatenate([codes_c, codes_u])
    values = pa.chunked_array([values_c, values_u], pa.string())
    keep = ok[rows]
    if not keep.all():
        rows, codes, values = rows[keep], codes[keep], values.filter(pa.array(keep))
    accepted = np.flatnonzero(ok)
    ev = (np.cumsum(ok) - 1)[rows]  # 0-based among the accepted
    names = pa.array(vocab, pa.string())
    field = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), names)  # no copies
    fields = pa.table({"ev": ev, "field": field, "value": values})
    changed = _changed(ev, codes, names, len(accepted))
    return ok, _events(h, shape.replay_id, accepted, changed), fields


def _changed(ev: np.ndarray, codes: np.ndarray, vocab: pa.Array, events: int) -> pa.ListArray:
    """Per event, the sorted names of the fields it sets (``vocab`` is sorted: sort codes)."""
    order = np.argsort(ev * max(len(vocab), 1) + codes)
    offsets = np.zeros(events + 1, dtype=np.int32)
    np.cumsum(np.bincount(ev, minlength=events), out=offsets[1:])
    names = pa.DictionaryArray.from_arrays(pa.array(codes[order], pa.int32()), vocab)
    return pa.ListArray.from_arrays(pa.array(offsets), names)


def _header_fields(body: pa.ChunkedArray) -> dict[str, pa.ChunkedArray]:
    header = pc.struct_field(body, [body.type.get_field_index(_HEADER)])
    fields = {name: header.type.get_field_index(name) for name in HEADER_TYPE.names}
    return {_HEADER: header} | {name: pc.struct_field(header, [i]) for name, i in fields.items()}


def _header_ok(h: dict[str, pa.ChunkedArray], stream: StreamConfig) -> np.ndarray:
    """Every rule of ``decode._header_checks`` that the declared types do not already make.

    Lists must not hold nulls here (the SQL decoder lets some through, with odd results).
    """
    change_type = h["changeType"]
    ok = _valid(h[_HEADER])
    ok &= _np(pc.is_in(h["entityName"], pa.array(stream.objects, pa.string())))
    ok &= _np(pc.is_in(change_type, pa.array(CHANGE_TYPES + GAP_TYPES)))
    ids = h["recordIds"]
    overflow = _np(pc.equal(change_type, "GAP_OVERFLOW"))
    ok &= _valid(ids) & ((_lengths(ids) > 0) | overflow)
    ok &= _every(ids, lambda i: pc.match_substring_regex(i, _ID_RE))
    ok &= _np(_between(h["commitTimestamp"], *_EPOCH_MS))
    ok &= _np(pc.greater(pc.binary_length(h["transactionKey"]), 0))
    ok &= _valid(h["sequenceNumber"])
    for name in ("changedFields", "nulledFields"):
        ok &= _every(h[name], lambda f: _distinct_match(f, _FIELD_RE))
    ok &= _every(h["diffFields"], pc.is_valid)
    listed = _lengths(h["changedFields"]) + _lengths(h["nulledFields"])
    ok &= ~_np(pc.equal(change_type, "UPDATE")) | (listed > 0)
    return ok


def _sources(
    names: _Names, body: pa.ChunkedArray
) -> tuple[dict[str, list[pa.ChunkedArray]], np.ndarray]:
    """The body's scalar values by flat field name, and the rows holding anything else.

    As in ``batch_flat``: the connector's keys are dropped, an object's fields become flat
    names (``sf_flat_name``); a name can come from several places (``BillingCity`` and
    ``BillingAddress.City``).
    """
    odd = np.zeros(len(body), dtype=bool)
    plain: list[tuple[str, pa.ChunkedArray]] = []
    parts: list[tuple[str, str, pa.ChunkedArray]] = []
    for i, field in enumerate(body.type):
        if field.name in CONNECTOR_META_KEYS:
            continue
        value = pc.struct_field(body, [i])
        if _is_scalar(field.type):
            plain.append((field.name, value))
        elif pa.types.is_struct(field.type):
            for j, sub in enumerate(field.type):
                part = pc.struct_field(value, [j])
                if _is_scalar(sub.type):
                    parts.append((field.name, sub.name, part))
                elif not pa.types.is_null(sub.type):
                    odd |= _valid(part)
        elif not pa.types.is_null(field.type):
            odd |= _valid(value)
    flat = names.map("sf_flat_name", [(c, p) for c, p, _ in parts])
    sources: dict[str, list[pa.ChunkedArray]] = defaultdict(list)
    for name, value in plain:
        sources[name].append(value)
    for compound, part, value in parts:
        sources[flat[(compound, part)]].append(value)
    return sources, odd


def _is_scalar(t: pa.DataType) -> bool:
    """Types whose text is exactly the SQL decoder's (``sf_json_text``)."""
    return pa.types.is_string(t) or pa.types.is_int64(t) or pa.types.is_boolean(t)


def _normalised(
    values: list[pa.ChunkedArray],
    name: str,
    objects: pa.ChunkedArray,
    stream: StreamConfig,
    settings: Settings,
) -> pa.ChunkedArray:
    """``sf_normalise`` of the values of one flat name; of several, the least non-null text
    (``batch_flat``'s choice where a compound's part meets another value of that name)."""
    kinds = {
        obj: settings.field_types.get(obj, {}).get(name)
        for obj in stream.objects
        if settings.field_types.get(obj, {}).get(name) in ("datetime", "date")
    }
    kind = None
    if kinds:
        kind = pa.nulls(len(objects), pa.string())
        for obj, k in kinds.items():
            kind = pc.if_else(pc.equal(objects, obj), k, kind)
    texts = [_text(v, kind) for v in values]
    return texts[0] if len(texts) == 1 else pc.min_element_wise(*texts, skip_nulls=True)


def _text(value: pa.ChunkedArray, kind: pa.ChunkedArray | None) -> pa.ChunkedArray:
    """A scalar's text: strings as they are, booleans and integers as JSON writes them,
    integers of ``datetime`` fields in the epoch-ms range and of ``date`` fields in the day
    range as ISO text (what ``sf_normalise`` does: the tests compare both over the edges)."""
    if pa.types.is_string(value.type):
        return value
    text = pc.cast(value, pa.string())
    if kind is None or not pa.types.is_int64(value.type):
        return text
    stamp = pc.and_(pc.equal(kind, "datetime"), _between(value, *_EPOCH_MS))
    if pc.any(stamp).as_py():
        ms = pc.cast(pc.if_else(stamp, value, 0), pa.timestamp("ms"))
        text = pc.if_else(stamp, pc.strftime(ms, format="%Y-%m-%dT%H:%M:%SZ"), text)
    day = pc.and_(pc.equal(kind, "date"), _between(value, *_DAYS))
    if pc.any(day).as_py():
        days = pc.cast(pc.cast(pc.if_else(day, value, 0), pa.int32()), pa.date32())
        text = pc.if_else(day, pc.cast(days, pa.string()), text)
    return text


@dataclass(frozen=True)
class _Listed:
    """The fields UPDATE events list: one entry per listing, not deduplicated."""

    rows: np.ndarray
    names: list[str]  # the flat names (``sf_dotted_to_flat``) of the distinct names listed
    index: np.ndarray  # per entry, its name in ``names``
    nulled: np.ndarray
    diffed: np.ndarray


def _listed(names: _Names, h: dict, updates: np.ndarray) -> _Listed:
    """``changedFields``, ``nulledFields`` and ``diffFields`` of the rows where ``updates``."""
    keys = ("changedFields", "nulledFields", "diffFields")
    items = pa.chunked_array(
        [chunk for k in keys for chunk in pc.list_flatten(h[k]).chunks], pa.string()
    )
    parents = [_ints(pc.list_parent_indices(h[k])) for k in keys]
    kind = np.concatenate([np.full(len(p), i) for i, p in enumerate(parents)])
    rows = np.concatenate(parents)
    distinct = pc.drop_null(pc.unique(items))
    index = _ints(pc.fill_null(pc.index_in(items, distinct), -1))
    keep = updates[rows] & (index >= 0)  # (a null item: its row is not accepted anyway)
    listed = distinct.to_pylist()
    flat = names.map("sf_dotted_to_flat", [(n,) for n in listed])
    return _Listed(
        rows[keep], [flat[(n,)] for n in listed], index[keep], (kind == 1)[keep], (kind == 2)[keep]
    )


def _all_values(
    texts: dict[int, pa.Array], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(row, name code, value) of every non-null value of ``rows`` (CREATE, UNDELETE)."""
    idx = pa.array(rows, pa.int64())
    out_rows, out_codes, out_values = [rows[:0]], [rows[:0]], [pa.array([], pa.string())]
    for code, text in texts.items():
        values = text.take(idx)
        keep = _valid(values)
        out_rows.append(rows[keep])
        out_codes.append(np.full(int(keep.sum()), code, dtype=np.int64))
        out_values.append(values.filter(pa.array(keep)))
    return np.concatenate(out_rows), np.concatenate(out_codes), pa.concat_arrays(out_values)


def _listed_values(
    listed: _Listed, codes: np.ndarray, texts: dict[int, pa.Array]
) -> tuple[np.ndarray, np.ndarray, pa.Array, np.ndarray]:
    """(row, code, value) of every field an UPDATE sets, one per (row, flat name), as
    ``batch_listed`` and ``batch_fields`` have them: a listing as nulled or as diffed counts
    (``bool_or``), nulled fields are NULL, diffed fields are left out. Also: where a field
    neither nulled nor diffed has no value (rejected when the header has ``nulledFields``)."""
    key = codes * (int(listed.rows.max(initial=0)) + 1) + listed.rows  # by name, then row
    order = np.argsort(key, kind="stable")
    first = np.flatnonzero(np.diff(key[order], prepend=-1) != 0)
    rows, codes = listed.rows[order][first], codes[order][first]
    nulled, diffed = np.zeros(len(first), bool), np.zeros(len(first), bool)
    if len(first):
        nulled = np.logical_or.reduceat(listed.nulled[order], first)
        diffed = np.logical_or.reduceat(listed.diffed[order], first)
    rows, codes, nulled = rows[~diffed], codes[~diffed], nulled[~diffed]

    starts = np.flatnonzero(np.diff(codes, prepend=-1) != 0)  # one run of rows per name
    ends = np.append(starts[1:], len(codes))[: len(starts)]
    values = [pa.array([], pa.string())]
    for start, end, c in zip(starts, ends, codes[starts], strict=True):
        text = texts.get(int(c))
        if text is None:
            values.append(pa.nulls(end - start, pa.string()))
        else:  # a masked index takes a null: a nulled field's value is NULL
            values.append(text.take(pa.array(rows[start:end], mask=nulled[start:end])))
    value = pa.concat_arrays(values)
    return rows, codes, value, ~nulled & ~_valid(value)


def _events(
    h: dict[str, pa.ChunkedArray],
    replay_id: pa.ChunkedArray | pa.Array,
    accepted: np.ndarray,
    changed: pa.ListArray,
) -> pa.Table:
    """``batch_decoded``'s values of the accepted rows (``EVENT_SCHEMA`` from ``object`` on)."""
    idx = pa.array(accepted, pa.int64())
    seq = pc.cast(h["sequenceNumber"], pa.string())
    key = pc.binary_join_element_wise(h["entityName"], h["transactionKey"], seq, ":")
    empty = pa.scalar([], _LIST)
    columns = {
        "object": h["entityName"],
        "change_type": h["changeType"],
        "record_ids": h["recordIds"],
        "event_key": key,
        "commit_ms": h["commitTimestamp"],
        "transaction_key": h["transactionKey"],
        "sequence_number": h["sequenceNumber"],
        "change_origin": h["changeOrigin"],
        "commit_user": h["commitUser"],
        "changed_raw": pc.fill_null(h["changedFields"], empty),
        "nulled_raw": pc.fill_null(h["nulledFields"], empty),
        "diff_raw": pc.fill_null(h["diffFields"], empty),
        "strict_nulls": pc.is_valid(h["nulledFields"]),
        "replay_id": replay_id,
    }
    if len(accepted) < len(h[_HEADER]):
        columns = {name: col.take(idx) for name, col in columns.items()}
    return pa.table(columns | {"changed_fields": changed})


# ---- helpers --------------------------------------------------------------------------------


class _Names:
    """Field names mapped by the SQL decoder's macros, asked of DuckDB once per batch each."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._known: dict[tuple[str, ...], str] = {}

    def map(self, macro: str, args: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
        """``macro(args...)`` for each argument tuple."""
        new = sorted({(macro, *a) for a in args} - self._known.keys())
        if new:
            columns = list(zip(*[a[1:] for a in new], strict=True))
            params = [f"a{i}" for i in range(len(columns))]
            unnest = ", ".join(f"unnest(?::VARCHAR[]) AS {p}" for p in params)
            result = self._con.execute(
                f"SELECT {', '.join(params)}, {macro}({', '.join(params)}) FROM (SELECT {unnest})",
                [list(c) for c in columns],
            ).fetchall()
            self._known |= {(macro, *r[:-1]): r[-1] for r in result}
        return {a: self._known[(macro, *a)] for a in args}


def _np(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null as false."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _valid(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return _np(pc.is_valid(values))


def _ints(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)


def _lengths(lists: pa.ChunkedArray) -> np.ndarray:
    return _ints(pc.fill_null(pc.list_value_length(lists), 0))


def _between(values: pa.ChunkedArray | pa.Array, lo: int, hi: int) -> pa.ChunkedArray:
    return pc.and_(pc.greater_equal(values, lo), pc.less_equal(values, hi))


def _every(
    lists: pa.ChunkedArray, test: Callable[[pa.ChunkedArray], pa.ChunkedArray]
) -> np.ndarray:
    """Per row: every item of the list passes ``test`` (true for a null or empty list)."""
    ok = np.ones(len(lists), dtype=bool)
    items = pc.list_flatten(lists)
    if len(items):
        ok[_ints(pc.list_parent_indices(lists))[~_np(test(items))]] = False
    return ok


def _distinct_match(values: pa.ChunkedArray, pattern: str) -> pa.ChunkedArray:
    """``match_substring_regex``, run on the distinct values only (field names repeat)."""
    distinct = pc.unique(values)
    bad = distinct.filter(pc.invert(pc.match_substring_regex(distinct, pattern)))
    return pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, bad)))


def _rows(values: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> pa.ChunkedArray | pa.Array:
    """``values`` at ``rows`` (ascending): a slice when they are a run, as they usually are."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return values.slice(int(rows[0]), len(rows))
    return values.take(pa.array(rows, pa.int64()))


def _array(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
