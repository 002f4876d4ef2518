"""``SalesforceResource``: Dagster configuration for :class:`SalesforceClient`.

The only module of ``sf_sync.salesforce`` that imports Dagster. Give secrets as
``dg.EnvVar(...)`` with the names the dev org also reads (``sf_sync/devorg/settings.py``)::

    SalesforceResource(
        login_url="https://login.salesforce.com",
        auth_method="client_credentials",
        client_id=dg.EnvVar("SF_SYNC_SF_CLIENT_ID"),
        client_secret=dg.EnvVar("SF_SYNC_SF_CLIENT_SECRET"),
    )
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from sf_sync.salesforce.auth import Credentials
from sf_sync.salesforce.client import DEFAULT_API_VERSION, RetryPolicy, SalesforceClient


class SalesforceResource(dg.ConfigurableResource):
    """Where and how to log in to a Salesforce org, and the client's limits."""

    login_url: str = Field(
        default="https://login.salesforce.com",
        description="OAuth/SOAP login host: login/test.salesforce.com, a My Domain URL, or "
        "the dev org's instance URL",
    )
    auth_method: str = Field(
        default="client_credentials", description="client_credentials | jwt | password | session"
    )
    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False, description="use dg.EnvVar")
    username: str | None = None
    password: str | None = Field(default=None, repr=False, description="use dg.EnvVar")
    security_token: str | None = Field(default=None, repr=False, description="use dg.EnvVar")
    private_key: str | None = Field(default=None, description="JWT: path of the PEM key file")
    session_id: str | None = Field(
        default=None, repr=False, description="session auth: use dg.EnvVar"
    )
    instance_url: str | None = Field(default=None, description="session auth: the org's URL")
    ca_file: str | None = Field(default=None, description="PEM CA bundle to trust (dev org)")
    api_version: str = DEFAULT_API_VERSION
    client_name: str = Field(default="sf-sync", description="Sforce-Call-Options client=")
    api_budget_share: float = Field(
        default=0.8, description="stop before the org's daily API usage reaches this share"
    )
    bulk_threshold: int = Field(
        default=10_000, description="records above which reads and writes use Bulk API 2.0"
    )
    retry_attempts: int = 5

    def credentials(self) -> Credentials:
        return Credentials(
            method=self.auth_method,  # type: ignore[arg-type]  # checked by Credentials
            login_url=self.login_url or None,
            client_id=self.client_id,
            client_secret=self.client_secret,
            username=self.username,
            password=self.password,
            security_token=self.security_token,
            private_key=self.private_key,
            session_id=self.session_id,
            instance_url=self.instance_url,
        )

    def get_client(self) -> SalesforceClient:
        """A logged-in client (one login per call; keep it for the run)."""
        return SalesforceClient(
            self.credentials(),
            api_version=self.api_version,
            ca_file=self.ca_file,
            client_name=self.client_name,
            api_budget_share=self.api_budget_share,
            bulk_threshold=self.bulk_threshold,
            retry=RetryPolicy(attempts=self.retry_attempts),
        )
