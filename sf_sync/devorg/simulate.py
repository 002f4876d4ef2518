"""Realistic traffic for the dev org (``sf-sync simulate``): people and integrations editing
accounts and contacts through the REST API, plus the other system's own change events.

Reproducible from a seed: the same seed against the same starting org makes the same calls.
All Salesforce traffic goes through the API, so the change events come from the org itself.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from confluent_kafka import Producer
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

CITIES = [
    ("Riga", "LV-1010", "Latvia"), ("Tallinn", "10111", "Estonia"),
    ("Vilnius", "01100", "Lithuania"), ("Oslo", "0150", "Norway"),
    ("Helsinki", "00100", "Finland"), ("Berlin", "10115", "Germany"),
]  # fmt: skip
INDUSTRIES = ["Banking", "Retail", "Technology", "Energy", "Media", "Healthcare"]
RATINGS = ["Hot", "Warm", "Cold"]
FIRST = ["Anna", "Jonas", "Liis", "Marta", "Peter", "Ole", "Ieva", None]
LAST = ["Berzina", "Tamm", "Kazlauskas", "Hansen", "Virtanen", "Schulz"]

# Operation -> weight. Bulk updates touch 50 records in one call (one transaction).
WEIGHTS = {
    "create_account": 6, "update_account": 30, "move_address": 14, "create_contact": 6,
    "update_contact": 14, "delete": 3, "undelete": 2, "bulk_update": 3, "webapp_change": 22,
}  # fmt: skip


@dataclass
class SimulationReport:
    calls: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    webapp_events: int = 0
    seconds: float = 0.0

    def count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def summary(self) -> str:
        ops = ", ".join(f"{k}={v}" for k, v in sorted(self.calls.items()))
        refused = sum(self.refused.values())
        return (
            f"{sum(self.calls.values())} operations in {self.seconds:.1f}s ({ops}); "
            f"{self.webapp_events} webapp events; {refused} refused by the org"
        )


class Simulator:
    """Drives one org. ``undelete`` is a callable because REST has none (SOAP does it)."""

    def __init__(
        self,
        sf: Salesforce,
        undelete: Callable[[str], object],
        *,
        bootstrap: str,
        webapp_topic: str | None,
        seed: int,
    ) -> None:
        self.sf = sf
        self.restore = undelete
        self.bootstrap = bootstrap
        self.webapp_topic = webapp_topic
        self.rng = random.Random(seed)
        self.accounts: list[str] = []
        self.contacts: list[str] = []
        self.deleted: list[str] = []
        self.report = SimulationReport()
        self._webapp_seq = 0
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        self._failed: list[str] = []

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self._failed.append(str(err))

    def flush(self) -> None:
        """Waits for every webapp event to be acknowledged; raises if any was refused."""
        if self.producer.flush(30) or self._failed:
            raise RuntimeError(f"webapp events not delivered: {self._failed[:3]}")

    # ------------------------------------------------------------------ seeding

    def seed(self, accounts: int, contacts: int) -> None:
        """Creates the starting book of accounts and contacts, 200 per call."""
        rows = [self._account_values(i) for i in range(accounts)]
        self.accounts += self._create_many("Account", rows)
        people = [self._contact_values() for _ in range(contacts)]
        self.contacts += self._create_many("Contact", people)

    def _create_many(self, obj: str, rows: list[dict]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(rows), 200):
            records = [{"attributes": {"type": obj}, **r} for r in rows[start : start + 200]]
            results = self.sf.restful(
                "composite/sobjects", method="POST", json={"allOrNone": False, "records": records}
            )
            ids += [r["id"] for r in results if r["success"]]
            self.report.count(f"seed_{obj.lower()}")
        return ids

    def _account_values(self, n: int) -> dict:
        city, postal, country = self.rng.choice(CITIES)
        return {
            "Name": f"Customer {n:05d} {self.rng.choice(['AS', 'SIA', 'GmbH', 'Oy', 'UAB'])}",
            "Industry": self.rng.choice(INDUSTRIES),
            "Rating": self.rng.choice(RATINGS),
            "NumberOfEmployees": self.rng.randint(1, 5000),
            "BillingStreet": f"{self.rng.randint(1, 200)} Harbour St",
            "BillingCity": city, "BillingPostalCode": postal, "BillingCountry": country,
            "Phone": f"+371 2{self.rng.randint(1000000, 9999999)}",
        }  # fmt: skip

    def _contact_values(self) -> dict:
        values = {"LastName": self.rng.choice(LAST), "FirstName": self.rng.choice(FIRST)}
        if self.accounts:
            values["AccountId"] = self.rng.choice(self.accounts)
        return values

    # ------------------------------------------------------------------ the traffic

    def run(
        self, *, operations: int | None, seconds: float | None, rate: float
    ) -> SimulationReport:
        """Operations at ``rate`` per second until ``operations`` or ``seconds`` run out."""
        began = time.monotonic()
        ops, weights = zip(*WEIGHTS.items(), strict=True)
        done = 0
        while (operations is None or done < operations) and (
            seconds is None or time.monotonic() - began < seconds
        ):
            op = self.rng.choices(ops, weights)[0]
            try:
                getattr(self, op)()
                self.report.count(op)
            except SalesforceError as exc:  # e.g. a record deleted meanwhile: the org refuses
                code = str(getattr(exc, "content", [{}])[0].get("errorCode", type(exc).__name__))
                self.report.refused[code] = self.report.refused.get(code, 0) + 1
            done += 1
            if rate > 0:
                pause = began + done / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        self.flush()
        self.report.seconds = time.monotonic() - began
        return self.report

    def create_account(self) -> None:
        res = self.sf.Account.create(self._account_values(len(self.accounts)))
        self.accounts.append(res["id"])

    def update_account(self) -> None:
        change = self.rng.choice([
            {"Rating": self.rng.choice(RATINGS)},
            {"Phone": self.rng.choice([None, f"+371 2{self.rng.randint(1000000, 9999999)}"])},
            {"NumberOfEmployees": self.rng.randint(1, 5000),
             "Industry": self.rng.choice(INDUSTRIES)},
            {"Website": self.rng.choice([None, "https://example.com"])},
        ])  # fmt: skip
        self.sf.Account.update(self.rng.choice(self.accounts), change)

    def move_address(self) -> None:
        city, postal, country = self.rng.choice(CITIES)
        self.sf.Account.update(self.rng.choice(self.accounts), {
            "BillingStreet": f"{self.rng.randint(1, 200)} {self.rng.choice(['Oak', 'Elm'])} St",
            "BillingCity": city, "BillingPostalCode": postal, "BillingCountry": country,
        })  # fmt: skip

    def create_contact(self) -> None:
        self.contacts.append(self.sf.Contact.create(self._contact_values())["id"])

    def update_contact(self) -> None:
        city, postal, country = self.rng.choice(CITIES)
        change = self.rng.choice([
            {"FirstName": self.rng.choice(FIRST)},
            {"MailingCity": city, "MailingPostalCode": postal, "MailingCountry": country},
            {"Title": self.rng.choice([None, "CFO", "Buyer", "Engineer"])},
        ])  # fmt: skip
        self.sf.Contact.update(self.rng.choice(self.contacts), change)

    def delete(self) -> None:
        if len(self.accounts) < 10:
            return
        rid = self.accounts.pop(self.rng.randrange(len(self.accounts)))
        self.sf.Account.delete(rid)
        self.deleted.append(rid)

    def undelete(self) -> None:
        if self.deleted:
            rid = self.deleted.pop(self.rng.randrange(len(self.deleted)))
            self.restore(rid)
            self.accounts.append(rid)

    def bulk_update(self) -> None:
        chosen = self.rng.sample(self.accounts, min(50, len(self.accounts)))
        rating = self.rng.choice(RATINGS)
        records = [{"attributes": {"type": "Account"}, "id": r, "Rating": rating} for r in chosen]
        self.sf.restful("composite/sobjects", method="PATCH",
                        json={"allOrNone": False, "records": records})  # fmt: skip

    def webapp_change(self) -> None:
        """The other system edits a linked account and streams its own change event."""
        if not self.webapp_topic:
            return
        self._webapp_seq += 1
        rid = self.rng.choice(self.accounts)
        event = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128))),
            "record_key": f"W-{rid[-8:]}",
            "salesforce_id": rid,
            "object": "Account",
            "operation": "UPDATE",
            "changed_fields": self.rng.choice(
                [
                    {"Phone": f"+371 2{self.rng.randint(1000000, 9999999)}"},
                    {"Website": self.rng.choice([None, "https://shop.example.com"])},
                    {"Rating": self.rng.choice(RATINGS)},
                ]
            ),
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "sequence": self._webapp_seq,
            "origin": "webapp",
            "user": self.rng.choice(["ann@example.com", "raj@example.com"]),
        }
        self.producer.produce(self.webapp_topic, orjson.dumps(event), rid.encode(),
                              on_delivery=self._delivered)  # fmt: skip
        self.producer.poll(0)
        self.report.webapp_events += 1
