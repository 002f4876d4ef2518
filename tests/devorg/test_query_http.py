"""SOQL over HTTPS as simple-salesforce drives it: pages of 2,000, nextRecordsUrl, queryAll."""

from __future__ import annotations

import uuid

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.devorg.conftest import DevOrgHandle


@pytest.fixture(scope="module")
def batch(devorg: DevOrgHandle) -> tuple[str, list[str]]:
    """4,500 accounts of one marked batch, made through sObject Collections."""
    sf = devorg.sf()
    mark = uuid.uuid4().hex[:8]
    ids: list[str] = []
    for start in range(0, 4500, 200):
        records = [
            {"attributes": {"type": "Account"}, "Name": f"{mark}-{i:05d}", "Site": mark,
             "NumberOfEmployees": i}
            for i in range(start, min(start + 200, 4500))
        ]  # fmt: skip
        res = sf.restful("composite/sobjects", method="POST", json={"records": records})
        ids += [r["id"] for r in res]
    return mark, ids


def test_query_pages_and_query_all(sf: Salesforce, batch: tuple[str, list[str]]) -> None:
    mark, ids = batch
    soql = f"SELECT Id, Name FROM Account WHERE Site = '{mark}' ORDER BY Name"
    first = sf.query(soql)
    assert first["totalSize"] == 4500 and first["done"] is False
    assert len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert len(second["records"]) == 2000 and second["done"] is False
    everything = sf.query_all(soql)
    names = [r["Name"] for r in everything["records"]]
    assert names == [f"{mark}-{i:05d}" for i in range(4500)]
    assert {r["Id"] for r in everything["records"]} == set(ids)
    assert sum(1 for _ in sf.query_all_iter(soql)) == 4500


def test_query_all_sees_deleted(sf: Salesforce, batch: tuple[str, list[str]]) -> None:
    mark, ids = batch
    sf.Account.delete(ids[0])
    soql = f"SELECT Id, IsDeleted FROM Account WHERE Site = '{mark}' AND NumberOfEmployees < 3"
    live = sf.query(soql)["records"]
    everything = sf.query(soql, include_deleted=True)["records"]
    assert [r["Id"] for r in live] == ids[1:3]
    assert [(r["Id"], r["IsDeleted"]) for r in everything] == [
        (ids[0], True), (ids[1], False), (ids[2], False)
    ]  # fmt: skip


def test_count_limit_offset_and_batch_size(
    devorg: DevOrgHandle, sf: Salesforce, batch: tuple[str, list[str]]
) -> None:
    mark, _ = batch
    counted = sf.query(f"SELECT COUNT() FROM Account WHERE Site = '{mark}' AND "
                       "NumberOfEmployees >= 4000")  # fmt: skip
    assert counted["totalSize"] == 500 and counted["records"] == []
    page = sf.query(f"SELECT Name FROM Account WHERE Site = '{mark}' ORDER BY "
                    "NumberOfEmployees DESC LIMIT 5 OFFSET 10")  # fmt: skip
    assert [r["Name"] for r in page["records"]] == [
        f"{mark}-{i:05d}" for i in range(4489, 4484, -1)
    ]
    small = devorg.sf()
    small.headers["Sforce-Query-Options"] = "batchSize=500"
    res = small.query(f"SELECT Id FROM Account WHERE Site = '{mark}'")
    assert len(res["records"]) == 500 and not res["done"]


def test_query_errors_in_salesforce_shape(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Nope FROM Account")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Nope' on entity 'Account'" in err.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.query("SELECT Id FROM")
    assert bad.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as typ:
        sf.query("SELECT Id FROM Nothing__c")
    assert typ.value.content[0]["errorCode"] == "INVALID_TYPE"
