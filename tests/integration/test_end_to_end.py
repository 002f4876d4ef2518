"""A known stream through the real broker, the sensor and the runs, compared exactly."""

from __future__ import annotations

import random

from sf_sync import synth
from sf_sync.invariants import RANGE_HOLES, duplicate_changes, validity_breaks, violations
from tests.conftest import Project
from tests.integration.history_compare import assert_same_history, stored_history


def test_stream_becomes_exact_history(project: Project) -> None:
    events = synth.generate(seed=11, records=40, events=600)
    project.produce(project.account_topic, synth.messages(events))

    runs = project.ingest()

    assert runs, "the sensor should have requested at least one run"
    con = project.history()
    assert_same_history(stored_history(con), synth.expected_history(events))
    for rule in (duplicate_changes, RANGE_HOLES, validity_breaks):
        assert violations(con, rule) == (0, [])
    # The analyst-facing views carry the flat field names.
    current = dict(con.execute("SELECT Id, BillingCity FROM account_current").fetchall())
    expected_current = {}
    for rid, _v, _f, valid_to, _d, state in synth.expected_history(events).versions:
        if valid_to is None:
            expected_current[rid] = state.get("BillingCity")
    assert current == expected_current


def test_confluent_format_gives_the_same_history(project: Project) -> None:
    """The same logical stream through the connector shape (with and without envelope)."""
    events = synth.generate(seed=5, records=15, events=200)
    topic = project.account_topic
    settings_text = (project.root / "sf-sync.yaml").read_text()
    (project.root / "sf-sync.yaml").write_text(
        settings_text.replace("format: cometd", "format: confluent")
    )
    half = len(events) // 2
    project.produce(topic, synth.messages(events[:half], "confluent"))
    project.produce(topic, synth.messages(events[half:], "confluent-envelope"))

    project.ingest()

    assert_same_history(stored_history(project.history()), synth.expected_history(events))


def test_duplicates_shuffles_and_repeated_ranges_change_nothing(project: Project) -> None:
    events = synth.generate(seed=3, records=30, events=400)
    msgs = list(synth.messages(events))
    rnd = random.Random(1)
    noisy = msgs + rnd.sample(msgs, 120)  # at-least-once: a third delivered twice
    rnd.shuffle(noisy)  # and in no particular order
    # scattered over partitions regardless of key
    project.produce(project.account_topic, [(k, v, i % 3) for i, (k, v) in enumerate(noisy)])

    project.ingest()
    con = project.history()
    first = stored_history(con)
    assert_same_history(first, synth.expected_history(events))
    (rows,) = con.execute(
        "SELECT count(*) FROM change_events WHERE source = 'salesforce'"
    ).fetchone()
    assert rows == sum(len(e.record_ids) for e in events)
    con.close()

    # The same ranges again, straight through the ingest path: nothing changes.
    from sf_sync.ingest import ingest_ranges
    from sf_sync.ranges import OffsetRange

    ranges = [
        OffsetRange(t, p, s, e)
        for t, p, s, e in project.history()
        .execute("SELECT topic, kafka_partition, start_offset, end_offset FROM ingested_ranges")
        .fetchall()
    ]
    before = _table_fingerprints(project)
    report = ingest_ranges(project.settings, ranges)
    assert report.messages == 0 and report.read == ()
    assert _table_fingerprints(project) == before


def _table_fingerprints(project: Project) -> dict[str, int]:
    con = project.history()
    out = {}
    for table in (
        "change_events",
        "field_history",
        "change_values",
        "sv_salesforce_account_open",
        "sv_salesforce_account_closed",
        "dead_letters",
        "gaps",
        "ingested_ranges",
    ):
        (out[table],) = con.execute(
            f"SELECT count(*) || ':' || coalesce(sum(hash(t)), 0) FROM {table} t"
        ).fetchone()
    con.close()
    return out
