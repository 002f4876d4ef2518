"""Every dev org fault, switched on while it runs: what API callers see, and what reaches the
history through Kafka (duplicates and reordering leave it exact; gaps and overflow are
recorded for repair; dropped events leave drift that only a reconciliation can find)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest

from sf_sync import warehouse
from tests.devorg.conftest import DevOrgHandle
from tests.devorg.test_pipeline import compare, ingest
from tests.devorg.test_rest import account_topic, events_for, header


def test_latency(devorg: DevOrgHandle, sf: Salesforce) -> None:
    devorg.control.set_faults({"latency_ms": 400})
    began = time.monotonic()
    sf.Account.describe()
    assert time.monotonic() - began >= 0.4


def test_server_errors(devorg: DevOrgHandle, sf: Salesforce) -> None:
    devorg.control.set_faults({"error_rate": 1.0})
    with pytest.raises(SalesforceGeneralError) as err:
        sf.Account.create({"Name": "never"})
    assert err.value.status == 503
    assert err.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    devorg.control.set_faults({"error_rate": 0.5, "seed": 3})
    outcomes = []
    for _ in range(40):
        try:
            sf.Account.describe()
            outcomes.append(True)
        except SalesforceGeneralError:
            outcomes.append(False)
    assert 5 < sum(outcomes) < 35  # about half, from a seeded generator
    devorg.control.set_faults({"error_rate": 0.0})
    assert sf.query("SELECT COUNT() FROM Account WHERE Name = 'never'")["totalSize"] == 0


def test_daily_limit_reached(devorg: DevOrgHandle, sf: Salesforce) -> None:
    devorg.control.set_faults({"api_limit_reached": True})
    with pytest.raises(SalesforceRefusedRequest) as err:
        sf.Account.create({"Name": "over"})
    assert err.value.status == 403
    assert err.value.content[0] == {
        "message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED",
    }  # fmt: skip


def test_faults_are_validated(devorg: DevOrgHandle) -> None:
    with pytest.raises(requests.HTTPError):
        devorg.control.set_faults({"error_rate": 2})
    with pytest.raises(requests.HTTPError):
        devorg.control.set_faults({"no_such_fault": 1})


def test_duplicated_and_reordered_events_leave_history_exact(
    devorg: DevOrgHandle, sf: Salesforce
) -> None:
    devorg.control.set_faults({"duplicate_events": 1.0, "reorder_events": True, "seed": 5})
    ids = [sf.Account.create({"Name": f"dup {i}", "BillingCity": "Riga"})["id"] for i in range(8)]
    for step in range(40):
        sf.Account.update(ids[step % 8], {"BillingCity": f"City {step}", "Phone": str(step)})
    assert len(events_for(devorg, account_topic(devorg), ids[0])) == 2 * 6  # every event twice
    ingest(devorg)
    compare(devorg, sf, "Account", set(ids))
    con = warehouse.connect_history(devorg.settings.home)
    dupes = con.execute(
        "SELECT count(*) - count(DISTINCT event_key || record_id) FROM change_events"
    ).fetchone()
    con.close()
    assert dupes == (0,)


def test_gaps_overflow_and_drops(devorg: DevOrgHandle, sf: Salesforce) -> None:
    gapped = sf.Account.create({"Name": "gapped", "BillingCity": "Riga"})["id"]
    dropped = sf.Account.create({"Name": "dropped", "BillingCity": "Riga"})["id"]

    devorg.control.set_faults({"gap_events": 1.0})
    sf.Account.update(gapped, {"BillingCity": "Oslo"})
    devorg.control.set_faults({"gap_events": 0.0, "drop_events": 1.0})
    sf.Account.update(dropped, {"BillingCity": "Oslo"})
    devorg.control.set_faults({"drop_events": 0.0, "overflow_after": 2})
    batch = [{"attributes": {"type": "Account"}, "Name": f"bulk {i}"} for i in range(5)]
    created = sf.restful("composite/sobjects", method="POST", json={"records": batch})
    devorg.control.set_faults({"overflow_after": None})

    (gap_event,) = [e for e in events_for(devorg, account_topic(devorg), gapped)
                    if header(e)["changeType"] != "CREATE"]  # fmt: skip
    assert header(gap_event)["changeType"] == "GAP_UPDATE"
    assert [
        header(e)["changeType"] for e in events_for(devorg, account_topic(devorg), dropped)
    ] == ["CREATE"]
    ingest(devorg)
    con = warehouse.connect_history(devorg.settings.home)
    try:
        gaps = con.execute("SELECT gap_type, record_id FROM gaps").fetchall()
        current = dict(con.execute(
            "SELECT Id, BillingCity FROM account_current WHERE Id IN (?, ?)", [gapped, dropped]
        ).fetchall())  # fmt: skip
        ids_in_history = {r[0] for r in con.execute("SELECT Id FROM account_current").fetchall()}
    finally:
        con.close()
    assert ("GAP_UPDATE", gapped) in gaps
    assert any(t == "GAP_OVERFLOW" for t, _ in gaps)
    # The first two records of the overflowing transaction got events; the other three did not.
    made = [r["id"] for r in created]
    assert [m in ids_in_history for m in made] == [True, True, False, False, False]
    # Gapped and dropped changes are not in the history: drift that reconciliation must repair.
    assert current == {gapped: "Riga", dropped: "Riga"}
    assert sf.Account.get(dropped)["BillingCity"] == "Oslo"


def test_faults_cli_switches_a_running_org(devorg: DevOrgHandle) -> None:
    cli = [sys.executable, "-m", "sf_sync.cli", "devorg", "faults"]
    env = {**os.environ, "SF_SYNC_CONFIG": str(devorg.root / "sf-sync.yaml")}
    out = subprocess.run([*cli, "--set", "latency_ms=25", "--set", "gap_events=0.5"],
                         env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout)["latency_ms"] == 25
    assert devorg.control.faults()["gap_events"] == 0.5
    bad = subprocess.run([*cli, "--set", "error_rate=7"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0
    assert devorg.control.faults()["error_rate"] == 0.0
