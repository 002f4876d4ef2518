"""Sends the outbox's change events to Kafka, then deletes them: at least once, in order.

Rows leave the outbox only after the broker acknowledged every one of them (idempotent
producer, ``acks=all``). If Kafka is down, events wait in the outbox and go out when it is back.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaError, Message, Producer

from sf_sync.devorg.faults import FaultState
from sf_sync.devorg.store import OrgStore

log = logging.getLogger(__name__)


class OutboxPublisher(threading.Thread):
    def __init__(
        self, store: OrgStore, bootstrap: str, faults: FaultState, batch: int = 5000
    ) -> None:
        super().__init__(name="outbox-publisher", daemon=True)
        self.store = store
        self.faults = faults
        self.batch = batch
        self.stopping = threading.Event()
        self.published = 0
        self.last_error: str | None = None
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 30000,
            }
        )

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                sent = self.publish_once()
            except Exception as exc:  # keep going: the outbox keeps the events
                self.last_error = repr(exc)
                log.exception("publishing the outbox failed; retrying")
                sent = 0
            if not sent:
                self.stopping.wait(0.05 if self.last_error is None else 1.0)

    def publish_once(self) -> int:
        rows = self.store.outbox_batch(self.batch)
        if not rows:
            return 0
        order = list(rows)
        if self.faults.faults.reorder_events:
            self.faults.shuffle(order)
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        for _seq, topic, key, value in order:
            while True:
                try:
                    self.producer.produce(topic, value, key, on_delivery=delivered)
                    break
                except BufferError:
                    self.producer.poll(0.1)
        remaining = self.producer.flush(30)
        if remaining or errors:
            self.last_error = str(errors[0]) if errors else f"{remaining} events unacknowledged"
            return 0  # the whole batch is sent again later: duplicates, never losses
        self.store.outbox_done(rows[-1][0])
        self.published += len(rows)
        self.last_error = None
        return len(rows)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=35)
