"""Changes made through the dev org's API reach Kafka as change events, and the pipeline turns
them into exactly the records the dev org holds: its state equals ``<object>_current``."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import dagster as dg
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceResourceNotFound

from sensors.runner import run_until_caught_up
from sf_sync import warehouse
from sf_sync.devorg.values import parse_datetime
from tests.devorg.conftest import DevOrgHandle

# What change events never carry, so the history cannot know it (Salesforce's own rule).
NOT_IN_EVENTS = {"IsDeleted", "SystemModstamp", "Name@Contact", "LastActivityDate"}


def make_traffic(devorg: DevOrgHandle, sf: Salesforce, seed: int) -> None:
    rng = random.Random(seed)
    cities = ["Riga", "Tallinn", "Vilnius", "Oslo", None]
    accounts = [
        sf.Account.create({"Name": f"Acct {i}", "BillingCity": rng.choice(cities[:-1]),
                           "NumberOfEmployees": rng.randint(1, 500), "Rating": "Warm"})["id"]
        for i in range(25)
    ]  # fmt: skip
    contacts = [
        sf.Contact.create({"LastName": f"Doe {i}", "FirstName": "Jo", "AccountId": rng.choice(
            accounts), "Birthdate": "1990-02-03"})["id"]
        for i in range(10)
    ]  # fmt: skip
    for step in range(120):
        rid = rng.choice(accounts)
        move = {"BillingCity": rng.choice(cities), "BillingStreet": f"{step} Main St",
                "AnnualRevenue": rng.choice([None, 1000.5, 2e6])}  # fmt: skip
        with contextlib.suppress(SalesforceResourceNotFound):  # deleted: refused, as in Salesforce
            sf.Account.update(rid, move)
        if step % 17 == 0:
            sf.Account.delete(rid)
        if step % 29 == 0:
            deleted = sf.query_all(
                "SELECT Id FROM Account WHERE IsDeleted = true", include_deleted=True
            )["records"]
            if deleted:
                assert devorg.control.undelete(sf, [deleted[0]["Id"]]) == [True]
        if step % 13 == 0:
            change = {
                "FirstName": rng.choice(["Al", "Bo", None]),
                "MailingCity": rng.choice(cities),
            }
            sf.Contact.update(rng.choice(contacts), change)
    batch = [{"attributes": {"type": "Account"}, "id": a, "Rating": "Hot"} for a in accounts[:5]]
    sf.restful("composite/sobjects", method="PATCH", json={"records": batch})


def _norm(value: Any) -> Any:
    """One comparable form for a value from the REST API or from the history (text)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if value in ("true", "false"):
        return value == "true"
    try:
        return float(value)
    except ValueError:
        pass
    if len(value) >= 20 and value[10] == "T":
        return parse_datetime(value.replace("+0000", "Z"))
    return value


def compare(devorg: DevOrgHandle, sf: Salesforce, obj: str, ids: set[str] | None = None) -> int:
    """Asserts the history's ``<object>_current`` equals the org's records (or those ``ids``)."""
    spec = devorg.org.schema.get(obj)
    assert spec is not None
    fields = [
        f.name for f in spec.stored_fields
        if f.name not in NOT_IN_EVENTS and f"{f.name}@{obj}" not in NOT_IN_EVENTS
    ]  # fmt: skip
    org = {
        r["Id"]: r
        for r in sf.query_all(
            f"SELECT {', '.join(fields)}, IsDeleted FROM {obj}", include_deleted=True
        )["records"]
    }
    con = warehouse.connect_history(devorg.settings.home)
    try:
        cur = con.execute(f"SELECT * FROM {obj.lower()}_current")
        names = [d[0] for d in cur.description]
        history = {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}
    finally:
        con.close()
    if ids is not None:
        org = {k: v for k, v in org.items() if k in ids}
        history = {k: v for k, v in history.items() if k in ids}
    assert set(history) == set(org)
    for rid, record in org.items():
        got = history[rid]
        assert got["is_deleted"] == record["IsDeleted"], rid
        for f in fields:
            if f == "Id":
                continue
            assert _norm(got.get(f)) == _norm(record[f]), (rid, f, got.get(f), record[f])
    return len(org)


def ingest(devorg: DevOrgHandle) -> None:
    """Waits for the org's events to reach Kafka, then runs the sensor's runs until caught up."""
    devorg.control.wait_published()
    with dg.instance_for_test() as instance:
        report = run_until_caught_up(instance)
        assert report.runs
        for run_id in report.runs:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS


def test_devorg_state_equals_current_history(devorg: DevOrgHandle, sf: Salesforce) -> None:
    make_traffic(devorg, sf, seed=11)
    ingest(devorg)
    con = warehouse.connect_history(devorg.settings.home)
    assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
    origins = con.execute("SELECT DISTINCT change_origin FROM change_events").fetchall()
    con.close()
    assert (f"com/salesforce/api/rest/{devorg.org.api_version};client=tests",) in origins
    assert compare(devorg, sf, "Account") >= 25
    assert compare(devorg, sf, "Contact") >= 10


def test_platform_event_published_through_the_org_reaches_the_history(
    devorg: DevOrgHandle, sf: Salesforce
) -> None:
    rid = sf.Account.create({"Name": "PE target", "Phone": "1"})["id"]
    published = sf.Customer_Change__e.create({
        "Object__c": "Account", "Record_Id__c": rid, "Change_Type__c": "UPDATE",
        "Changed_Fields__c": "Phone", "Payload__c": '{"Phone": "+1 555"}',
    })  # fmt: skip
    assert published["success"] is True
    ingest(devorg)
    con = warehouse.connect_history(devorg.settings.home)
    try:
        rows = con.execute(
            "SELECT field, old_value, new_value FROM field_history "
            "WHERE record_id = ? AND field = 'Phone' ORDER BY changed_at",
            [rid],
        ).fetchall()
    finally:
        con.close()
    assert rows == [("Phone", None, "1"), ("Phone", "1", "+1 555")]
