"""The dev org keeps its records, sessions, Id counters and undelivered events across a
restart, as an org would: a change committed while Kafka is unreachable is published later."""

from __future__ import annotations

import os
import time

from sf_sync.devorg import service
from sf_sync.devorg.settings import devorg_settings
from tests.devorg.conftest import DevOrgHandle
from tests.devorg.test_rest import account_topic, events_for, header


def test_restart_keeps_state_sessions_and_undelivered_events(devorg: DevOrgHandle) -> None:
    sf = devorg.sf()
    first = sf.Account.create({"Name": "Before restart", "BillingCity": "Riga"})["id"]
    devorg.control.wait_published()

    # Restart with Kafka out of reach: the change commits, its event waits in the outbox.
    service.stop(devorg.org)
    os.environ["SF_SYNC_KAFKA_BOOTSTRAP"] = "127.0.0.1:1"
    try:
        offline = devorg_settings(devorg.settings)
        service.start(offline)
        assert sf.Account.get(first)["BillingCity"] == "Riga"  # the old session still works
        second = sf.Account.create({"Name": "After restart"})["id"]
        sf.Account.update(first, {"BillingCity": "Oslo"})
        time.sleep(1)
        assert devorg.control.status()["outbox"] == 2
    finally:
        service.stop(devorg.org)
        del os.environ["SF_SYNC_KAFKA_BOOTSTRAP"]

    service.start(devorg.org)
    assert second != first and second.startswith("001")
    assert sf.Account.get(second)["Name"] == "After restart"
    events = events_for(devorg, account_topic(devorg), first)  # waits for the outbox to drain
    assert [header(e)["changeType"] for e in events] == ["CREATE", "UPDATE"]
    assert events[1]["event"]["replayId"] > events[0]["event"]["replayId"]
    assert [header(e)["changeType"] for e in events_for(devorg, account_topic(devorg), second)] == [
        "CREATE"
    ]
