"""The change-history assets: one run reads its Kafka ranges and materialises them all.

Thin glue: the work is ``sf_sync.ingest.ingest_ranges``; this module only says which ranges
(from the sensor's run config, or a backfilled day's offsets) and reports what happened.
"""

from datetime import date

import dagster as dg

from sf_sync.config import Settings
from sf_sync.ingest import IngestReport, ingest_ranges
from sf_sync.kafka import client as kc
from sf_sync.planning import day_ranges
from sf_sync.ranges import OffsetRange
from sf_sync.resources import SfSyncResource

#: One partition per UTC day of the Kafka message timestamps; ``end_offset=1`` adds today.
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)

#: Runs that write the warehouse take a slot of this pool (limit 1, see dagster.yaml).
WAREHOUSE_POOL = "sf_sync_warehouse"

GROUP = "salesforce_history"
RAW_EVENTS = dg.AssetKey("raw_events")
CHANGE_EVENTS = dg.AssetKey("change_events")
FIELD_HISTORY = dg.AssetKey("field_history")
RECORD_VERSIONS = dg.AssetKey("record_versions")
GAPS = dg.AssetKey("gaps")
DEAD_LETTERS = dg.AssetKey("dead_letters")

SPECS = [
    dg.AssetSpec(
        RAW_EVENTS,
        group_name=GROUP,
        kinds={"parquet", "kafka"},
        description="Every message exactly as received (Parquet lake by event date).",
    ),
    dg.AssetSpec(
        CHANGE_EVENTS,
        deps=[RAW_EVENTS],
        group_name=GROUP,
        kinds={"duckdb"},
        description="One row per (event, record): who changed what, when, from where.",
    ),
    dg.AssetSpec(
        FIELD_HISTORY,
        deps=[CHANGE_EVENTS],
        group_name=GROUP,
        kinds={"duckdb"},
        description="One row per field change: old value, new value, who, when.",
    ),
    dg.AssetSpec(
        RECORD_VERSIONS,
        deps=[CHANGE_EVENTS],
        group_name=GROUP,
        kinds={"duckdb"},
        description="SCD2 versions; views <object>_versions and <object>_current.",
    ),
    dg.AssetSpec(
        GAPS,
        deps=[RAW_EVENTS],
        group_name=GROUP,
        kinds={"duckdb"},
        description="Gap and overflow events awaiting repair from Salesforce.",
    ),
    dg.AssetSpec(
        DEAD_LETTERS,
        deps=[RAW_EVENTS],
        group_name=GROUP,
        kinds={"duckdb"},
        description="Messages that could not be decoded, with the raw bytes and why.",
    ),
]


#: Checked by every run over what it wrote (``invariants.RUN_RULES``, run inside the writer);
#: ``assets/checks.py`` checks the same rules over the whole published history.
RUN_CHECKS = [
    dg.AssetCheckSpec(
        "no_duplicate_changes",
        asset=CHANGE_EVENTS,
        blocking=True,
        description="No change this run wrote is stored twice or made into two versions.",
    ),
    dg.AssetCheckSpec(
        "contiguous_offset_ranges",
        asset=RAW_EVENTS,
        description="Ingested offset ranges of each partition meet end to start, with the"
        " offsets retention deleted before they were read (RETENTION_LOSS gaps) counted as"
        " covered. Not blocking: runs of one tick may finish out of order and leave a hole"
        " for a moment, which the next run fills.",
    ),
    dg.AssetCheckSpec(
        "non_overlapping_versions",
        asset=RECORD_VERSIONS,
        blocking=True,
        description="The versions of each record this run changed tile time: no overlap,"
        " no hole, one open.",
    ),
]


#: What a violation of each check is, for its result's description.
VIOLATION = {
    "no_duplicate_changes": "duplicated changes",
    "contiguous_offset_ranges": "holes or overlaps in ingested ranges",
    "non_overlapping_versions": "broken validity intervals",
}


def check_result(count: int, sample: list, what: str, **key: object) -> dg.AssetCheckResult:
    """A check's result: how many rows broke its rule (``what``) and a sample of them."""
    return dg.AssetCheckResult(
        **key,
        passed=count == 0,
        description=f"{count} {what}" if count else None,
        metadata={
            "violations": count,
            "sample": dg.MetadataValue.json([list(map(str, r)) for r in sample]),
        },
    )


def check_results(report: IngestReport) -> list[dg.AssetCheckResult]:
    """The run's checks, over what it wrote, as Dagster results."""
    return [
        check_result(
            *report.checks[spec.name],
            VIOLATION[spec.name],
            asset_key=spec.asset_key,
            check_name=spec.name,
        )
        for spec in RUN_CHECKS
    ]


class IngestConfig(dg.Config):
    """Ranges as ``topic:partition:start:end``; empty means "the partition's days".

    ``lost_ranges`` (same form) are offsets that Kafka's retention deleted before they were
    read; the planner finds them, the run records each as a ``RETENTION_LOSS`` gap.
    """

    ranges: list[str] = []  # noqa: RUF012 - pydantic copies field defaults
    lost_ranges: list[str] = []  # noqa: RUF012


def _ranges(
    context: dg.AssetExecutionContext, config: IngestConfig, settings: Settings
) -> list[OffsetRange]:
    if config.ranges:
        return [OffsetRange.decode(r) for r in config.ranges]
    keys = context.partition_key_range
    return day_ranges(settings, date.fromisoformat(keys.start), date.fromisoformat(keys.end))


def _lag(settings: Settings) -> int | None:
    """Messages not yet committed by the consumer group, over all configured topics."""
    try:
        admin = kc.admin_client(settings.bootstrap)
        tps = kc.topic_partitions(admin, settings.topics)
        ends = kc.end_offsets(admin, tps)
        done = kc.committed_offsets(admin, settings.group_id, tps)
    except kc.BrokerUnavailable:
        return None
    return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())


def _metadata(report: IngestReport, lag: int | None) -> dict[dg.AssetKey, dict]:
    ranges = dg.MetadataValue.json([r.encode() for r in report.read])
    common = {"offset_ranges": ranges, "seconds": round(report.seconds.get("total", 0.0), 3)}
    if lag is not None:
        common["consumer_lag"] = lag
    return {
        RAW_EVENTS: {
            "messages": report.messages,
            "decoded_columnar": report.decoded_columnar,
            "lake_files": report.lake_files,
            "orphans_removed": report.orphans_removed,
            **common,
        },
        CHANGE_EVENTS: {
            "rows": report.new_changes,
            "duplicates_skipped": report.duplicate_changes,
            **common,
        },
        FIELD_HISTORY: {"rows": report.field_changes, **common},
        RECORD_VERSIONS: {
            "rows": report.versions,
            "records_rederived_for_late_events": report.late_records,
            **common,
        },
        GAPS: {"rows": report.gaps, **common},
        DEAD_LETTERS: {"rows": report.dead_letters, **common},
    }


@dg.multi_asset(
    name="ingest_kafka_ranges",
    specs=SPECS,
    check_specs=RUN_CHECKS,
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
)
def ingest_kafka_ranges(
    context: dg.AssetExecutionContext, config: IngestConfig, sf_sync: SfSyncResource
):
    """Reads exactly the run's offset ranges and folds them into the history, idempotently."""
    settings = sf_sync.settings()
    ranges = _ranges(context, config, settings)
    lost = [OffsetRange.decode(r) for r in config.lost_ranges]
    report = ingest_ranges(settings, ranges, run_id=context.run.run_id, lost=lost)
    context.log.info(report.summary())
    for key, metadata in _metadata(report, _lag(settings)).items():
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)
    yield from check_results(report)
