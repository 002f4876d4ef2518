"""The running dev org: its store, sessions, faults, query cursors and API allocation, shared
by every request handler."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sf_sync.devorg.auth import Sessions
from sf_sync.devorg.events import EventBuilder
from sf_sync.devorg.faults import Faults, FaultState
from sf_sync.devorg.settings import DevorgSettings
from sf_sync.devorg.store import OrgStore


@dataclass
class Cursor:
    """A query's remaining pages, behind a ``nextRecordsUrl`` locator."""

    compiled: Any
    total: int
    expires: float


class DevOrg:
    """The running org: store, sessions, faults, cursors; shared by the request handlers."""

    def __init__(self, settings: DevorgSettings) -> None:
        self.settings = settings
        self.store = OrgStore(settings.database, settings.schema)
        self.faults = FaultState(Faults.from_json(self.store.meta("faults")))
        self.store.event_sink = EventBuilder(settings, self.faults)
        self.sessions = Sessions(self.store, settings)
        self.cursors: dict[str, Cursor] = {}
        self._cursor_lock = threading.Lock()

    def set_faults(self, updates: dict[str, Any]) -> Faults:
        faults = self.faults.faults.with_updates(updates)
        self.store.set_meta("faults", faults.to_json())
        self.faults.set(faults)
        return faults

    # ------------------------------------------------------------------ API allocation

    def api_usage(self) -> tuple[int, int]:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        used = int(self.store.meta(f"api_usage:{day}") or 0)
        return used, self.settings.daily_api_limit

    def count_call(self) -> tuple[int, int]:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        used = self.store.next_counter(f"api_usage:{day}")
        return used, self.settings.daily_api_limit
