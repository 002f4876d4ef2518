"""Talks to a running dev org's control endpoints (faults, session expiry, outbox status)."""

from __future__ import annotations

import time
from typing import Any

import requests

from sf_sync.devorg.settings import DevorgSettings


class DevorgControl:
    """The stand-in's own knobs, over the same verified HTTPS as its API."""

    def __init__(self, settings: DevorgSettings) -> None:
        self.base = settings.instance_url
        self.session = requests.Session()
        self.session.trust_env = False  # this machine's CA bundle variables would win otherwise
        self.session.verify = str(settings.ca_file)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.session.request(method, self.base + path, timeout=30, **kw)
        resp.raise_for_status()
        return resp.json()

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/_devorg/faults")

    def set_faults(self, updates: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/_devorg/faults", json=updates)

    def reset_faults(self) -> dict[str, Any]:
        defaults = {"latency_ms": 0, "error_rate": 0.0, "api_limit_reached": False,
                    "drop_events": 0.0, "gap_events": 0.0, "overflow_after": None,
                    "duplicate_events": 0.0, "reorder_events": False}  # fmt: skip
        return self.set_faults(defaults)

    def expire_sessions(self) -> dict[str, Any]:
        return self._call("POST", "/_devorg/expire-sessions")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/_devorg/status")

    def wait_published(self, timeout_s: float = 30) -> None:
        """Waits until every committed change event has left the outbox for Kafka."""
        deadline = time.monotonic() + timeout_s
        while self.status()["outbox"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the dev org's outbox did not drain")
            time.sleep(0.05)
