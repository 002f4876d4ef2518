"""A dev org for the client's tests: the ``devorg`` fixture of ``tests/devorg`` plus a
registered JWT certificate (an RSA key made here; the org reads its public half at start)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sf_sync.salesforce import Credentials, RetryPolicy, SalesforceClient
from tests.devorg.conftest import DevOrgHandle, running_devorg

FAST_RETRY = RetryPolicy(attempts=8, base_delay_s=0.01, max_delay_s=0.05)


@dataclass
class ClientOrg(DevOrgHandle):
    """The dev org plus ready-made credentials and clients for each login flow."""

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
            base = {"instance_url": self.org.instance_url, "session_id": self.control.token()}
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
    with running_devorg(tmp_path_factory.mktemp("sforg"), kafka_bootstrap) as handle:
        yield ClientOrg(**vars(handle))


@pytest.fixture
def org(devorg: ClientOrg) -> Iterator[ClientOrg]:
    """The module's dev org with no faults on, before and after the test."""
    devorg.control.reset_faults()
    yield devorg
    devorg.control.reset_faults()
