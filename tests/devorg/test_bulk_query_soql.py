"""Bulk API 2.0 query jobs with the real SOQL compiler, driven by simple-salesforce's
``sf.bulk2.<Object>.query`` / ``download`` over HTTPS: CSV shape, paging by locator, errors."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.devorg.conftest import DevOrgHandle
from tests.devorg.test_bulk import WAIT, tag


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.fixture
def accounts(sf: Salesforce) -> tuple[str, list[str]]:
    t = tag()
    records = [
        {"Name": f"{t} {i:02d}", "NumberOfEmployees": str(i), "Phone": "" if i % 2 else f"p{i}"}
        for i in range(25)
    ]
    (result,) = sf.bulk2.Account.insert(records=records, wait=WAIT)
    assert result["numberRecordsFailed"] == 0
    ok = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(
        result["job_id"]))))  # fmt: skip
    ids = [r["sf__Id"] for r in sorted(ok, key=lambda r: r["Name"])]
    return t, ids


def test_query_pages_by_locator(sf: Salesforce, accounts: tuple[str, list[str]]) -> None:
    t, ids = accounts
    soql = (
        "SELECT Id, Name, NumberOfEmployees, Phone FROM Account "
        f"WHERE Name LIKE '{t}%' ORDER BY Name"
    )
    pages = list(sf.bulk2.Account.query(soql, max_records=10, wait=WAIT))
    assert len(pages) == 3
    parsed = [parse(p) for p in pages]
    assert all(p[0] == ["Id", "Name", "NumberOfEmployees", "Phone"] for p in parsed)
    assert all(p.startswith('"Id","Name","NumberOfEmployees","Phone"\n') for p in pages)
    assert [len(p) - 1 for p in parsed] == [10, 10, 5]
    rows = [r for p in parsed for r in p[1:]]
    assert [r[0] for r in rows] == ids
    assert rows[0] == [ids[0], f"{t} 00", "0", "p0"]
    assert rows[1] == [ids[1], f"{t} 01", "1", ""]


def test_results_headers_and_locator_on_raw_http(
    devorg: DevOrgHandle, sf: Salesforce, accounts: tuple[str, list[str]]
) -> None:
    t, ids = accounts
    client = sf.bulk2.Account._client
    job = client.create_job("query", f"SELECT Id FROM Account WHERE Name LIKE '{t}%'")
    assert job["state"] == "UploadComplete" and job["object"] == "Account"
    client.wait_for_job(job["id"], True, WAIT)
    info = client.get_job(job["id"], True)
    assert info["numberRecordsProcessed"] == 25 and info["jobType"] == "V2Query"
    url = f"{devorg.org.instance_url}/services/data/v59.0/jobs/query/{job['id']}/results"
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    first = sf.session.get(url, params={"maxRecords": 20}, headers=auth)
    assert first.headers["Sforce-NumberOfRecords"] == "20"
    assert first.headers["Content-Type"].startswith("text/csv")
    locator = first.headers["Sforce-Locator"]
    assert locator not in ("", "null")
    last = sf.session.get(url, params={"maxRecords": 20, "locator": locator}, headers=auth)
    assert last.headers["Sforce-NumberOfRecords"] == "5"
    assert last.headers["Sforce-Locator"] == "null"
    got = [r[0] for r in parse(first.text)[1:] + parse(last.text)[1:]]
    assert got == ids  # Id order without ORDER BY
    bad = sf.session.get(url, params={"locator": "not-a-locator"}, headers=auth)
    assert bad.status_code == 400
    everything = sf.session.get(url, headers=auth)
    assert everything.headers["Sforce-NumberOfRecords"] == "25"
    assert everything.headers["Sforce-Locator"] == "null"


def test_download_and_query_all(devorg: DevOrgHandle, sf: Salesforce, tmp_path: Path) -> None:
    t = tag()
    keep = sf.Account.create({"Name": f"{t} keep", "AnnualRevenue": 1234.5})["id"]
    gone = sf.Account.create({"Name": f"{t} gone"})["id"]
    sf.Account.delete(gone)
    soql = f"SELECT Id, IsDeleted, AnnualRevenue, CreatedDate FROM Account WHERE Name LIKE '{t}%'"
    results = sf.bulk2.Account.download(soql, str(tmp_path), max_records=1, wait=WAIT)
    assert [r["number_of_records"] for r in results] == [1]
    (row,) = parse(Path(results[0]["file"]).read_text())[1:]
    assert row[:3] == [keep, "false", "1234.5"]
    assert row[3].endswith("+0000") and "T" in row[3]
    pages = list(sf.bulk2.Account.query_all(soql, wait=WAIT))
    rows = sorted(r[:2] for p in pages for r in parse(p)[1:])
    assert rows == sorted([[keep, "false"], [gone, "true"]])


def test_query_errors(sf: Salesforce) -> None:
    client = sf.bulk2.Account._client
    with pytest.raises(SalesforceMalformedRequest) as err:
        client.create_job("query", "SELECT Id FROM")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as err:
        client.create_job("query", "SELECT Nope__c FROM Account")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as err:
        client.create_job("query", "SELECT BillingAddress FROM Account")
    assert "compound" in err.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest):
        client.create_job("query", "SELECT COUNT() FROM Account")


def test_query_job_delete(devorg: DevOrgHandle, sf: Salesforce) -> None:
    client = sf.bulk2.Account._client
    job = client.create_job("query", "SELECT Id FROM Account LIMIT 1")
    client.wait_for_job(job["id"], True, WAIT)
    url = f"{devorg.org.instance_url}/services/data/v59.0/jobs/query/{job['id']}"
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    assert sf.session.delete(url, headers=auth).status_code == 204
    assert sf.session.get(url, headers=auth).status_code == 404
    assert sf.session.get(url + "/results", headers=auth).status_code == 404
