"""The demo stream: synthetic Account changes, some of the other system's events, bad input."""

from __future__ import annotations

import orjson

from sf_sync import synth
from sf_sync.config import Settings
from sf_sync.kafka.produce import produce

BAD_MESSAGES: list[bytes | None] = [b"\xff\xfe not utf-8", b"{not json", b"", None, b"[1, 2]"]


def webapp_events(events: list[synth.LogicalEvent], every: int = 25) -> list[bytes]:
    """The other system's view of some records (shape in docs/contract.md)."""
    out = []
    for i, ev in enumerate(events[::every]):
        if ev.change_type != "UPDATE" or "Phone" not in ev.values:
            continue
        out.append(
            orjson.dumps(
                {
                    "event_id": f"web-{i}",
                    "record_key": f"W-{ev.record_ids[0][-6:]}",
                    "salesforce_id": ev.record_ids[0],
                    "object": "Account",
                    "operation": "UPDATE",
                    "changed_fields": {"Phone": ev.values["Phone"]},
                    "timestamp": synth.iso(ev.commit_ms + 250),
                    "origin": "webapp",
                    "user": "web-user",
                }
            )
        )
    return out


def produce_demo_stream(settings: Settings, *, records: int, events: int, seed: int) -> dict:
    stream = synth.generate(seed, records, events)
    account_topic = next(s.topic for s in settings.streams if s.format == "cometd")
    sent = produce(settings.bootstrap, account_topic, synth.messages(stream))
    sent_bad = produce(settings.bootstrap, account_topic, ((b"bad", v) for v in BAD_MESSAGES))
    external = [s.topic for s in settings.streams if s.format == "external"]
    sent_web = 0
    if external:
        sent_web = produce(
            settings.bootstrap, external[0], ((None, v) for v in webapp_events(stream))
        )
    return {"salesforce_events": sent, "malformed": sent_bad, "webapp_events": sent_web}
