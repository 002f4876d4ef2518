"""Bulk API 2.0 ingest jobs driven by simple-salesforce's own ``sf.bulk2`` over HTTPS, checked
against Salesforce's documented job info, result CSVs and the records left in the store; and the
query-job machinery (CSV file, offset index, locators) with a stand-in compiler."""

from __future__ import annotations

import csv
import io
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceResourceNotFound,
)

from sf_sync.devorg import bulk
from sf_sync.salesforce_ids import is_valid_18
from tests.devorg.conftest import DevOrgHandle
from tests.devorg.test_rest import events_for, header

WAIT = 0.05  # simple-salesforce's first sleep before polling (default 5 s)


def rows(text: str) -> tuple[list[str], list[list[str]]]:
    parsed = list(csv.reader(io.StringIO(text)))
    return parsed[0], parsed[1:]


def by_column(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def tag() -> str:
    return uuid.uuid4().hex[:8]


def live_accounts(sf: Salesforce, prefix: str) -> dict[str, dict[str, Any]]:
    soql = (
        "SELECT Id, Name, NumberOfEmployees, Phone, Customer_Number__c FROM Account "
        f"WHERE Name LIKE '{prefix}%'"
    )
    return {r["Name"]: r for r in sf.query_all(soql)["records"]}


def test_insert_reports_each_row_and_stores_the_good_ones(
    devorg: DevOrgHandle, sf: Salesforce
) -> None:
    t = tag()
    data = (
        "Name,NumberOfEmployees,Phone\n"
        f"{t} One,12,555-0101\n"
        ",3,555-0102\n"  # Name is required: this row fails alone
        f'"{t} Two, Inc.",,\n'
        f"{t} Three,not-a-number,\n"
    )
    (result,) = sf.bulk2.Account.insert(records=None, csv_file=_file(devorg, data), wait=WAIT)
    assert result["numberRecordsProcessed"] == 4
    assert result["numberRecordsFailed"] == 2
    assert result["numberRecordsTotal"] == 4
    job_id = result["job_id"]

    ok_text = sf.bulk2.Account.get_successful_records(job_id)
    assert ok_text.splitlines()[0] == '"sf__Id","sf__Created",Name,NumberOfEmployees,Phone'
    ok = by_column(ok_text)
    assert [r["Name"] for r in ok] == [f"{t} One", f"{t} Two, Inc."]
    assert all(is_valid_18(r["sf__Id"]) and r["sf__Id"].startswith("001") for r in ok)
    assert [r["sf__Created"] for r in ok] == ["true", "true"]
    assert ok[0]["NumberOfEmployees"] == "12" and ok[1]["Phone"] == ""

    failed_text = sf.bulk2.Account.get_failed_records(job_id)
    assert failed_text.splitlines()[0] == '"sf__Id","sf__Error",Name,NumberOfEmployees,Phone'
    failed = by_column(failed_text)
    assert failed[0]["sf__Error"] == (
        "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    )
    assert failed[0]["sf__Id"] == "" and failed[0]["Phone"] == "555-0102"
    assert failed[1]["Name"] == f"{t} Three"
    assert failed[1]["sf__Error"].endswith(":NumberOfEmployees --")
    assert sf.bulk2.Account.get_unprocessed_records(job_id).splitlines() == [
        "Name,NumberOfEmployees,Phone"
    ]

    stored = live_accounts(sf, t)
    assert set(stored) == {f"{t} One", f"{t} Two, Inc."}
    assert stored[f"{t} One"]["NumberOfEmployees"] == 12
    assert stored[f"{t} One"]["Phone"] == "555-0101"
    assert stored[f"{t} Two, Inc."]["Phone"] is None
    assert {stored[n]["Id"] for n in stored} == {r["sf__Id"] for r in ok}

    # the bulk chunk is one transaction: both creates share a transactionKey, origin bulkapi
    topic = devorg.org.change_streams["Account"].topic
    events = [events_for(devorg, topic, r["sf__Id"])[0] for r in ok]
    keys = {header(e)["transactionKey"] for e in events}
    assert len(keys) == 1
    assert header(events[0])["changeOrigin"].startswith("com/salesforce/api/bulkapi/")
    assert header(events[0])["changeOrigin"].endswith(";client=tests")


def test_update_blank_keeps_na_nulls_and_bad_ids_fail_alone(
    devorg: DevOrgHandle, sf: Salesforce
) -> None:
    t = tag()
    first = sf.Account.create({"Name": f"{t} A", "Phone": "1", "NumberOfEmployees": 5})["id"]
    second = sf.Account.create({"Name": f"{t} B", "Phone": "2", "NumberOfEmployees": 6})["id"]
    sf.Account.delete(second)
    records = [
        {"Id": first, "Phone": "#N/A", "NumberOfEmployees": "", "Name": f"{t} A2"},
        {"Id": second, "Phone": "9", "NumberOfEmployees": "", "Name": ""},
        {"Id": "001000000000000AAA", "Phone": "9", "NumberOfEmployees": "", "Name": ""},
    ]
    (result,) = sf.bulk2.Account.update(records=records, wait=WAIT)
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (3, 2)
    ok = by_column(sf.bulk2.Account.get_successful_records(result["job_id"]))
    assert [(r["sf__Id"], r["sf__Created"]) for r in ok] == [(first, "false")]
    failed = {r["Id"]: r for r in by_column(sf.bulk2.Account.get_failed_records(result["job_id"]))}
    assert failed[second]["sf__Error"] == "ENTITY_IS_DELETED:entity is deleted:--"
    assert failed[second]["sf__Id"] == second
    assert failed["001000000000000AAA"]["sf__Error"].startswith("INVALID_CROSS_REFERENCE_KEY:")

    (row,) = live_accounts(sf, t).values()
    assert row["Name"] == f"{t} A2"
    assert row["Phone"] is None  # #N/A sets null
    assert row["NumberOfEmployees"] == 5  # an empty cell leaves the value alone


def test_upsert_by_external_id_updates_or_creates(devorg: DevOrgHandle, sf: Salesforce) -> None:
    t = tag()
    existing = sf.Account.create({"Name": f"{t} Old", "Customer_Number__c": f"C-{t}-1"})["id"]
    # the match is case-insensitive, as in Salesforce
    data = f"Customer_Number__c,Name\nc-{t}-1,{t} Renamed\nC-{t}-2,{t} New\n,{t} No key\n"
    (result,) = sf.bulk2.Account.upsert(
        csv_file=_file(devorg, data), external_id_field="Customer_Number__c", wait=WAIT
    )
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (3, 1)
    ok = by_column(sf.bulk2.Account.get_successful_records(result["job_id"]))
    assert [(r["Name"], r["sf__Created"]) for r in ok] == [
        (f"{t} Renamed", "false"),
        (f"{t} New", "true"),
    ]
    assert ok[0]["sf__Id"] == existing
    (failed,) = by_column(sf.bulk2.Account.get_failed_records(result["job_id"]))
    assert failed["sf__Error"].startswith("MISSING_ARGUMENT:")
    stored = live_accounts(sf, t)
    assert set(stored) == {f"{t} Renamed", f"{t} New"}
    assert stored[f"{t} Renamed"]["Id"] == existing
    assert stored[f"{t} New"]["Customer_Number__c"] == f"C-{t}-2"


def test_delete_removes_records(devorg: DevOrgHandle, sf: Salesforce) -> None:
    t = tag()
    ids = [sf.Account.create({"Name": f"{t} {i}"})["id"] for i in range(3)]
    (result,) = sf.bulk2.Account.delete(records=[{"Id": i} for i in ids[:2]], wait=WAIT)
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (2, 0)
    ok = by_column(sf.bulk2.Account.get_successful_records(result["job_id"]))
    assert [r["sf__Id"] for r in ok] == ids[:2]
    assert [r["Id"] for r in live_accounts(sf, t).values()] == [ids[2]]
    deleted = sf.query_all(f"SELECT Id FROM Account WHERE Name LIKE '{t}%' AND IsDeleted = true",
                           include_deleted=True)["records"]  # fmt: skip
    assert sorted(r["Id"] for r in deleted) == sorted(ids[:2])


def test_unknown_column_fails_the_job(devorg: DevOrgHandle, sf: Salesforce) -> None:
    t = tag()
    with pytest.raises(SalesforceOperationError) as err:
        sf.bulk2.Account.insert(records=[{"Name": f"{t} x", "Foo": "1"}], wait=WAIT)
    assert "InvalidBatch : Field name not found : Foo" in str(err.value)
    assert live_accounts(sf, t) == {}


def test_job_lifecycle_and_info_fields(devorg: DevOrgHandle, sf: Salesforce) -> None:
    base = f"{devorg.org.instance_url}/services/data/v{devorg.org.api_version}/jobs/ingest"
    s = sf.session
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    created = s.post(base, json={"object": "Account", "operation": "insert"}, headers=auth)
    assert created.status_code == 200
    info = created.json()
    job_id = info["id"]
    assert job_id.startswith("750") and is_valid_18(job_id)
    assert info["state"] == "Open" and info["operation"] == "insert"
    assert info["object"] == "Account" and info["concurrencyMode"] == "Parallel"
    assert info["contentType"] == "CSV" and info["lineEnding"] == "LF"
    assert info["columnDelimiter"] == "COMMA" and info["apiVersion"] == 59.0
    assert info["contentUrl"] == f"services/data/v59.0/jobs/ingest/{job_id}/batches"
    assert info["createdById"].startswith("005") and info["createdDate"].endswith("+0000")
    assert "Sforce-Limit-Info" in created.headers

    # results before the job ran, deleting an open job, closing twice: refused
    early = s.get(f"{base}/{job_id}/successfulResults/", headers=auth)
    assert early.status_code == 400 and early.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert s.delete(f"{base}/{job_id}", headers=auth).json()[0]["errorCode"] == "INVALIDJOBSTATE"
    t = tag()
    csv_headers = {**auth, "Content-Type": "text/csv"}
    put = s.put(f"{base}/{job_id}/batches", data=f"Name\n{t}\n".encode(), headers=csv_headers)
    assert put.status_code == 201
    closed = s.patch(f"{base}/{job_id}", json={"state": "UploadComplete"}, headers=auth)
    assert closed.json()["state"] == "UploadComplete"
    again = s.patch(f"{base}/{job_id}", json={"state": "UploadComplete"}, headers=auth)
    assert again.status_code == 400 and again.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    late_put = s.put(f"{base}/{job_id}/batches", data=b"Name\nx\n", headers=csv_headers)
    assert late_put.status_code == 400

    sf.bulk2.Account._client.wait_for_job(job_id, False, WAIT)
    done = s.get(f"{base}/{job_id}", headers=auth).json()
    assert done["state"] == "JobComplete" and done["jobType"] == "V2Ingest"
    assert (done["numberRecordsProcessed"], done["numberRecordsFailed"]) == (1, 0)
    assert done["retries"] == 0 and isinstance(done["totalProcessingTime"], int)
    listed = s.get(base, headers=auth).json()
    assert listed["done"] is True and job_id in [j["id"] for j in listed["records"]]

    assert s.delete(f"{base}/{job_id}", headers=auth).status_code == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.bulk2.Account._client.get_job(job_id, False)
    assert list(live_accounts(sf, t)) == [t]


def test_second_upload_spoils_the_job_as_in_salesforce(
    devorg: DevOrgHandle, sf: Salesforce
) -> None:
    client = sf.bulk2.Account._client
    job_id = client.create_job("insert")["id"]
    client.upload_job_data(job_id, "Name\na\n")
    client.upload_job_data(job_id, "Name\nb\n")
    with pytest.raises(SalesforceMalformedRequest) as err:
        client.close_job(job_id)
    assert err.value.content[0]["errorCode"] == "INVALIDJOB"
    assert "Found multipe contents for job" in err.value.content[0]["message"]
    assert client.abort_job(job_id, False)["state"] == "Aborted"


def test_bad_job_requests(devorg: DevOrgHandle, sf: Salesforce) -> None:
    client = sf.bulk2.Account._client
    with pytest.raises(SalesforceMalformedRequest):
        client.create_job("hardDelete")
    with pytest.raises(SalesforceMalformedRequest):
        client.create_job("upsert", external_id_field="Name")  # not an external Id field
    with pytest.raises(SalesforceMalformedRequest):
        sf.bulk2.Nope._client.create_job("insert")
    with pytest.raises(SalesforceResourceNotFound):
        client.get_job("750000000000000AAA", False)


def test_finished_job_survives_a_restart(devorg: DevOrgHandle, sf: Salesforce) -> None:
    from sf_sync.devorg import service

    t = tag()
    (result,) = sf.bulk2.Account.insert(records=[{"Name": f"{t} kept"}], wait=WAIT)
    service.stop(devorg.org)
    service.start(devorg.org)
    sf = devorg.sf()
    info = sf.bulk2.Account._client.get_job(result["job_id"], False)
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == 1
    (ok,) = by_column(sf.bulk2.Account.get_successful_records(result["job_id"]))
    assert ok["Name"] == f"{t} kept" and ok["sf__Id"] == live_accounts(sf, t)[f"{t} kept"]["Id"]


def _file(devorg: DevOrgHandle, text: str) -> str:
    path = devorg.root / f"upload-{tag()}.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------
# Query-job machinery with a stand-in compiler (the real SOQL one: test_bulk_query_soql.py)


class FakeCompiled:
    """Just enough of CompiledQuery: SQL over a table ``t`` and records as the compiler shapes
    them (JSON values, ``attributes`` first)."""

    sql = "SELECT id, name, flag, amount FROM t ORDER BY id"
    params = ()
    is_count = False

    def columns(self) -> list[str]:
        return ["Id", "Name", "Flag__c", "Amount__c"]

    def to_record(self, row: tuple[Any, ...], api_version: str) -> dict[str, Any]:
        rid, name, flag, amount = row
        return {"attributes": {"type": "T"}, "Id": rid, "Name": name,
                "Flag__c": None if flag is None else bool(flag), "Amount__c": amount}  # fmt: skip


def _query_job(line_ending: str = "LF") -> bulk.Job:
    info = {"columnDelimiter": "COMMA", "lineEnding": line_ending, "apiVersion_s": "59.0"}
    return bulk.Job("750x", "query", "InProgress", info, {})


def _table(path: Path, n: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id TEXT, name TEXT, flag INTEGER, amount REAL)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        ((f"r{i:07d}", f"name {i}" if i % 3 else 'a "quoted", name\nwith newline',
          None if i % 4 == 0 else i % 2, i * 1.5 if i % 5 else None) for i in range(n)),
    )  # fmt: skip
    conn.commit()
    conn.close()


def test_query_results_file_pages_by_locator(tmp_path: Path) -> None:
    db = tmp_path / "org.sqlite"
    _table(db, 23)
    job = _query_job()
    count = bulk.write_query_results(FakeCompiled(), db, tmp_path / "job", job, lambda *_: True)
    assert count == 23
    header = (tmp_path / "job" / "header.csv").read_text()
    assert header == '"Id","Name","Flag__c","Amount__c"\n'
    pages, start = [], 0
    while start < 23:
        begin, end = bulk._page(tmp_path / "job", start, 10, 23)
        data = (tmp_path / "job" / "results.csv").read_bytes()[begin:end].decode()
        pages.append(list(csv.reader(io.StringIO(data))))
        start += 10
    assert [len(p) for p in pages] == [10, 10, 3]
    flat = [r for p in pages for r in p]
    assert flat[0] == ["r0000000", 'a "quoted", name\nwith newline', "", ""]
    assert flat[1] == ["r0000001", "name 1", "true", "1.5"]
    assert flat[2] == ["r0000002", "name 2", "false", "3.0"]
    assert [r[0] for r in flat] == [f"r{i:07d}" for i in range(23)]
    # locators are opaque (base64 of the offset, as Salesforce's look) and checked
    assert bulk._decode_locator(bulk._encode_locator(20), 23) == 20
    for bad in ("x!", bulk._encode_locator(24), "MTA"):  # "MTA" is "10", fine; others not
        if bad == "MTA":
            assert bulk._decode_locator(bad, 23) == 10
        else:
            with pytest.raises(bulk.ApiError):
                bulk._decode_locator(bad, 23)


def test_query_writer_stops_when_aborted(tmp_path: Path) -> None:
    db = tmp_path / "org.sqlite"
    _table(db, bulk.QUERY_FETCH * 3)
    calls = []

    def progress(job_id: str, n: int) -> bool:
        calls.append(n)
        return len(calls) < 2

    job = _query_job("CRLF")
    assert bulk.write_query_results(FakeCompiled(), db, tmp_path / "j", job, progress) is None
    assert calls == [bulk.QUERY_FETCH, bulk.QUERY_FETCH * 2]


def test_query_writer_streams_a_million_rows_in_modest_memory(tmp_path: Path) -> None:
    import psutil

    db = tmp_path / "org.sqlite"
    n = 1_000_000
    _table(db, n)
    proc = psutil.Process()
    before = proc.memory_info().rss
    count = bulk.write_query_results(FakeCompiled(), db, tmp_path / "j", _query_job(),
                                     lambda *_: True)  # fmt: skip
    grown = proc.memory_info().rss - before
    assert count == n
    assert (tmp_path / "j" / "index.bin").stat().st_size == 8 * n
    assert grown < 60 * 1024 * 1024, f"RSS grew by {grown / 1e6:.0f} MB"
    begin, end = bulk._page(tmp_path / "j", n - 2, 5, n)
    with (tmp_path / "j" / "results.csv").open("rb") as f:
        f.seek(begin)
        tail = list(csv.reader(io.StringIO(f.read(end - begin).decode())))
    assert [r[0] for r in tail] == [f"r{n - 2:07d}", f"r{n - 1:07d}"]
