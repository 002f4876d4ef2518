"""A reproducible stream of Salesforce Account changes, and the history it must produce.

Tests, the demo and the benchmarks all produce this stream to a real broker. The expected
history is computed here by a deliberately plain Python model of the rules (dicts, one event
at a time, in commit order), independent of the SQL fold it checks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from sf_sync.salesforce_ids import make_id

ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country")
CITIES = [
    ("Riga", "LV-1010", "LV", "Latvia"),
    ("San Francisco", "94105", "CA", "United States"),
    ("Berlin", "10115", "BE", "Germany"),
    ("Lyon", "69001", "ARA", "France"),
    ("Austin", "73301", "TX", "United States"),
    ("Porto", "4000-001", "13", "Portugal"),
]
INDUSTRIES = ["Technology", "Banking", "Retail", "Energy", "Media", "Healthcare"]
SCALARS = ("Name", "Phone", "Industry", "Type", "Website", "NumberOfEmployees", "Description")
USERS = [make_id("005", n) for n in (1, 2, 3)]


@dataclass
class LogicalEvent:
    """One change event before rendering: flat field names, typed values."""

    change_type: str
    record_ids: list[str]
    commit_ms: int
    transaction_key: str
    sequence: int
    user: str
    values: dict[str, object] = field(default_factory=dict)  # flat name -> value
    nulled: list[str] = field(default_factory=list)  # flat names set to null
    enriched: dict[str, object] = field(default_factory=dict)  # present, not changed

    @property
    def event_key(self) -> str:
        return f"Account:{self.transaction_key}:{self.sequence}"


def iso(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _address(prefix: str, rnd: random.Random) -> dict[str, object]:
    city, postal, state, country = rnd.choice(CITIES)
    street = f"{rnd.randint(1, 999)} {rnd.choice(['Main', 'Mission', 'Brivibas', 'Oak'])} St"
    return {
        f"{prefix}Street": street,
        f"{prefix}City": city,
        f"{prefix}State": state,
        f"{prefix}PostalCode": postal,
        f"{prefix}Country": country,
    }


def _scalar(name: str, rnd: random.Random, n: int) -> object:
    if name == "Name":
        return f"Account {n} {rnd.choice(['Ltd', 'Inc', 'GmbH', 'SIA'])}"
    if name == "Phone":
        return f"+371 {rnd.randint(2000000, 2999999)}"
    if name == "Industry":
        return rnd.choice(INDUSTRIES)
    if name == "Type":
        return rnd.choice(["Customer", "Prospect", "Partner"])
    if name == "Website":
        return f"https://example-{n}.test"
    if name == "NumberOfEmployees":
        return rnd.randint(1, 50000)
    return "Notes: " + " ".join(rnd.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(40))


def generate(
    seed: int, records: int, events: int, *, start_ms: int = 1_714_156_685_000, step_ms: int = 1_500
) -> list[LogicalEvent]:
    """``events`` changes over ``records`` accounts: creates first, then a realistic mix.

    The mix: updates of 1-3 fields (some nulled, some enriched fields), address moves listed
    as compound components, a few merged events over two records, deletes and undeletes.
    """
    rnd = random.Random(seed)
    ms = start_ms
    out: list[LogicalEvent] = []
    live: dict[str, dict[str, object]] = {}
    deleted: dict[str, dict[str, object]] = {}
    live_ids = _Pool()
    deleted_ids = _Pool()

    def tx() -> str:
        return f"{rnd.getrandbits(32):08x}-{rnd.getrandbits(16):04x}-{rnd.getrandbits(16):04x}"

    for n in range(events):
        ms += rnd.randint(1, step_ms)
        user = rnd.choice(USERS)
        if n < records:
            rid = make_id("001", n + 1)
            values: dict[str, object] = {s: _scalar(s, rnd, n) for s in SCALARS}
            values["Type"] = None if rnd.random() < 0.3 else values["Type"]
            values |= _address("Billing", rnd)
            values |= {
                "OwnerId": user,
                "CreatedById": user,
                "CreatedDate": iso(ms),
                "LastModifiedById": user,
                "LastModifiedDate": iso(ms),
            }
            live[rid] = {k: v for k, v in values.items() if v is not None}
            live_ids.add(rid)
            out.append(LogicalEvent("CREATE", [rid], ms, tx(), 1, user, values))
            continue
        roll = rnd.random()
        if roll < 0.03 and live:
            rid = live_ids.pop_random(rnd)
            deleted[rid] = live.pop(rid)
            deleted_ids.add(rid)
            out.append(LogicalEvent("DELETE", [rid], ms, tx(), 1, user))
        elif roll < 0.05 and deleted:
            rid = deleted_ids.pop_random(rnd)
            live_ids.add(rid)
            state = deleted.pop(rid) | {"LastModifiedDate": iso(ms), "LastModifiedById": user}
            live[rid] = state
            out.append(LogicalEvent("UNDELETE", [rid], ms, tx(), 1, user, dict(state)))
        elif live:
            ids = [rnd.choice(live_ids.items)]
            if roll > 0.97 and len(live) > 1:
                ids = rnd.sample(live_ids.items, 2)
            ev = LogicalEvent("UPDATE", ids, ms, tx(), 1, user)
            if rnd.random() < 0.25:
                ev.values |= _address("Billing", rnd)
            for name in rnd.sample(SCALARS[1:], rnd.randint(1, 3)):
                if rnd.random() < 0.15:
                    ev.nulled.append(name)
                else:
                    ev.values[name] = _scalar(name, rnd, n)
            ev.values |= {"LastModifiedDate": iso(ms), "LastModifiedById": user}
            if rnd.random() < 0.3:
                ev.enriched["Name"] = live[ids[0]].get("Name")
            for rid in ids:
                for k, v in ev.values.items():
                    live[rid][k] = v
                for k in ev.nulled:
                    live[rid].pop(k, None)
            out.append(ev)
    return out


class _Pool:
    """Ids to pick from at random in O(1), in a reproducible order."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, item: str) -> None:
        self._index[item] = len(self.items)
        self.items.append(item)

    def pop_random(self, rnd: random.Random) -> str:
        i = rnd.randrange(len(self.items))
        item, last = self.items[i], self.items[-1]
        self.items[i], self._index[last] = last, i
        self.items.pop()
        del self._index[item]
        return item


