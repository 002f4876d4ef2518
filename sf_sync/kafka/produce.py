"""Producing to Kafka, for the demo, the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Producer


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, int]],
    *,
    partition: int | None = None,
    timestamp_ms: int | None = None,
) -> int:
    """Sends (key, value) pairs and waits until every one is acknowledged.

    Keys pick the partition (one record stays in one partition, as on a CDC channel) unless
    ``partition`` is given, or a message is a (key, value, partition) triple. Raises if any
    delivery failed: nothing is silently lost here either.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "message.max.bytes": 8_000_000,
        }
    )
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    extra = {} if partition is None else {"partition": partition}
    if timestamp_ms is not None:
        extra["timestamp"] = timestamp_ms
    for message in messages:
        key, value = message[0], message[1]
        options = extra if len(message) == 2 else {**extra, "partition": message[2]}
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery, **options)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"{remaining} undelivered, {len(failures)} failed: {failures[:3]}")
    return count
