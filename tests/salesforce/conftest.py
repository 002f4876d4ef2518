"""A dev org for the client's tests: the ``devorg`` fixture of ``tests/devorg`` plus a
registered JWT certificate (an RSA key made here; the org reads its public half at start)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sf_sync.config import load_settings
from sf_sync.devorg import service
from sf_sync.devorg.control import DevorgControl
from sf_sync.devorg.settings import devorg_settings
from sf_sync.kafka.admin import delete_topics, ensure_topics
from sf_sync.salesforce import Credentials, RetryPolicy, SalesforceClient
from tests.conftest import _free_port, write_config
from tests.devorg.conftest import DevOrgHandle

FAST_RETRY = RetryPolicy(attempts=8, base_delay_s=0.01, max_delay_s=0.05)


@dataclass
class ClientOrg(DevOrgHandle):
    private_key_file: Path = Path()

    def credentials(self, method: str = "client_credentials", **override: Any) -> Credentials:
        c = self.org.credentials
        base: dict[str, Any] = {"login_url": self.org.instance_url}
        if method == "client_credentials":
            base |= {"client_id": c.client_id, "client_secret": c.client_secret}
        elif method == "jwt":
            base |= {"client_id": c.client_id, "username": c.username,
                     "private_key": str(self.private_key_file)}  # fmt: skip
        elif method == "password":
            base |= {"username": c.username, "password": c.password,
                     "security_token": c.security_token}  # fmt: skip
        elif method == "session":
            base = {"instance_url": self.org.instance_url, "session_id": self.token()}
        return Credentials(method, **(base | override))  # type: ignore[arg-type]

    def client(self, method: str = "client_credentials", *, creds: Credentials | None = None,
               **kwargs: Any) -> SalesforceClient:  # fmt: skip
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("bulk_poll_wait_s", 0.2)
        return SalesforceClient(
            creds or self.credentials(method), ca_file=self.org.ca_file,
            api_version=self.org.api_version, **kwargs,
        )  # fmt: skip


@pytest.fixture(scope="module")
def devorg(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[ClientOrg]:
    root = tmp_path_factory.mktemp("sforg")
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
    names = ("SF_SYNC_CONFIG", "SF_SYNC_HOME", "SF_SYNC_KAFKA_BOOTSTRAP")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["SF_SYNC_CONFIG"] = str(config)
    os.environ.pop("SF_SYNC_HOME", None)
    os.environ.pop("SF_SYNC_KAFKA_BOOTSTRAP", None)
    settings = load_settings(config)
    org = devorg_settings(settings)
    ensure_topics(kafka_bootstrap, settings.topics, partitions=3)
    service.start(org)
    try:
        yield ClientOrg(root, settings, org, DevorgControl(org), private_file)
    finally:
        service.stop(org)
        delete_topics(kafka_bootstrap, settings.topics)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def org(devorg: ClientOrg) -> Iterator[ClientOrg]:
    """The module's dev org with no faults on, before and after the test."""
    devorg.control.reset_faults()
    yield devorg
    devorg.control.reset_faults()