# ---- rendering -------------------------------------------------------------------------


def _dotted(name: str) -> str:
    for prefix in ("Billing", "Shipping"):
        for part in ADDRESS_PARTS:
            if name == prefix + part:
                return f"{prefix}Address.{part}"
    return name


def _nest(values: dict[str, object]) -> dict[str, object]:
    body: dict[str, object] = {}
    for name, value in values.items():
        dotted = _dotted(name)
        if "." in dotted:
            comp, part = dotted.split(".")
            body.setdefault(comp, {})[part] = value  # type: ignore[index]
        else:
            body[name] = value
    return body


def _header(ev: LogicalEvent) -> dict[str, object]:
    changed = (
        sorted({_dotted(k) for k in [*ev.values, *ev.nulled]}) if ev.change_type == "UPDATE" else []
    )
    return {
        "entityName": "Account",
        "recordIds": ev.record_ids,
        "changeType": ev.change_type,
        "changeOrigin": "com/salesforce/api/rest/60.0;client=synth",
        "transactionKey": ev.transaction_key,
        "sequenceNumber": ev.sequence,
        "commitTimestamp": ev.commit_ms,
        "commitNumber": ev.commit_ms * 10,
        "commitUser": ev.user,
        "nulledFields": [_dotted(k) for k in ev.nulled],
        "diffFields": [],
        "changedFields": changed,
    }


