"""The sensor that turns new Kafka offsets into ingest runs over fixed ranges.

It asks the broker for end offsets only, hands out ``[start, end)`` ranges per partition
(capped, grouped by event day) and keeps the next start of each partition in its cursor.
"""

import dagster as dg

from assets.history import RUN_CHECKS, ingest_kafka_ranges
from sf_sync.kafka.client import BrokerUnavailable
from sf_sync.planning import RunPlan, plan_runs
from sf_sync.ranges import decode_cursor, encode_cursor
from sf_sync.resources import SfSyncResource

#: Skip reasons that mean "no broker", so scripts can tell it from "nothing to do".
UNREACHABLE = "Kafka unreachable"

ingest_job = dg.define_asset_job(
    "ingest_job",
    # The run's own checks (over what it wrote), not the whole-history ones (a daily job).
    selection=dg.AssetSelection.assets(ingest_kafka_ranges).without_checks()
    | dg.AssetSelection.checks(*(spec.key for spec in RUN_CHECKS)),
    description="Ingest exact Kafka offset ranges into the change history.",
)


def run_request(plan: RunPlan) -> dg.RunRequest:
    """The run for one plan; its config is the exact ranges, so it can be re-executed as is."""
    ranges = [r.encode() for r in plan.ranges]
    config: dict[str, list[str]] = {"ranges": ranges}
    if plan.lost:  # offsets retention deleted before they were read: the run records a gap
        config["lost_ranges"] = [r.encode() for r in plan.lost]
    return dg.RunRequest(
        partition_key=plan.day,
        run_config={"ops": {"ingest_kafka_ranges": {"config": config}}},
        tags={"sf_sync/messages": str(plan.messages), "sf_sync/ranges": str(len(ranges))},
    )


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches ingest runs for new offsets of the configured Kafka topics.",
)
def kafka_offsets_sensor(
    context: dg.SensorEvaluationContext, sf_sync: SfSyncResource
) -> dg.SensorResult | dg.SkipReason:
    settings = sf_sync.settings()
    try:
        plans, cursor = plan_runs(settings, decode_cursor(context.cursor))
    except BrokerUnavailable as exc:
        return dg.SkipReason(f"{UNREACHABLE} at {settings.bootstrap}: {exc}")
    if not plans:
        return dg.SensorResult(
            skip_reason=f"caught up on {len(settings.topics)} topics",
            cursor=encode_cursor(cursor),
        )
    return dg.SensorResult(
        run_requests=[run_request(p) for p in plans], cursor=encode_cursor(cursor)
    )
