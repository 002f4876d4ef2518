"""The dev org's settings: the ``devorg`` section of the configuration file, plus its schema.

Change events go to the topics of the streams the section names, in those streams' formats,
so the stand-in always writes exactly what the pipeline is configured to read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sf_sync.config import ConfigError, Settings, StreamConfig
from sf_sync.devorg.metadata import Schema, build_schema

# The dev org's own login. These are a local fixture's well-known values, not secrets; the
# environment can replace each of them (the client reads the same variables through EnvVar).
ENV_USERNAME = "SF_SYNC_SF_USERNAME"
ENV_PASSWORD = "SF_SYNC_SF_PASSWORD"
ENV_TOKEN = "SF_SYNC_SF_SECURITY_TOKEN"
ENV_CLIENT_ID = "SF_SYNC_SF_CLIENT_ID"
ENV_CLIENT_SECRET = "SF_SYNC_SF_CLIENT_SECRET"
DEV_CREDENTIALS = {
    ENV_USERNAME: "integration@sf-sync.devorg",
    ENV_PASSWORD: "devorg-password",
    ENV_TOKEN: "devorgSecurityToken",
    ENV_CLIENT_ID: "sf-sync-devorg-client",
    ENV_CLIENT_SECRET: "devorg-client-secret",
}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    security_token: str
    client_id: str
    client_secret: str
    jwt_public_key_file: Path | None = None

    @classmethod
    def from_env(cls, jwt_public_key_file: Path | None) -> Credentials:
        v = {k: os.environ.get(k) or d for k, d in DEV_CREDENTIALS.items()}
        return cls(
            v[ENV_USERNAME], v[ENV_PASSWORD], v[ENV_TOKEN], v[ENV_CLIENT_ID],
            v[ENV_CLIENT_SECRET], jwt_public_key_file,
        )  # fmt: skip


@dataclass(frozen=True)
class DevorgSettings:
    """Everything the stand-in needs; built once at start-up."""

    state_dir: Path
    host: str
    port: int
    api_version: str
    schema: Schema
    change_streams: dict[str, StreamConfig]  # object -> the stream its CDC events go to
    platform_event_streams: dict[str, StreamConfig]  # X__e -> its stream
    connector_schemas: bool  # Confluent format: wrap values in the schema envelope
    session_timeout_s: float
    daily_api_limit: int
    bootstrap: str
    credentials: Credentials

    @property
    def instance_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def database(self) -> Path:
        return self.state_dir / "org.sqlite"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.pem"


def devorg_settings(settings: Settings, port: int | None = None) -> DevorgSettings:
    raw = settings.devorg_config
    streams = {s.name: s for s in settings.streams}
    schema = build_schema(settings.objects_config)

    def stream(name: str, formats: tuple[str, ...]) -> StreamConfig:
        if name not in streams:
            raise ConfigError(f"devorg: stream {name!r} is not declared under streams")
        if streams[name].format not in formats:
            raise ConfigError(f"devorg: stream {name!r} must have a format in {formats}")
        return streams[name]

    change = {}
    for obj, name in (raw.get("change_events") or {}).items():
        if schema.get(obj) is None:
            raise ConfigError(f"devorg: change_events names unknown object {obj!r}")
        change[obj] = stream(name, ("cometd", "confluent"))
    platform = {
        event: stream(name, ("platform_event",))
        for event, name in (raw.get("platform_events") or {}).items()
    }
    key_file = raw.get("jwt_public_key_file")
    return DevorgSettings(
        state_dir=settings.home / "devorg",
        host=str(raw.get("host", "127.0.0.1")),
        port=int(port or os.environ.get("SF_SYNC_DEVORG_PORT") or raw.get("port", 8443)),
        api_version=str(raw.get("api_version", "59.0")),
        schema=schema,
        change_streams=change,
        platform_event_streams=platform,
        connector_schemas=bool(raw.get("connector_schemas", False)),
        session_timeout_s=float(raw.get("session_timeout_s", 7200)),
        daily_api_limit=int(raw.get("daily_api_limit", 100_000)),
        bootstrap=settings.bootstrap,
        credentials=Credentials.from_env(Path(key_file) if key_file else None),
    )
