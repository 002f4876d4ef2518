"""Late and out-of-order changes across runs end in the history in-order delivery gives.

No Kafka here: batches go straight into ``store_batch`` against a real DuckDB file, so many
delivery orders can be tried quickly. The broker path is covered in tests/integration.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from sf_sync import synth, warehouse
from sf_sync.config import load_settings
from sf_sync.decode import RAW_SCHEMA
from sf_sync.ingest import store_batch
from sf_sync.invariants import DUPLICATE_CHANGES, validity_breaks, violations
from sf_sync.ranges import OffsetRange
from tests.integration.history_compare import assert_same_history, stored_history

TOPIC = "salesforce.cdc.Account"


def deliver(home: Path, batches: list[list[bytes]]) -> None:
    settings = replace(load_settings(), home=home)
    offset = 0
    for batch in batches:
        n = len(batch)
        table = pa.table(
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
        with warehouse.writer(home, publish=True) as con:
            store_batch(con, settings, table, [OffsetRange(TOPIC, 0, offset, offset + n)], None)
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
    assert violations(con, DUPLICATE_CHANGES)[0] == 0
    assert violations(con, validity_breaks)[0] == 0


def test_a_late_change_rewrites_later_old_values(tmp_path: Path) -> None:
    events = synth.generate(seed=9, records=1, events=6)
    values = [v for _, v in synth.messages(events)]
    deliver(tmp_path, [values[:2] + values[3:], [values[2]]])  # event 2 arrives last
    con = warehouse.connect_history(tmp_path)
    (late,) = con.execute("SELECT count(*) FROM account_versions").fetchone()
    assert late == 6
    assert_same_history(stored_history(con), synth.expected_history(events))
