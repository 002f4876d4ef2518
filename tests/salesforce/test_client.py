"""The client's failure policy against the dev org's real faults, and its call marker."""

from __future__ import annotations

import pytest
import requests

from sf_sync.salesforce import (
    ApiBudgetExhausted,
    ApiLimitReached,
    RetriesExhausted,
    RetryPolicy,
    SessionExpired,
)
from tests.devorg.test_rest import events_for, header
from tests.salesforce.conftest import ClientOrg


def test_changes_carry_the_client_name(org: ClientOrg) -> None:
    client = org.client()
    (created,) = client.create_records("Account", [{"Name": "Echo"}]).results
    client.update_records("Account", [{"Id": created.id, "Phone": "1"}])
    renamed = org.client(client_name="sf-sync-repair")
    renamed.update_records("Account", [{"Id": created.id, "Phone": "2"}])
    events = events_for(org, org.org.change_streams["Account"].topic, created.id or "")
    origins = [header(e)["changeOrigin"] for e in events]
    rest = f"com/salesforce/api/rest/{org.org.api_version}"
    assert origins == [f"{rest};client=sf-sync"] * 2 + [f"{rest};client=sf-sync-repair"]


def test_reads_and_writes_complete_through_503s(org: ClientOrg) -> None:
    org.control.set_faults({"error_rate": 0.5, "seed": 11})
    client = org.client(retry=RetryPolicy(attempts=12, base_delay_s=0.001, max_delay_s=0.01))
    tag = "Flaky"
    report = client.create_records(
        "Account", [{"Name": f"{tag} {i}", "NumberOfEmployees": i} for i in range(450)]
    )
    assert report.complete and len(report.succeeded) == 450
    ids = [r.id for r in report.results]
    updated = client.update_records(
        "Account", [{"Id": i, "NumberOfEmployees": n * 2} for n, i in enumerate(ids)]
    )
    assert updated.complete and not updated.failed
    table = client.query_arrow("Account", ["Id", "NumberOfEmployees"], f"Name LIKE '{tag} %'")
    got = dict(zip(table["Id"].to_pylist(), table["NumberOfEmployees"].to_pylist(), strict=True))
    assert got == {i: n * 2 for n, i in enumerate(ids)}
    assert client.stats.retries > 0
    assert client.stats.api_calls > 3 + 3 + 3  # creates, updates, describe+count+query


def test_a_server_that_keeps_failing_gives_a_clean_error(org: ClientOrg) -> None:
    client = org.client(retry=RetryPolicy(attempts=3, base_delay_s=0.001))
    org.control.set_faults({"error_rate": 1.0})
    with pytest.raises(RetriesExhausted) as err:
        client.count("Account")
    assert err.value.status == 503 and err.value.error_code == "SERVER_UNAVAILABLE"
    assert err.value.attempts == 3 and client.stats.retries == 2
    with pytest.raises(RetriesExhausted) as write_err:
        client.create_records("Account", [{"Name": "Never"}])
    assert write_err.value.partial is not None and write_err.value.partial.attempted == 0


def test_backoff_grows_with_jitter_and_uses_the_injected_sleep(org: ClientOrg) -> None:
    slept: list[float] = []
    policy = RetryPolicy(attempts=4, base_delay_s=0.1, max_delay_s=0.3, jitter=0.5)
    client = org.client(retry=policy, sleep=slept.append)
    org.control.set_faults({"error_rate": 1.0})
    with pytest.raises(RetriesExhausted):
        client.sf.limits()
    assert len(slept) == 3
    for delay, base in zip(slept, (0.1, 0.2, 0.3), strict=True):
        assert base * 0.5 <= delay <= base * 1.5


def test_post_is_not_repeated_after_a_connection_cut(org: ClientOrg) -> None:
    client = org.client()
    assert not client._may_retry("api", "POST", None, requests.exceptions.ReadTimeout())
    assert not client._may_retry("api", "POST", 500, None)
    assert client._may_retry("api", "POST", 503, None)
    assert client._may_retry("api", "PATCH", 500, None)
    assert client._may_retry("api", "GET", None, requests.exceptions.ReadTimeout())


def test_expired_session_logs_in_again(org: ClientOrg) -> None:
    client = org.client("jwt")
    assert client.count("Account") >= 0
    before = client._session.access_token
    org.control.expire_sessions()
    assert client.count("Account") >= 0
    assert client.stats.relogins == 1 and client._session.access_token != before
    assert client.sf.session_id == client._session.access_token


def test_expired_existing_session_is_a_clear_error(org: ClientOrg) -> None:
    client = org.client("session")
    client.sf.limits()
    org.control.expire_sessions()
    with pytest.raises(SessionExpired, match="cannot be renewed"):
        client.sf.limits()


def test_api_limit_stops_cleanly_and_keeps_the_partial_report(org: ClientOrg) -> None:
    client = org.client()
    calls = {"n": 0}

    def trip_after_two_collection_calls(response: requests.Response, *a: object, **k: object):
        if "/composite/sobjects" in response.url and response.status_code == 200:
            calls["n"] += 1
            if calls["n"] == 2:
                org.control.set_faults({"api_limit_reached": True})

    client.http.hooks["response"].append(trip_after_two_collection_calls)
    records = [{"Name": f"Limited {i}"} for i in range(1000)]
    with pytest.raises(ApiLimitReached) as err:
        client.create_records("Account", records)
    partial = err.value.partial
    assert partial is not None and partial.attempted == 400 and not partial.complete
    assert len(partial.succeeded) == 400 and [r.index for r in partial.results] == list(range(400))
    assert partial.remaining(records) == records[400:]
    org.control.set_faults({"api_limit_reached": False})
    done = org.client().count("Account", "Name LIKE 'Limited %'")
    assert done == 400


def test_budget_stops_before_the_share_is_exceeded(org: ClientOrg) -> None:
    client = org.client()
    usage = client.refresh_limits()
    client.api_budget_share = (usage.used + 3) / usage.limit
    records = [{"Name": f"Budget {i}"} for i in range(1000)]
    with pytest.raises(ApiBudgetExhausted) as err:
        client.create_records("Account", records)
    assert err.value.partial is not None and err.value.partial.attempted == 600
    assert err.value.used == usage.used + 3
    after = org.client().refresh_limits()
    assert after.used == usage.used + 3 + 1  # our 3 calls, then this /limits call itself
    with pytest.raises(ApiBudgetExhausted):
        client.count("Account")  # refused before any call
    assert client.stats.api_calls == 1 + 3


def test_latency_beyond_the_timeout_is_retried_then_reported(org: ClientOrg) -> None:
    org.control.set_faults({"latency_ms": 1200})
    patient = org.client(timeout_s=10)
    assert patient.count("Account") >= 0  # slow but within the timeout: fine
    hasty = org.client(timeout_s=0.3, retry=RetryPolicy(attempts=2, base_delay_s=0.001))
    with pytest.raises(RetriesExhausted) as err:
        hasty.count("Account")
    assert err.value.attempts == 2 and err.value.status is None  # timed out, no answer
