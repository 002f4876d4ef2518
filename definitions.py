"""The sf-sync code location: assets, checks, the ingest job and its sensor, the daily
whole-history checks."""

from __future__ import annotations

import dagster as dg

from assets.checks import CHECKS, history_checks_job, history_checks_schedule
from assets.history import ingest_kafka_ranges
from sensors.kafka_offsets import ingest_job, kafka_offsets_sensor
from sensors.publication import publish_history_job, publish_history_sensor
from sf_sync.resources import SfSyncResource

defs = dg.Definitions(
    assets=[ingest_kafka_ranges],
    asset_checks=CHECKS,
    jobs=[ingest_job, history_checks_job, publish_history_job],
    sensors=[kafka_offsets_sensor, publish_history_sensor],
    schedules=[history_checks_schedule],
    resources={"sf_sync": SfSyncResource()},
)
