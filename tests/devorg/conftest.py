"""A running dev org (a real subprocess over HTTPS) wired to the real Kafka broker."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce

from sf_sync.config import Settings, load_settings
from sf_sync.devorg import service
from sf_sync.devorg.control import DevorgControl
from sf_sync.devorg.settings import DevorgSettings, devorg_settings
from sf_sync.kafka.admin import delete_topics, ensure_topics
from tests.conftest import _free_port, write_config


@dataclass
class DevOrgHandle:
    root: Path
    settings: Settings
    org: DevorgSettings
    control: DevorgControl

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE on these machines would replace our CA
        s.verify = str(self.org.ca_file)
        return s

    def sf(self, client: str | None = "tests") -> Salesforce:
        """simple-salesforce exactly as an integration would use it, in direct session mode."""
        return self.control.salesforce(client)


@pytest.fixture(scope="module")
def devorg(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[DevOrgHandle]:
    root = tmp_path_factory.mktemp("devorg")
    suffix = uuid.uuid4().hex[:10]
    config = write_config(root, kafka_bootstrap, suffix, devorg_port=_free_port())
    saved = {
        k: os.environ.get(k) for k in ("SF_SYNC_CONFIG", "SF_SYNC_HOME", "SF_SYNC_KAFKA_BOOTSTRAP")
    }
    os.environ["SF_SYNC_CONFIG"] = str(config)
    os.environ.pop("SF_SYNC_HOME", None)
    os.environ.pop("SF_SYNC_KAFKA_BOOTSTRAP", None)
    settings = load_settings(config)
    org = devorg_settings(settings)
    ensure_topics(kafka_bootstrap, settings.topics, partitions=3)
    service.start(org)
    try:
        yield DevOrgHandle(root, settings, org, DevorgControl(org))
    finally:
        service.stop(org)
        delete_topics(kafka_bootstrap, settings.topics)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def sf(devorg: DevOrgHandle) -> Iterator[Salesforce]:
    devorg.control.reset_faults()
    yield devorg.sf()
    devorg.control.reset_faults()
