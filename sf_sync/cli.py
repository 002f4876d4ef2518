"""The ``sf-sync`` command: local broker, topics, ingest, demo and queries."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sf_sync.config import Settings, load_settings


def _port(settings: Settings, override: int | None) -> int:
    if override:
        return override
    first = settings.bootstrap.split(",")[0]
    return int(first.rsplit(":", 1)[1]) if ":" in first else 9092


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from sf_sync.kafka import broker

    port = _port(settings, args.port)
    if args.action == "start":
        status = broker.start_broker(settings.kafka_dir, port=port)
    elif args.action == "stop":
        status = broker.stop_broker(settings.kafka_dir)
    else:
        status = broker.broker_status(settings.kafka_dir, port=port)
    print(f"kafka: {status.detail} (pid {status.pid}, bootstrap {status.bootstrap})")
    return 0 if (status.ready or args.action == "stop") else 1


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from sf_sync.kafka.admin import ensure_topics

    created = ensure_topics(settings.bootstrap, settings.topics, partitions=args.partitions)
    for topic in settings.topics:
        print(f"{topic}: {'created' if topic in created else 'exists'}")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from sensors.runner import run_until_caught_up

    with _instance() as instance:
        report = run_until_caught_up(instance, max_ticks=args.max_ticks)
        print(f"{report.ticks} sensor ticks, {len(report.runs)} runs")
        for run_id in report.runs:
            run = instance.get_run_by_id(run_id)
            partition = run.tags.get("dagster/partition")
            messages = run.tags.get("sf_sync/messages")
            print(f"  run {run_id[:8]} {run.status.value} day={partition} messages={messages}")
        if report.skip_reason:
            print(f"sensor: {report.skip_reason}")
        failed = [
            r
            for r in report.runs
            if instance.get_run_by_id(r).status != dg.DagsterRunStatus.SUCCESS
        ]
    if failed:
        return 1
    return 2 if report.broker_unreachable else 0


def _instance():
    """The Dagster instance of ``$DAGSTER_HOME`` when set, else a throwaway one."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from sf_sync import warehouse

    con = warehouse.connect_history(settings.home)
    try:
        rel = con.sql(args.query)
        if rel is not None:
            rel.show(max_rows=args.max_rows, max_width=200)
    finally:
        con.close()
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Everything on embedded defaults: broker, topics, a stream, ingest, a look at the result."""
    from sf_sync.demo import produce_demo_stream

    steps = [
        argparse.Namespace(action="start", port=None, func=cmd_kafka),
        argparse.Namespace(action="create", partitions=3, func=cmd_topics),
    ]
    for step in steps:
        if step.func(step, settings):
            return 1
    sent = produce_demo_stream(settings, records=args.records, events=args.events, seed=args.seed)
    print(f"produced {sent}")
    if cmd_ingest(argparse.Namespace(max_ticks=1000), settings):
        return 1
    for query in (
        "SELECT change_type, count(*) AS events FROM change_events GROUP BY 1 ORDER BY 1",
        "SELECT record_id, field, old_value, new_value, changed_at, changed_by"
        " FROM field_history WHERE field = 'BillingCity' ORDER BY changed_at DESC LIMIT 5",
        "SELECT Id, Name, BillingCity, version, valid_from, is_deleted FROM account_current"
        " ORDER BY valid_from DESC LIMIT 5",
        "SELECT topic, kafka_offset, error FROM dead_letters ORDER BY ALL",
    ):
        print(f"\n-- {query}")
        cmd_sql(argparse.Namespace(query=query, max_rows=10), settings)
    print(f'\nHistory: {settings.history_path}  (sf-sync sql "..." to query it)')
    print("Stop the broker with: sf-sync kafka stop")
    return 0


def cmd_devorg(args: argparse.Namespace, settings: Settings) -> int:
    from sf_sync.devorg import service
    from sf_sync.devorg.control import DevorgControl
    from sf_sync.devorg.settings import devorg_settings

    ds = devorg_settings(settings, port=args.port)
    if args.action == "start":
        st = service.start(ds)
    elif args.action == "stop":
        st = service.stop(ds)
    elif args.action == "status":
        st = service.status(ds)
    else:
        control = DevorgControl(ds)
        if args.action == "faults":
            updates = dict(kv.split("=", 1) for kv in args.set or [])
            print(json.dumps(control.set_faults(updates) if updates else control.faults()))
        else:  # expire-sessions
            print(json.dumps(control.expire_sessions()))
        return 0
    print(f"devorg: {st.detail}")
    if st.ready:
        print(f"  instance URL: {st.instance_url}")
        print(f"  CA to trust:  {st.ca_file}")
    return 0 if (st.ready or args.action == "stop") else 1


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from sf_sync.devorg.control import DevorgControl
    from sf_sync.devorg.settings import devorg_settings
    from sf_sync.devorg.simulate import Simulator

    ds = devorg_settings(settings)
    control = DevorgControl(ds)
    sf = control.salesforce(client=args.client)
    webapp = next((s.topic for s in settings.streams if s.format == "external"), None)
    sim = Simulator(
        sf, lambda rid: control.undelete(sf, [rid]), bootstrap=settings.bootstrap,
        webapp_topic=webapp, seed=args.seed,
    )  # fmt: skip
    if args.accounts or args.contacts:
        sim.seed(args.accounts, args.contacts)
        print(f"seeded {len(sim.accounts)} accounts and {len(sim.contacts)} contacts", flush=True)
    else:
        sim.accounts = [r["Id"] for r in sf.query_all("SELECT Id FROM Account")["records"]]
        sim.contacts = [r["Id"] for r in sf.query_all("SELECT Id FROM Contact")["records"]]
    report = sim.run(operations=args.operations, seconds=args.seconds, rate=args.rate)
    print(report.summary())
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from sf_sync import stack

    return stack.up(settings, ui_port=args.ui_port, rate=args.rate, seed=args.seed)


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from sf_sync import stack

    return stack.down(settings)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sf-sync", description=__doc__)
    p.add_argument(
        "--config",
        help="configuration file (default: $SF_SYNC_CONFIG, "
        "./sf-sync.yaml, or the packaged defaults)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kafka", help="run the local Apache Kafka broker")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--port", type=int, help="broker port (default: from the bootstrap setting)")
    k.set_defaults(func=cmd_kafka)

    t = sub.add_parser("topics", help="create the configured topics if missing")
    t.add_argument("action", choices=["create"])
    t.add_argument("--partitions", type=int, default=3)
    t.set_defaults(func=cmd_topics)

    i = sub.add_parser("ingest", help="tick the sensor and run its runs until caught up")
    i.add_argument("--max-ticks", type=int, default=1000)
    i.set_defaults(func=cmd_ingest)

    q = sub.add_parser("sql", help="query the published history (read-only)")
    q.add_argument("query")
    q.add_argument("--max-rows", type=int, default=40)
    q.set_defaults(func=cmd_sql)

    o = sub.add_parser("devorg", help="the local Salesforce stand-in (HTTPS, CDC to Kafka)")
    o.add_argument(
        "action", choices=["start", "stop", "status", "faults", "expire-sessions"],
        help="faults: show, or change with --set key=value (e.g. error_rate=0.2)",
    )  # fmt: skip
    o.add_argument("--port", type=int, help="HTTPS port (default: devorg.port, 8443)")
    o.add_argument("--set", action="append", metavar="KEY=VALUE", help="a fault to change")
    o.set_defaults(func=cmd_devorg)

    m = sub.add_parser("simulate", help="realistic traffic through the dev org's API")
    m.add_argument("--seed", type=int, default=7)
    m.add_argument("--rate", type=float, default=5.0, help="operations per second (0: flat out)")
    m.add_argument("--operations", type=int, help="stop after this many (default: no limit)")
    m.add_argument("--seconds", type=float, help="stop after this long (default: no limit)")
    m.add_argument("--accounts", type=int, default=0, help="seed this many accounts first")
    m.add_argument("--contacts", type=int, default=0, help="seed this many contacts first")
    m.add_argument("--client", default="simulator", help="Sforce-Call-Options client name")
    m.set_defaults(func=cmd_simulate)

    u = sub.add_parser("up", help="broker, dev org, Dagster UI and simulator, in the background")
    u.add_argument("--ui-port", type=int, default=3000)
    u.add_argument("--rate", type=float, default=5.0, help="simulated operations per second")
    u.add_argument("--seed", type=int, default=7)
    u.set_defaults(func=cmd_up)

    w = sub.add_parser("down", help="stop what `sf-sync up` started")
    w.set_defaults(func=cmd_down)

    d = sub.add_parser("demo", help="broker + topics + a synthetic stream + ingest, end to end")
    d.add_argument("--records", type=int, default=200)
    d.add_argument("--events", type=int, default=5000)
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config:  # so the processes we start (dev org, Dagster) read the same file
        os.environ["SF_SYNC_CONFIG"] = str(Path(args.config).resolve())
    settings = load_settings(args.config)
    # The definitions module sits at the project root; make it importable from anywhere.
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return args.func(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
