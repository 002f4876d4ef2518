"""The Dagster resource of sf-sync: the only module of the core that imports Dagster.

It turns Dagster configuration (and ``dg.EnvVar`` secrets) into the plain ``Settings`` the
domain code takes, so everything under ``sf_sync`` stays testable without Dagster.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg

from sf_sync.config import Settings, load_settings


class SfSyncResource(dg.ConfigurableResource):
    """Where sf-sync's configuration, state folder and Kafka brokers are.

    Empty fields fall back to the configuration file and its environment overrides
    (``SF_SYNC_CONFIG``, ``SF_SYNC_HOME``, ``SF_SYNC_KAFKA_BOOTSTRAP``).
    """

    config_path: str | None = None
    home: str | None = None
    kafka_bootstrap: str | None = None

    def settings(self) -> Settings:
        settings = load_settings(self.config_path)
        if self.home:
            settings = replace(settings, home=Path(self.home).resolve())
        if self.kafka_bootstrap:
            settings = replace(settings, bootstrap=self.kafka_bootstrap)
        return settings
