"""The simulator's realistic traffic (creates, updates, address moves, deletes, undeletes, bulk
updates, the other system's events) goes through the org and lands in the history exactly."""

from __future__ import annotations

from simple_salesforce import Salesforce

from sf_sync.devorg.simulate import Simulator
from tests.devorg.conftest import DevOrgHandle
from tests.devorg.test_pipeline import compare, ingest
from tests.devorg.test_rest import topic_messages


def test_simulated_traffic_lands_exactly(devorg: DevOrgHandle, sf: Salesforce) -> None:
    webapp = next(s.topic for s in devorg.settings.streams if s.format == "external")
    sim_sf = devorg.sf(client="simulator")
    sim = Simulator(
        sim_sf, lambda rid: devorg.control.undelete(sim_sf, [rid]),
        bootstrap=devorg.settings.bootstrap, webapp_topic=webapp, seed=21,
    )  # fmt: skip
    sim.seed(accounts=60, contacts=30)
    report = sim.run(operations=400, seconds=None, rate=0)
    assert sum(report.calls.values()) + sum(report.refused.values()) == 400 + 2
    for op in ("update_account", "move_address", "bulk_update", "delete", "undelete"):
        assert report.calls.get(op, 0) > 0, op
    assert len(topic_messages(devorg, webapp)) == report.webapp_events > 0

    ingest(devorg)
    assert compare(devorg, sf, "Account") >= 60
    assert compare(devorg, sf, "Contact") >= 30
