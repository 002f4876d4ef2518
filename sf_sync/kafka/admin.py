"""Topic administration for local set-ups, tests and the demo."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from sf_sync.kafka.client import admin_client


def ensure_topics(bootstrap: str, topics: Sequence[str], *, partitions: int = 3) -> list[str]:
    """Creates the topics that do not exist yet; returns those it created."""
    admin = admin_client(bootstrap)
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing],
        operation_timeout=30,
    )
    for _topic, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a concurrent creator won
                raise
    return missing


def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    admin = admin_client(bootstrap)
    futures = admin.delete_topics(list(topics), operation_timeout=30)
    for fut in futures.values():
        fut.result()
