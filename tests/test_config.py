from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sf_sync.config import (
    ConfigError,
    Settings,
    load_settings,
    packaged_config_text,
    parse_settings,
)

MINIMAL = """
objects: {Account: {}}
streams:
  - {name: a, topic: t.a, format: cometd}
"""


def test_packaged_defaults_load() -> None:
    settings = load_settings()
    assert {s.format for s in settings.streams} == {
        "cometd",
        "confluent",
        "platform_event",
        "external",
    }


def test_environment_overrides(tmp_path: Path) -> None:
    settings = parse_settings(
        MINIMAL, environ={"SF_SYNC_HOME": str(tmp_path), "SF_SYNC_KAFKA_BOOTSTRAP": "h:1"}
    )
    assert settings.home == tmp_path and settings.bootstrap == "h:1"


def test_relative_home_is_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sf-sync.yaml"
    path.write_text(MINIMAL + "home: state\n")
    assert load_settings(path).home == tmp_path / "state"


@pytest.mark.parametrize(
    "text,message",
    [
        ("objects: {Account: {}}\nstreams: []", "no streams"),
        ("streams: [{name: a, topic: t, format: cometd}]", "no objects"),
        (MINIMAL.replace("cometd", "avro"), "format 'avro'"),
        (MINIMAL + "  - {name: b, topic: t.a, format: cometd}\n", "once"),
        (MINIMAL.replace("format: cometd", "format: platform_event"), "platform_event"),
        (MINIMAL.replace("format: cometd", "format: cometd, objects: [Lead]"), "not declared"),
    ],
)
def test_contradictions_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(text, environ={})


def test_duckdb_memory_limit_is_configurable() -> None:
    assert parse_settings(MINIMAL, environ={}).duckdb_memory_limit == "500MB"
    custom = parse_settings(MINIMAL + "duckdb: {memory_limit: 2GB}\n", environ={})
    assert custom.duckdb_memory_limit == "2GB"


def test_publication_interval_defaults_to_every_run() -> None:
    assert parse_settings(MINIMAL, environ={}).publish_every_s == 0
    custom = parse_settings(MINIMAL + "duckdb: {publish_every_s: 300}\n", environ={})
    assert custom.publish_every_s == 300


def test_the_packaged_file_states_the_defaults_of_the_code() -> None:
    """A setting left out of a configuration file takes the code's default; the packaged file
    (what a user without a file of their own runs with) must say the same values."""
    packaged = parse_settings(packaged_config_text(), environ={})
    minimal = parse_settings(MINIMAL, environ={})
    per_file = {"streams", "objects", "field_types", "objects_config", "devorg_config"}
    compared = [f.name for f in dataclasses.fields(Settings) if f.name not in per_file]
    assert "batch_messages" in compared and "duckdb_memory_limit" in compared
    for name in compared:
        assert getattr(packaged, name) == getattr(minimal, name), name
