"""Shared fixtures: a real Kafka broker and an isolated sf-sync project per test.

The broker is the one ``.ci/run`` (or you) started at ``$SF_SYNC_KAFKA_BOOTSTRAP``
(default 127.0.0.1:9092); if none answers, the session starts its own on a free port and
stops it at the end. Each test gets its own topics, state folder and configuration file.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sf_sync.config import Settings, load_settings
from sf_sync.kafka import broker
from sf_sync.kafka.admin import delete_topics, ensure_topics
from sf_sync.kafka.produce import produce

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bootstrap = os.environ.get("SF_SYNC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    try:
        broker.wait_until_ready(bootstrap, 3)
        yield bootstrap
        return
    except (TimeoutError, broker.BrokerError):
        pass
    state = tmp_path_factory.mktemp("kafka-session")
    status = broker.start_broker(state, port=_free_port())
    try:
        yield status.bootstrap
    finally:
        broker.stop_broker(state)


@dataclass
class Project:
    """One isolated sf-sync installation: topics, state folder, configuration."""

    root: Path
    bootstrap: str
    suffix: str

    @property
    def settings(self) -> Settings:
        return load_settings(self.root / "sf-sync.yaml")

    def topic(self, name: str) -> str:
        return f"{name}.{self.suffix}"

    @property
    def account_topic(self) -> str:
        return self.topic("cdc.Account")

    def produce(self, topic: str, messages, **kwargs) -> int:
        return produce(self.bootstrap, topic, messages, **kwargs)

    def ingest(self) -> list[str]:
        """Ticks the sensor and runs what it asks, in process, like ``sf-sync ingest``."""
        from sensors.runner import run_until_caught_up

        with dg.instance_for_test() as instance:
            report = run_until_caught_up(instance)
            for run_id in report.runs:
                assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
            return report.runs

    def history(self):
        from sf_sync import warehouse

        return warehouse.connect_history(self.settings.home)


def write_config(
    root: Path,
    bootstrap: str,
    suffix: str,
    *,
    partitions_cap: int = 250_000,
    group: str | None = None,
    devorg_port: int | None = None,
) -> Path:
    config = {
        "home": "state",
        "kafka": {
            "bootstrap": bootstrap,
            "group_id": group or f"sf-sync-{suffix}",
            "max_range_messages": partitions_cap,
        },
        "objects": {
            "Account": {"field_types": {"CreatedDate": "datetime", "LastModifiedDate": "datetime"}},
            "Contact": {
                "field_types": {
                    "CreatedDate": "datetime",
                    "LastModifiedDate": "datetime",
                    "Birthdate": "date",
                }
            },
        },
        "streams": [
            {"name": "accounts", "topic": f"cdc.Account.{suffix}", "format": "cometd"},
            {"name": "contacts", "topic": f"cdc.Contact.{suffix}", "format": "confluent"},
            {
                "name": "customer_change",
                "topic": f"pe.Customer_Change__e.{suffix}",
                "format": "platform_event",
                "platform_event": {
                    "object_field": "Object__c",
                    "record_id_field": "Record_Id__c",
                    "change_type_field": "Change_Type__c",
                    "changed_fields_field": "Changed_Fields__c",
                    "data_field": "Payload__c",
                },
            },
            {
                "name": "webapp",
                "topic": f"webapp.changes.{suffix}",
                "format": "external",
                "source": "webapp",
            },
        ],
    }
    if devorg_port is not None:  # the dev org writes to the same topics the pipeline reads
        config["objects"]["Account"]["custom_fields"] = {
            "Customer_Number__c": {"type": "string", "length": 40, "external_id": True,
                                   "unique": True},
        }  # fmt: skip
        config["objects"]["Invoice__c"] = {
            "key_prefix": "a0I",
            "fields": {"Amount__c": {"type": "currency"}, "Due__c": {"type": "date"},
                       "Account__c": {"type": "reference", "reference_to": "Account"}},
        }  # fmt: skip
        config["devorg"] = {
            "port": devorg_port,
            "change_events": {"Account": "accounts", "Contact": "contacts"},
            "platform_events": {"Customer_Change__e": "customer_change"},
        }
    path = root / "sf-sync.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def project(
    tmp_path: Path,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Project]:
    suffix = uuid.uuid4().hex[:10]
    partitions = getattr(request, "param", {}).get("partitions", 3)
    config = write_config(tmp_path, kafka_bootstrap, suffix)
    for var in ("SF_SYNC_HOME", "SF_SYNC_KAFKA_BOOTSTRAP", "SF_SYNC_KAFKA_GROUP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SF_SYNC_CONFIG", str(config))
    proj = Project(tmp_path, kafka_bootstrap, suffix)
    ensure_topics(kafka_bootstrap, proj.settings.topics, partitions=partitions)
    yield proj
    delete_topics(kafka_bootstrap, proj.settings.topics)
