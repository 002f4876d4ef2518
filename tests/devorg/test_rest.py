"""simple-salesforce's own calls against the dev org over HTTPS, checked against Salesforce's
documented shapes and errors, and the change events each call commits to Kafka."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import requests
from confluent_kafka import Consumer, TopicPartition
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from sf_sync.salesforce_ids import is_valid_18
from tests.devorg.conftest import DevOrgHandle

ISO_MS = "%Y-%m-%dT%H:%M:%S.%f"


def topic_messages(devorg: DevOrgHandle, topic: str) -> list[tuple[bytes, dict[str, Any]]]:
    """Every (key, value) on ``topic`` once the org's outbox is empty, in order per partition."""
    devorg.control.wait_published()
    consumer = Consumer({"bootstrap.servers": devorg.settings.bootstrap, "group.id": "t"})
    out = []
    try:
        for p in range(3):
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            consumer.assign([TopicPartition(topic, p, lo)])
            got = 0
            while got < hi - lo:
                for m in consumer.consume(min(500, hi - lo - got), 5):
                    got += 1
                    out.append((m.key(), orjson.loads(m.value())))
    finally:
        consumer.close()
    return out


def events_for(devorg: DevOrgHandle, topic: str, record_id: str) -> list[dict[str, Any]]:
    """Every change event of ``record_id`` on ``topic`` (keyed by record Id), in order."""
    return [v for k, v in topic_messages(devorg, topic) if k == record_id.encode()]


def header(event: dict[str, Any]) -> dict[str, Any]:
    body = event.get("payload", event)
    return body["ChangeEventHeader"]


def account_topic(devorg: DevOrgHandle) -> str:
    return devorg.org.change_streams["Account"].topic


def test_create_get_update_delete_shapes(devorg: DevOrgHandle, sf: Salesforce) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    created = sf.Account.create({"Name": "Acme", "BillingCity": "Riga", "NumberOfEmployees": 12})
    assert created["success"] is True and created["errors"] == []
    rid = created["id"]
    assert is_valid_18(rid) and rid.startswith("001")

    rec = sf.Account.get(rid)
    url = f"/services/data/v{devorg.org.api_version}/sobjects/Account/{rid}"
    assert rec["attributes"] == {"type": "Account", "url": url}
    assert rec["Id"] == rid and rec["Name"] == "Acme" and rec["IsDeleted"] is False
    assert rec["NumberOfEmployees"] == 12 and isinstance(rec["NumberOfEmployees"], int)
    assert rec["BillingAddress"]["city"] == "Riga" and rec["BillingAddress"]["street"] is None
    assert rec["ShippingAddress"] is None
    created_at = datetime.strptime(rec["CreatedDate"][:23], ISO_MS).replace(tzinfo=UTC)
    assert rec["CreatedDate"].endswith("+0000") and created_at >= before
    assert rec["CreatedDate"] == rec["LastModifiedDate"] == rec["SystemModstamp"]
    assert rec["CreatedById"] == rec["LastModifiedById"] == rec["OwnerId"]

    time.sleep(0.01)
    assert sf.Account.update(rid, {"BillingCity": "Tallinn", "NumberOfEmployees": None}) == 204
    rec2 = sf.Account.get(rid)
    assert rec2["BillingCity"] == "Tallinn" and rec2["NumberOfEmployees"] is None
    assert rec2["LastModifiedDate"] > rec["LastModifiedDate"]
    assert rec2["CreatedDate"] == rec["CreatedDate"]

    assert sf.Account.delete(rid) == 204
    with pytest.raises(SalesforceResourceNotFound) as lost:
        sf.Account.get(rid)
    assert lost.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf.Account.update(rid, {"Name": "x"})
    assert gone.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"

    events = events_for(devorg, account_topic(devorg), rid)
    types = [header(e)["changeType"] for e in events]
    assert types == ["CREATE", "UPDATE", "DELETE"]
    update = events[1]["payload"]
    h = update["ChangeEventHeader"]
    assert h["changedFields"] == ["BillingAddress.City", "NumberOfEmployees", "LastModifiedDate"]
    assert h["nulledFields"] == ["NumberOfEmployees"]
    assert h["changeOrigin"] == f"com/salesforce/api/rest/{devorg.org.api_version};client=tests"
    assert update["BillingAddress"] == {"City": "Tallinn"}
    assert update["LastModifiedDate"] == rec2["LastModifiedDate"].replace("+0000", "Z")
    assert h["commitTimestamp"] == int(
        datetime.strptime(rec2["LastModifiedDate"][:23], ISO_MS).replace(tzinfo=UTC).timestamp()
        * 1000
    )
    assert [e["event"]["replayId"] for e in events] == sorted(
        e["event"]["replayId"] for e in events
    )


