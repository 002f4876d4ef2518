"""Publishes what runs left unpublished once the analysts' copy is old enough.

A run refreshes ``history.duckdb`` only when the last refresh is at least ``publish_every_s``
old (each refresh copies the whole warehouse). When the stream goes quiet, no further run
comes to refresh it; this sensor asks for a small run that does, so the copy lags the
warehouse by at most that interval (plus a tick, or the run in progress). With
``publish_every_s: 0`` every run publishes and the sensor has nothing to do.
"""

import dagster as dg

from assets.history import WAREHOUSE_POOL
from sf_sync import warehouse
from sf_sync.resources import SfSyncResource


@dg.op(pool=WAREHOUSE_POOL)
def publish_history(context: dg.OpExecutionContext, sf_sync: SfSyncResource) -> None:
    """Copies the warehouse to the analysts' ``history.duckdb`` if it changed since."""
    copied = warehouse.publish(sf_sync.settings().home)
    context.log.info("published the history" if copied else "the history was up to date")


@dg.job(description="Refresh the analysts' copy of the history (history.duckdb).")
def publish_history_job() -> None:
    publish_history()


@dg.sensor(
    job=publish_history_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes the history when runs left commits unpublished for publish_every_s.",
)
def publish_history_sensor(
    context: dg.SensorEvaluationContext, sf_sync: SfSyncResource
) -> dg.RunRequest | dg.SkipReason:
    settings = sf_sync.settings()
    if settings.publish_every_s <= 0:
        return dg.SkipReason("every run publishes (duckdb.publish_every_s is 0)")
    if not warehouse.publication_due(settings.home, settings.publish_every_s):
        return dg.SkipReason("the analysts' copy is up to date or younger than publish_every_s")
    if warehouse.writer_active(settings.home):  # else a run per tick while ingestion writes
        return dg.SkipReason("a writer is running; it publishes when due")
    return dg.RunRequest()
