"""Asset checks over the whole published history, on demand and on a schedule.

Every run already checks the same rules over what it wrote (``assets.history.RUN_CHECKS``),
which costs what the run costs; these look at every row, which at ten million versions takes
seconds, so they run once a day (``history_checks_schedule``) and whenever someone asks in
the UI, on the analysts' copy (no writer lock is taken or waited for).
"""

import dagster as dg

from assets.history import CHANGE_EVENTS, RECORD_VERSIONS, VIOLATION, check_result
from sf_sync import invariants, warehouse
from sf_sync.resources import SfSyncResource


def _check(sf_sync: SfSyncResource, rule: invariants.Rule, what: str) -> dg.AssetCheckResult:
    path = sf_sync.settings().history_path
    if not path.exists():
        return dg.AssetCheckResult(passed=True, metadata={"note": "no history published yet"})
    con = warehouse.connect(path, read_only=True)
    try:
        return check_result(*invariants.violations(con, rule), what)
    finally:
        con.close()


@dg.asset_check(
    asset=CHANGE_EVENTS,
    description="No change in the whole history is stored twice or made into two versions.",
)
def no_duplicate_changes_in_history(sf_sync: SfSyncResource) -> dg.AssetCheckResult:
    return _check(sf_sync, invariants.duplicate_changes, VIOLATION["no_duplicate_changes"])


@dg.asset_check(
    asset=RECORD_VERSIONS,
    description="Every record's versions tile time: no overlap, no hole, one open.",
)
def non_overlapping_versions_in_history(sf_sync: SfSyncResource) -> dg.AssetCheckResult:
    return _check(sf_sync, invariants.validity_breaks, VIOLATION["non_overlapping_versions"])


CHECKS = [no_duplicate_changes_in_history, non_overlapping_versions_in_history]

history_checks_job = dg.define_asset_job(
    "history_checks_job",
    selection=dg.AssetSelection.checks(*CHECKS),
    description="Checks the invariants over the whole published history.",
)

history_checks_schedule = dg.ScheduleDefinition(
    name="history_checks_schedule",
    job=history_checks_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Once a day: what every run checks over its own rows, over all of them.",
)