@pytest.mark.parametrize(
    ("values", "code", "fields"),
    [
        ({"Phone": "1"}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ({"Name": "x", "Nope__c": 1}, "INVALID_FIELD", None),
        ({"Name": "x" * 256}, "STRING_TOO_LONG", ["Name"]),
        ({"Name": "x", "NumberOfEmployees": "many"}, "JSON_PARSER_ERROR", ["NumberOfEmployees"]),
        ({"Name": "x", "ParentId": "003000000000000AAA"}, "MALFORMED_ID", ["ParentId"]),
        ({"Name": "x", "CreatedDate": "2024-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE",
         ["CreatedDate"]),
    ],
)  # fmt: skip
def test_create_errors(sf: Salesforce, values: dict, code: str, fields: list | None) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create(values)
    assert err.value.status == 400
    (entry,) = err.value.content
    assert entry["errorCode"] == code and entry["message"]
    if fields is not None:
        assert entry["fields"] == fields


def test_contact_email_and_name(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.create({"LastName": "Doe", "Email": "not-an-address"})
    assert err.value.content[0]["errorCode"] == "INVALID_EMAIL_ADDRESS"
    rid = sf.Contact.create({"LastName": "Doe", "FirstName": "Jane", "MailingCity": "Oslo"})["id"]
    rec = sf.Contact.get(rid)
    assert rid.startswith("003") and rec["Name"] == "Jane Doe"
    assert rec["MailingAddress"]["city"] == "Oslo" and rec["HasOptedOutOfEmail"] is False


def test_upsert_by_external_id(devorg: DevOrgHandle, sf: Salesforce) -> None:
    key = f"C-{time.time_ns()}"
    assert sf.Account.upsert(f"Customer_Number__c/{key}", {"Name": "Up"}) == 201
    (row,) = sf.query(f"SELECT Id, Name FROM Account WHERE Customer_Number__c = '{key}'")["records"]
    assert sf.Account.upsert(f"Customer_Number__c/{key}", {"Name": "Up 2"}) == 200
    assert sf.Account.get(row["Id"])["Name"] == "Up 2"
    assert sf.Account.get_by_custom_id("Customer_Number__c", key)["Id"] == row["Id"]
    with pytest.raises(SalesforceMalformedRequest) as dup:
        sf.Account.create({"Name": "Other", "Customer_Number__c": key.lower()})
    assert dup.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    assert row["Id"] in dup.value.content[0]["message"]


def test_if_unmodified_since(sf: Salesforce) -> None:
    rid = sf.Account.create({"Name": "Guarded"})["id"]
    past = email.utils.format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    future = email.utils.format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    with pytest.raises(SalesforceGeneralError) as err:
        sf.Account.update(rid, {"Name": "Late"}, headers={"If-Unmodified-Since": past})
    assert err.value.status == 412
    assert sf.Account.update(rid, {"Name": "Fine"}, headers={"If-Unmodified-Since": future}) == 204
    assert sf.Account.get(rid)["Name"] == "Fine"


def test_describe_and_limits(devorg: DevOrgHandle, sf: Salesforce) -> None:
    d = sf.Account.describe()
    fields = {f["name"]: f for f in d["fields"]}
    assert d["keyPrefix"] == "001" and d["name"] == "Account"
    assert fields["Name"]["length"] == 255 and fields["Name"]["nillable"] is False
    assert fields["BillingCity"]["compoundFieldName"] == "BillingAddress"
    assert fields["BillingAddress"]["type"] == "address"
    assert fields["Customer_Number__c"]["externalId"] is True
    assert fields["Customer_Number__c"]["custom"] is True
    assert (
        fields["CreatedDate"]["createable"] is False and fields["CreatedDate"]["type"] == "datetime"
    )
    assert "Hot" in [p["value"] for p in fields["Rating"]["picklistValues"]]
    assert fields["ParentId"]["referenceTo"] == ["Account"]
    names = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert names["Invoice__c"]["keyPrefix"] == "a0I" and names["Invoice__c"]["custom"] is True
    inv = {f["name"]: f for f in sf.Invoice__c.describe()["fields"]}
    assert inv["Amount__c"]["type"] == "currency" and inv["Due__c"]["type"] == "date"

    limits = sf.limits()["DailyApiRequests"]
    assert limits["Max"] == devorg.org.daily_api_limit
    used = limits["Max"] - limits["Remaining"]
    account = sf.Account  # simple-salesforce keeps the header per SFType object
    account.describe()
    assert account.api_usage["api-usage"].used == used + 1  # /limits counted itself
    assert account.api_usage["api-usage"].total == limits["Max"]


def test_collections_all_or_none(devorg: DevOrgHandle, sf: Salesforce) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Name": "Batch A"},
        {"attributes": {"type": "Account"}},  # Name missing
        {"attributes": {"type": "Contact"}, "LastName": "Batch C"},
    ]
    partial = sf.restful("composite/sobjects", method="POST",
                         json={"allOrNone": False, "records": records})  # fmt: skip
    assert [r["success"] for r in partial] == [True, False, True]
    assert partial[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    a_id, c_id = partial[0]["id"], partial[2]["id"]
    # One call, one transaction: one transactionKey, sequence numbers 1 and 2.
    ha = header(events_for(devorg, account_topic(devorg), a_id)[0])
    hc = header(events_for(devorg, devorg.org.change_streams["Contact"].topic, c_id)[0])
    assert ha["transactionKey"] == hc["transactionKey"]
    assert (ha["sequenceNumber"], hc["sequenceNumber"]) == (1, 2)

    atomic = sf.restful("composite/sobjects", method="POST",
                        json={"allOrNone": True, "records": records})  # fmt: skip
    assert [r["success"] for r in atomic] == [False, False, False]
    assert atomic[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"

    updated = sf.restful("composite/sobjects", method="PATCH", json={"records": [
        {"attributes": {"type": "Account"}, "id": a_id, "Phone": "555"}]})  # fmt: skip
    assert updated == [{"id": a_id, "success": True, "errors": []}]
    got = sf.restful(f"composite/sobjects/Account?ids={a_id}&fields=Id,Phone", method="GET")
    assert got[0]["Phone"] == "555"
    deleted = sf.restful(f"composite/sobjects?ids={a_id},{c_id}", method="DELETE")
    assert [r["success"] for r in deleted] == [True, True]
    key = f"K-{time.time_ns()}"
    upsert = [{"attributes": {"type": "Account"}, "Customer_Number__c": key, "Name": "Up A"},
              {"attributes": {"type": "Account"}, "Name": "no key"}]  # fmt: skip
    first = sf.restful("composite/sobjects/Account/Customer_Number__c", method="PATCH",
                       json={"allOrNone": False, "records": upsert})  # fmt: skip
    assert [(r["success"], r.get("created")) for r in first] == [(True, True), (False, None)]
    upsert[0]["Name"] = "Up B"
    again = sf.restful("composite/sobjects/Account/Customer_Number__c", method="PATCH",
                       json={"records": upsert[:1]})  # fmt: skip
    assert again == [{"id": first[0]["id"], "success": True, "errors": [], "created": False}]
    assert sf.Account.get(first[0]["id"])["Name"] == "Up B"
    too_many = [{"attributes": {"type": "Account"}, "Name": str(i)} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/sobjects", method="POST", json={"records": too_many})


def test_soap_undelete_and_deleted_window(devorg: DevOrgHandle, sf: Salesforce) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    rid = sf.Account.create({"Name": "Phoenix"})["id"]
    sf.Account.delete(rid)
    end = datetime.now(UTC) + timedelta(minutes=1)
    window = sf.Account.deleted(start, end)
    assert rid in [r["id"] for r in window["deletedRecords"]]
    assert rid not in sf.Account.updated(start, end)["ids"]  # deleted records are not listed
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv='
        '"http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">'
        f"<soapenv:Header><urn:SessionHeader><urn:sessionId>{sf.session_id}</urn:sessionId>"
        "</urn:SessionHeader></soapenv:Header><soapenv:Body><urn:undelete>"
        f"<urn:ids>{rid}</urn:ids></urn:undelete></soapenv:Body></soapenv:Envelope>"
    )
    resp = devorg.session().post(
        f"{devorg.org.instance_url}/services/Soap/u/{devorg.org.api_version}",
        data=envelope, headers={"Content-Type": "text/xml", "SOAPAction": "undelete"}, timeout=30,
    )  # fmt: skip
    assert resp.status_code == 200 and "<success>true</success>" in resp.text
    assert sf.Account.get(rid)["IsDeleted"] is False
    assert rid in sf.Account.updated(start, end + timedelta(minutes=1))["ids"]
    assert devorg.control.undelete(sf, [rid, "001000000000000AAA"]) == [False, False]
    types = [header(e)["changeType"] for e in events_for(devorg, account_topic(devorg), rid)]
    assert types == ["CREATE", "DELETE", "UNDELETE"]


def test_logins(devorg: DevOrgHandle) -> None:
    base = f"{devorg.org.instance_url}/services"
    c = devorg.org.credentials
    s = devorg.session()
    ok = s.post(f"{base}/oauth2/token", data={
        "grant_type": "password", "client_id": c.client_id, "client_secret": c.client_secret,
        "username": c.username, "password": c.password + c.security_token}, timeout=30)  # fmt: skip
    assert ok.status_code == 200 and ok.json()["instance_url"] == devorg.org.instance_url
    bad = s.post(f"{base}/oauth2/token", data={
        "grant_type": "password", "client_id": c.client_id, "client_secret": c.client_secret,
        "username": c.username, "password": c.password}, timeout=30)  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    wrong = {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
    wrong_client = s.post(f"{base}/oauth2/token", data=wrong, timeout=30)
    assert wrong_client.json()["error"] == "invalid_client_id"
    soap = (
        '<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:xsd="http://www.w3.org/2001/'
        'XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:env="http://'
        'schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><env:Body>'
        f'<n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>{c.username}'
        f"</n1:username><n1:password>{c.password}{c.security_token}</n1:password></n1:login>"
        "</env:Body></env:Envelope>"
    )
    soap_headers = {"SOAPAction": "login", "Content-Type": "text/xml"}
    resp = s.post(f"{base}/Soap/u/{devorg.org.api_version}", data=soap, headers=soap_headers,
                  timeout=30)  # fmt: skip
    assert resp.status_code == 200 and "<sessionId>" in resp.text
    refused = s.post(f"{base}/Soap/u/{devorg.org.api_version}",
                     data=soap.replace(c.password, "wrong"), timeout=30)  # fmt: skip
    assert refused.status_code == 500 and "INVALID_LOGIN" in refused.text
    unauth = s.get(f"{base}/data/v{devorg.org.api_version}/limits", timeout=30)
    assert unauth.status_code == 401 and unauth.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_expired_session_is_refused(devorg: DevOrgHandle) -> None:
    sf = devorg.sf()
    sf.Account.describe()
    devorg.control.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        sf.Account.describe()


def test_platform_event_publish(devorg: DevOrgHandle, sf: Salesforce) -> None:
    res = sf.Customer_Change__e.create({"Object__c": "Account", "Change_Type__c": "UPDATE",
                                        "Record_Id__c": "0017Dv000000001AAA"})  # fmt: skip
    assert res["success"] is True and res["errors"][0]["statusCode"] == "OPERATION_ENQUEUED"
    topic = devorg.org.platform_event_streams["Customer_Change__e"].topic
    seen = [v for _k, v in topic_messages(devorg, topic)]
    (ev,) = [e for e in seen if e["payload"].get("Record_Id__c") == "0017Dv000000001AAA"]
    assert ev["payload"]["Object__c"] == "Account" and ev["event"]["EventUuid"]


def test_tls_is_verified(devorg: DevOrgHandle) -> None:
    s = requests.Session()
    s.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        s.get(f"{devorg.org.instance_url}/services/data/", timeout=10)
