"""A running dev org (a real subprocess over HTTPS) wired to the real Kafka broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
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
    private_key_file: Path  # the connected app's JWT signing key (its certificate is registered)

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE on these machines would replace our CA
        s.verify = str(self.org.ca_file)
        return s

    def sf(self, client: str | None = "tests") -> Salesforce:
        """simple-salesforce exactly as an integration would use it, in direct session mode."""
        return self.control.salesforce(client)


@contextmanager
def running_devorg(root: Path, kafka_bootstrap: str) -> Iterator[DevOrgHandle]:
    """A dev org process on a free port over its own topics, with a JWT certificate registered
    (an RSA key made here; the org reads the public half at start)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_file, public_file = root / "jwt-key.pem", root / "jwt-cert.pem"
    private_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    public_file.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    ))  # fmt: skip
    suffix = uuid.uuid4().hex[:10]
    config = write_config(root, kafka_bootstrap, suffix, devorg_port=_free_port())
    raw = yaml.safe_load(config.read_text())
    raw["devorg"]["jwt_public_key_file"] = str(public_file)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as env:  # restored however the fixture ends
        env.setenv("SF_SYNC_CONFIG", str(config))  # the org's process reads it too
        env.delenv("SF_SYNC_HOME", raising=False)
        env.delenv("SF_SYNC_KAFKA_BOOTSTRAP", raising=False)
        settings = load_settings(config)
        org = devorg_settings(settings)
        ensure_topics(kafka_bootstrap, settings.topics, partitions=3)
        try:
            service.start(org)
            yield DevOrgHandle(root, settings, org, DevorgControl(org), private_file)
        finally:
            service.stop(org)
            delete_topics(kafka_bootstrap, settings.topics)


@pytest.fixture(scope="module")
def devorg(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[DevOrgHandle]:
    with running_devorg(tmp_path_factory.mktemp("devorg"), kafka_bootstrap) as handle:
        yield handle


@pytest.fixture
def sf(devorg: DevOrgHandle) -> Iterator[Salesforce]:
    devorg.control.reset_faults()
    yield devorg.sf()
    devorg.control.reset_faults()
