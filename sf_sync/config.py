"""Settings: one YAML file declares the streams; a few environment variables override it.

The file is found at ``$SF_SYNC_CONFIG`` or ``./sf-sync.yaml``; when neither exists the
packaged defaults (``sf_sync/default-config.yaml``) are used, so a fresh checkout runs as is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

StreamFormat = Literal["cometd", "confluent", "platform_event", "external"]
STREAM_FORMATS: tuple[str, ...] = ("cometd", "confluent", "platform_event", "external")

ENV_CONFIG = "SF_SYNC_CONFIG"
ENV_HOME = "SF_SYNC_HOME"
ENV_BOOTSTRAP = "SF_SYNC_KAFKA_BOOTSTRAP"
ENV_GROUP = "SF_SYNC_KAFKA_GROUP"


class ConfigError(ValueError):
    """The configuration file is missing something or contradicts itself."""


@dataclass(frozen=True)
class PlatformEventMapping:
    """Which custom fields of a platform event carry the change (a per-event design choice)."""

    record_id_field: str
    change_type_field: str
    data_field: str
    changed_fields_field: str | None = None
    object_field: str | None = None
    object: str | None = None
    changed_fields_separator: str = ";"


@dataclass(frozen=True)
class StreamConfig:
    """One Kafka topic and how to read it."""

    name: str
    topic: str
    format: StreamFormat
    source: str = "salesforce"
    objects: tuple[str, ...] = ()
    platform_event: PlatformEventMapping | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know; immutable so it can be shared freely."""

    home: Path
    bootstrap: str
    group_id: str
    streams: tuple[StreamConfig, ...]
    objects: tuple[str, ...]
    field_types: dict[str, dict[str, str]] = field(default_factory=dict)
    max_range_messages: int = 250_000
    max_message_bytes: int = 1_048_576
    lookback_days: int = 7
    read_stall_timeout_s: float = 30.0
    batch_messages: int = 50_000
    duckdb_memory_limit: str = "500MB"
    #: The analysts' copy is refreshed at most this often (0: after every run). Each refresh
    #: copies the whole warehouse, so a large history wants minutes here.
    publish_every_s: float = 0.0
    config_path: Path | None = None
    # Raw sections other parts read for themselves (the dev org builds its schema from these).
    objects_config: dict[str, Any] = field(default_factory=dict)
    devorg_config: dict[str, Any] = field(default_factory=dict)

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def warehouse_path(self) -> Path:
        """The ingestion's private DuckDB file (single writer)."""
        return self.home / "warehouse.duckdb"

    @property
    def history_path(self) -> Path:
        """The analysts' copy of the warehouse, republished after runs, never locked."""
        return self.home / "history.duckdb"

    @property
    def kafka_dir(self) -> Path:
        """The state folder the local broker keeps its ``kafka/`` folder (jars, data, PID) in."""
        return self.home

    @property
    def topics(self) -> list[str]:
        return [s.topic for s in self.streams]


def _default(name: str) -> Any:
    """``Settings``' default for ``name``: a setting a file leaves out takes it."""
    return Settings.__dataclass_fields__[name].default


def packaged_config_text() -> str:
    """The packaged ``default-config.yaml``: what runs when no configuration file is given."""
    return resources.files("sf_sync").joinpath("default-config.yaml").read_text()


def _stream(raw: dict[str, Any], known_objects: tuple[str, ...]) -> StreamConfig:
    try:
        name, topic, fmt = raw["name"], raw["topic"], raw["format"]
    except KeyError as missing:
        raise ConfigError(f"stream {raw!r} lacks {missing}") from None
    if fmt not in STREAM_FORMATS:
        raise ConfigError(f"stream {name!r}: format {fmt!r} is not one of {STREAM_FORMATS}")
    mapping = None
    if fmt == "platform_event":
        pe = raw.get("platform_event") or {}
        try:
            mapping = PlatformEventMapping(**pe)
        except TypeError as exc:
            raise ConfigError(f"stream {name!r}: platform_event mapping: {exc}") from None
        if not (mapping.object or mapping.object_field):
            raise ConfigError(f"stream {name!r}: platform_event needs object or object_field")
    objects = tuple(raw.get("objects") or known_objects)
    unknown = set(objects) - set(known_objects)
    if unknown:
        raise ConfigError(f"stream {name!r}: objects {sorted(unknown)} are not declared")
    source = raw.get("source", "salesforce" if fmt != "external" else None)
    if not source:
        raise ConfigError(f"stream {name!r}: an external stream needs a source name")
    return StreamConfig(name, topic, fmt, source, objects, mapping)


def parse_settings(
    text: str, *, environ: dict[str, str] | None = None, config_path: Path | None = None
) -> Settings:
    """Builds settings from YAML text, applying environment overrides."""
    env = os.environ if environ is None else environ
    raw = yaml.safe_load(text) or {}
    kafka = raw.get("kafka") or {}
    duckdb = raw.get("duckdb") or {}
    objects_raw = raw.get("objects") or {}
    objects = tuple(objects_raw)
    if not objects:
        raise ConfigError("no objects declared")
    field_types = {
        obj: {str(k): str(v) for k, v in ((spec or {}).get("field_types") or {}).items()}
        for obj, spec in objects_raw.items()
    }
    streams = tuple(_stream(s, objects) for s in raw.get("streams") or [])
    if not streams:
        raise ConfigError("no streams declared")
    topics = [s.topic for s in streams]
    if len(set(topics)) != len(topics):
        raise ConfigError("each topic may be declared once")
    base = config_path.parent if config_path else Path.cwd()
    home = Path(env.get(ENV_HOME) or raw.get("home") or ".sf-sync")
    if not home.is_absolute():
        home = (base / home).resolve()
    return Settings(
        home=home,
        bootstrap=env.get(ENV_BOOTSTRAP) or kafka.get("bootstrap") or "127.0.0.1:9092",
        group_id=env.get(ENV_GROUP) or kafka.get("group_id") or "sf-sync",
        streams=streams,
        objects=objects,
        field_types=field_types,
        max_range_messages=int(kafka.get("max_range_messages", _default("max_range_messages"))),
        max_message_bytes=int(kafka.get("max_message_bytes", _default("max_message_bytes"))),
        lookback_days=int(kafka.get("lookback_days", _default("lookback_days"))),
        read_stall_timeout_s=float(
            kafka.get("read_stall_timeout_s", _default("read_stall_timeout_s"))
        ),
        batch_messages=int(kafka.get("batch_messages", _default("batch_messages"))),
        duckdb_memory_limit=str(duckdb.get("memory_limit", _default("duckdb_memory_limit"))),
        publish_every_s=float(duckdb.get("publish_every_s", _default("publish_every_s"))),
        config_path=config_path,
        objects_config={k: (v or {}) for k, v in objects_raw.items()},
        devorg_config=dict(raw.get("devorg") or {}),
    )


def load_settings(path: str | Path | None = None) -> Settings:
    """Loads ``path``, else ``$SF_SYNC_CONFIG``, else ``./sf-sync.yaml``, else the defaults."""
    candidate = path or os.environ.get(ENV_CONFIG)
    if candidate is None and Path("sf-sync.yaml").exists():
        candidate = "sf-sync.yaml"
    if candidate is None:
        return parse_settings(packaged_config_text())
    p = Path(candidate).resolve()
    if not p.exists():
        raise ConfigError(f"configuration file {p} does not exist")
    return parse_settings(p.read_text(), config_path=p)
