"""Every login flow against the dev org over HTTPS; refusals; no secret in repr or logs."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sf_sync.salesforce import Credentials, LoginFailed
from sf_sync.salesforce.auth import http_session, login
from sf_sync.salesforce.resource import SalesforceResource
from tests.salesforce.conftest import ClientOrg


@pytest.mark.parametrize("method", ["client_credentials", "jwt", "password", "session"])
def test_each_login_flow_reaches_the_api(org: ClientOrg, method: str) -> None:
    client = org.client(method)
    assert client.instance_url == org.org.instance_url
    assert client.sf.Account.describe()["name"] == "Account"
    assert client.stats.api_calls == 1
    assert client.stats.logins == (0 if method == "session" else 1)


def test_password_login_uses_oauth_with_a_client_and_soap_without(org: ClientOrg) -> None:
    c = org.org.credentials
    http = http_session(org.org.ca_file)
    soap = org.credentials("password")
    oauth = org.credentials("password", client_id=c.client_id, client_secret=c.client_secret)
    for creds in (soap, oauth):
        session = login(creds, http, org.org.api_version)
        assert session.instance_url == org.org.instance_url
        assert org.client("session", creds=Credentials(
            "session", instance_url=session.instance_url, session_id=session.access_token,
        )).sf.limits()["DailyApiRequests"]["Max"] == org.org.daily_api_limit  # fmt: skip


def _other_key(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "other.pem"
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    return path


def test_bad_credentials_are_refused_clearly(org: ClientOrg, tmp_path: Path) -> None:
    cases = [
        (org.credentials("client_credentials", client_secret="wrong"), "invalid_client"),
        (org.credentials("client_credentials", client_id="nobody"), "invalid_client_id"),
        (org.credentials("password", password="wrong"), "INVALID_LOGIN"),
        (org.credentials("password", password="wrong", client_id=org.org.credentials.client_id,
                         client_secret=org.org.credentials.client_secret), "invalid_grant"),
        (org.credentials("jwt", private_key=str(_other_key(tmp_path))), "invalid_grant"),
        (org.credentials("jwt", username="someone@else"), "invalid_grant"),
    ]  # fmt: skip
    for creds, code in cases:
        with pytest.raises(LoginFailed, match=code) as err:
            org.client(creds=creds)
        assert "refused by" in str(err.value) and creds.method in str(err.value)
    with pytest.raises(LoginFailed, match="neither PEM text nor a readable file"):
        org.client(creds=org.credentials("jwt", private_key=str(tmp_path / "missing.pem")))


def test_jwt_takes_pem_text_too(org: ClientOrg) -> None:
    pem = org.private_key_file.read_text()
    assert org.client(creds=org.credentials("jwt", private_key=pem)).sf.limits()


def test_credentials_need_their_fields_and_https() -> None:
    with pytest.raises(ValueError, match="client_secret"):
        Credentials("client_credentials", login_url="https://x", client_id="a")
    with pytest.raises(ValueError, match="https"):
        Credentials("session", instance_url="http://x", session_id="s")
    with pytest.raises(ValueError, match="auth method"):
        Credentials("magic")  # type: ignore[arg-type]


def test_no_secret_in_repr_or_logs(org: ClientOrg, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = org.org.credentials
    pem = org.private_key_file.read_text()
    secrets = [c.client_secret, c.password, c.security_token, c.password + c.security_token]
    made = [org.credentials(m) for m in ("client_credentials", "password", "session")]
    made.append(org.credentials("jwt", private_key=pem))
    clients = [org.client(creds=creds) for creds in made]
    secrets += [made[2].session_id or "", pem.splitlines()[1]]
    secrets += [client._session.access_token for client in clients]
    with pytest.raises(LoginFailed) as refused:
        org.client(creds=org.credentials("password", password="wrong"))
    org.control.expire_sessions()
    clients[0].sf.limits()  # logs in again: that is logged too
    shown = [repr(x) for x in (*made, *clients)] + [str(x) for x in made]
    shown += [str(refused.value), caplog.text, repr(clients[0]._session)]
    for secret in secrets:
        assert secret
        for text in shown:
            assert secret not in text
    assert "'***'" in repr(made[0]) and "client_secret" in repr(made[0])
    assert "logging in again" in caplog.text


def test_resource_builds_a_client_from_env_vars(
    org: ClientOrg, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = org.org.credentials
    monkeypatch.setenv("SF_SYNC_SF_CLIENT_ID", c.client_id)
    monkeypatch.setenv("SF_SYNC_SF_CLIENT_SECRET", c.client_secret)
    resource = SalesforceResource(
        login_url=org.org.instance_url, auth_method="client_credentials",
        client_id=dg.EnvVar("SF_SYNC_SF_CLIENT_ID"),
        client_secret=dg.EnvVar("SF_SYNC_SF_CLIENT_SECRET"),
        ca_file=str(org.org.ca_file), api_version=org.org.api_version,
    )  # fmt: skip

    @dg.asset
    def account_count(salesforce: SalesforceResource) -> dg.MaterializeResult:
        client = salesforce.get_client()
        assert c.client_secret not in repr(salesforce)
        n = client.count("Account")
        return dg.MaterializeResult(metadata={"accounts": n, **client.stats.as_dict()})

    result = dg.materialize([account_count], resources={"salesforce": resource})
    assert result.success
    (mat,) = result.asset_materializations_for_node("account_count")
    assert mat.metadata["api_calls"].value == 1