def render_cometd(ev: LogicalEvent, replay_id: int) -> bytes:
    payload = {"ChangeEventHeader": _header(ev), **_nest({**ev.enriched, **ev.values})}
    return orjson.dumps(
        {"schema": "synth-schema", "payload": payload, "event": {"replayId": replay_id}}
    )


def render_confluent(ev: LogicalEvent, replay_id: int, *, envelope: bool = False) -> bytes:
    """Connector shape: every field present (flat AND compound), timestamps as epoch ms."""
    all_fields = [
        *SCALARS,
        "OwnerId",
        "CreatedById",
        "CreatedDate",
        "LastModifiedById",
        "LastModifiedDate",
    ] + [f"Billing{p}" for p in ADDRESS_PARTS]
    values: dict[str, object] = {name: None for name in all_fields}
    values |= ev.enriched | ev.values
    for name in ("CreatedDate", "LastModifiedDate"):
        if isinstance(values.get(name), str):
            values[name] = int(
                datetime.strptime(values[name], "%Y-%m-%dT%H:%M:%S.%fZ")
                .replace(tzinfo=UTC)
                .timestamp()
                * 1000
            )
    body = dict(values)
    body["BillingAddress"] = {p: values.get(f"Billing{p}") for p in ADDRESS_PARTS}
    body |= {
        "ChangeEventHeader": _header(ev),
        "Id": ev.record_ids[0],
        "ReplayId": str(replay_id),
        "_ObjectType": "AccountChangeEvent",
        "_EventType": "synth-schema",
    }
    return orjson.dumps({"schema": {"type": "struct"}, "payload": body} if envelope else body)


# ---- the expected history (the oracle) ---------------------------------------------------


@dataclass
class Expected:
    field_history: list[tuple]  # (record_id, field, old, new, changed_at_ms, change_type, user)
    versions: list[tuple]  # (record_id, version, valid_from_ms, valid_to_ms|None, deleted, state)


def _text(v: object) -> str | None:
    return None if v is None else str(v)


def expected_history(events: list[LogicalEvent]) -> Expected:
    """Applies events one by one in commit order with plain dicts."""
    order = sorted(events, key=lambda e: (e.commit_ms, e.transaction_key, e.sequence))
    state: dict[str, dict[str, str | None]] = {}
    deleted: dict[str, bool] = {}
    versions: dict[str, list[list]] = {}
    history: list[tuple] = []
    for ev in order:
        for rid in ev.record_ids:
            cur = dict(state.get(rid, {}))
            if ev.change_type in ("CREATE", "UNDELETE"):
                sets = {k: _text(v) for k, v in ev.values.items() if v is not None}
            elif ev.change_type == "UPDATE":
                sets = {k: _text(v) for k, v in ev.values.items()} | {k: None for k in ev.nulled}
            else:
                sets = {}
            for k, v in sorted(sets.items()):
                if cur.get(k) != v:
                    history.append((rid, k, cur.get(k), v, ev.commit_ms, ev.change_type, ev.user))
                cur[k] = v
            if ev.change_type == "DELETE":
                deleted[rid] = True
            elif ev.change_type in ("CREATE", "UNDELETE"):
                deleted[rid] = False
            state[rid] = cur
            vs = versions.setdefault(rid, [])
            if vs:
                vs[-1][3] = ev.commit_ms
            vs.append(
                [
                    rid,
                    len(vs) + 1,
                    ev.commit_ms,
                    None,
                    deleted.get(rid, False),
                    {k: v for k, v in cur.items() if v is not None},
                ]
            )
    flat = [tuple(v) for vs in versions.values() for v in vs]
    return Expected(history, flat)


def messages(events: list[LogicalEvent], fmt: str = "cometd") -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs; the key is the first record Id, so a record stays in one partition."""
    for i, ev in enumerate(events):
        if fmt == "cometd":
            value = render_cometd(ev, 1000 + i)
        else:
            value = render_confluent(ev, 1000 + i, envelope=(fmt == "confluent-envelope"))
        yield ev.record_ids[0].encode(), value
