"""Late and out-of-order changes across runs end in the history in-order delivery gives.

No Kafka here: batches go straight into ``store_batch`` against a real DuckDB file, so many
delivery orders can be tried quickly. The broker path is covered in tests/integration.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sf_sync import synth, warehouse
from sf_sync.config import load_settings
from sf_sync.decode import RAW_SCHEMA, decode_batch
from sf_sync.ingest import store_batch
from sf_sync.invariants import RUN_RULES, Written, duplicate_changes, validity_breaks, violations
from sf_sync.ranges import OffsetRange
from tests.integration.history_compare import assert_same_history, stored_history

TOPIC = "salesforce.cdc.Account"


def deliverable(batch: list[bytes], offset: int = 0) -> pa.Table:
    """``batch`` as Kafka would hand it over, from ``offset`` on in partition 0."""
    n = len(batch)
    return pa.table(
        {
            "topic": [TOPIC] * n,
            "kafka_partition": [0] * n,
            "kafka_offset": list(range(offset, offset + n)),
            "kafka_timestamp": [1_714_156_685_000] * n,
            "key": [None] * n,
            "value": batch,
        },
        schema=RAW_SCHEMA,
    )


def deliver(home: Path, batches: list[list[bytes]]) -> None:
    settings = replace(load_settings(), home=home)
    offset = 0
    for batch in batches:
        n = len(batch)
        table = deliverable(batch, offset)
        with warehouse.writer(home, publish=True) as con:
            stats = store_batch(
                con, settings, table, [OffsetRange(TOPIC, 0, offset, offset + n)], None
            )
            # What a run checks over what it wrote holds after every batch, late ones too.
            (batch_time,) = con.execute("SELECT max(ingested_at) FROM ingested_ranges").fetchone()
            written = Written.of(con, [batch_time])
            for name, rule in RUN_RULES.items():
                assert violations(con, rule, written=written) == (0, []), name
        # One-line CometD JSON without doubles: every message takes the columnar fast path.
        assert stats["decoded_columnar"] == n
        offset += n


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_batches_in_any_order_give_the_in_order_history(tmp_path: Path, seed: int) -> None:
    events = synth.generate(seed=seed, records=12, events=240)
    values = [v for _, v in synth.messages(events)]
    rnd = random.Random(seed)
    chunks = [values[i : i + 17] for i in range(0, len(values), 17)]
    rnd.shuffle(chunks)
    for chunk in chunks:
        rnd.shuffle(chunk)
    # and some redelivery of an earlier chunk at the end
    chunks.append(chunks[0][:5])

    deliver(tmp_path, chunks)

    con = warehouse.connect_history(tmp_path)
    assert_same_history(stored_history(con), synth.expected_history(events))
    assert violations(con, duplicate_changes)[0] == 0
    assert violations(con, validity_breaks)[0] == 0


def test_a_late_change_rewrites_later_old_values(tmp_path: Path) -> None:
    events = synth.generate(seed=9, records=1, events=6)
    values = [v for _, v in synth.messages(events)]
    deliver(tmp_path, [values[:2] + values[3:], [values[2]]])  # event 2 arrives last
    con = warehouse.connect_history(tmp_path)
    (late,) = con.execute("SELECT count(*) FROM account_versions").fetchone()
    assert late == 6
    assert_same_history(stored_history(con), synth.expected_history(events))


@pytest.mark.parametrize("seed", [5, 6])
def test_change_values_are_what_each_change_set(tmp_path: Path, seed: int) -> None:
    """The ``change_values`` view (read back from the versions) equals the decoder's values,
    no-ops and set-to-NULL included, also after late events re-derived the versions."""
    events = synth.generate(seed=seed, records=8, events=160)
    values = [v for _, v in synth.messages(events)]
    rnd = random.Random(seed)
    chunks = [values[i : i + 23] for i in range(0, len(values), 23)]
    rnd.shuffle(chunks)
    deliver(tmp_path, chunks)

    decoder = duckdb.connect()
    decoder.execute("SET TimeZone = 'UTC'")
    decode_batch(decoder, deliverable(values), load_settings())
    expected = decoder.execute(
        "SELECT c.record_id, c.event_key, f.field, f.value FROM batch_changes c"
        " JOIN batch_fields f USING (ev) ORDER BY ALL"
    ).fetchall()
    con = warehouse.connect_history(tmp_path)
    stored = con.execute(
        "SELECT record_id, event_key, field, value FROM change_values ORDER BY ALL"
    ).fetchall()
    assert len(expected) > len(events)  # several values per change: the check has teeth
    assert stored == expected
