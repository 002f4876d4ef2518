"""Asset checks over the published history: the invariants the pipeline promises."""

import dagster as dg

from assets.history import CHANGE_EVENTS, RAW_EVENTS, RECORD_VERSIONS
from sf_sync import invariants, warehouse
from sf_sync.resources import SfSyncResource


def _check(sf_sync: SfSyncResource, query: invariants.Rule, what: str) -> dg.AssetCheckResult:
    path = sf_sync.settings().history_path
    if not path.exists():
        return dg.AssetCheckResult(passed=True, metadata={"note": "no history published yet"})
    con = warehouse.connect(path, read_only=True)
    try:
        count, sample = invariants.violations(con, query)
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=count == 0,
        description=f"{count} {what}" if count else None,
        metadata={
            "violations": count,
            "sample": dg.MetadataValue.json([list(map(str, r)) for r in sample]),
        },
    )


@dg.asset_check(
    asset=CHANGE_EVENTS,
    blocking=True,
    description="No change (source, event, record) is stored twice or made into two versions.",
)
def no_duplicate_changes(sf_sync: SfSyncResource) -> dg.AssetCheckResult:
    return _check(sf_sync, invariants.duplicate_changes, "duplicated changes")


@dg.asset_check(
    asset=RAW_EVENTS,
    description="Ingested offset ranges of each partition meet end to start, with the"
    " offsets retention deleted before they were read (RETENTION_LOSS gaps) counted as"
    " covered. Not blocking: runs of one tick may finish out of order and leave a hole"
    " for a moment, which the next run fills.",
)
def contiguous_offset_ranges(sf_sync: SfSyncResource) -> dg.AssetCheckResult:
    return _check(sf_sync, invariants.RANGE_HOLES, "holes or overlaps in ingested ranges")


@dg.asset_check(
    asset=RECORD_VERSIONS,
    blocking=True,
    description="Each record's versions tile time: no overlap, no hole, one open.",
)
def non_overlapping_versions(sf_sync: SfSyncResource) -> dg.AssetCheckResult:
    return _check(sf_sync, invariants.validity_breaks, "broken validity intervals")


CHECKS = [no_duplicate_changes, contiguous_offset_ranges, non_overlapping_versions]
