"""Evaluate the sensor and execute the runs it asks for, in this process, until caught up.

``sf-sync ingest`` and the tests use this: the same sensor function and the same job the
daemon would run, minus the daemon. The cursor lives in memory; a new invocation starts from
the consumer group's committed offsets, which the runs move once their data is durable.
"""

from dataclasses import dataclass, field

import dagster as dg

from sf_sync import warehouse
from sf_sync.resources import SfSyncResource

#: Console logs at INFO: a terminal wants the run's summary, not every step event.
_QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class RunnerReport:
    ticks: int = 0
    runs: list[str] = field(default_factory=list)
    skip_reason: str | None = None

    @property
    def broker_unreachable(self) -> bool:
        from sensors.kafka_offsets import UNREACHABLE

        return bool(self.skip_reason and self.skip_reason.startswith(UNREACHABLE))


def run_until_caught_up(
    instance: dg.DagsterInstance,
    *,
    max_ticks: int = 1000,
    cursor: str | None = None,
) -> RunnerReport:
    """Ticks the sensor and executes every requested run; stops when a tick asks for none.

    Raises ``dagster.DagsterExecutionError`` (or the run's own error) when a run fails, so a
    script or CI step fails loudly; nothing past the failing range is marked done. Once
    caught up, it publishes what the runs left unpublished (``publish_every_s``): a script
    that ingests then queries sees everything it ingested.
    """
    from definitions import defs  # late: the code location imports this package

    resource = SfSyncResource()  # configured from the environment, as in the code location
    sensor = defs.resolve_sensor_def("kafka_offsets_sensor")
    job = defs.resolve_job_def("ingest_job")
    report = RunnerReport()
    for _ in range(max_ticks):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"sf_sync": resource}
        ) as context:
            result = sensor(context)
        report.ticks += 1
        if isinstance(result, dg.SkipReason):
            report.skip_reason = result.skip_message
            break
        for request in result.run_requests or []:
            outcome = job.execute_in_process(
                run_config={**request.run_config, **_QUIET},
                partition_key=request.partition_key,
                tags=request.tags,
                instance=instance,
            )
            report.runs.append(outcome.run_id)
        cursor = result.cursor
        if not result.run_requests:
            report.skip_reason = result.skip_reason.skip_message if result.skip_reason else None
            break
    home = resource.settings().home
    if warehouse.publication_pending(home):
        warehouse.publish(home)
    return report
