"""Fault injection, switchable while the stand-in runs (``sf-sync devorg faults``).

Faults are kept in the org's state so that they survive a restart and so that the CLI, the API
and the server threads all see one truth. Random choices come from a seeded generator, so a run
with the same seed and the same calls misbehaves the same way.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Faults:
    """What the stand-in currently does wrong. All off by default."""

    latency_ms: int = 0  # added to every API answer
    error_rate: float = 0.0  # share of API calls answered 503 SERVER_UNAVAILABLE
    api_limit_reached: bool = False  # every call answered 403 REQUEST_LIMIT_EXCEEDED
    drop_events: float = 0.0  # share of change events never sent
    gap_events: float = 0.0  # share of change events replaced by GAP_<type> events
    overflow_after: int | None = None  # GAP_OVERFLOW after this many changes in a transaction
    duplicate_events: float = 0.0  # share of change events sent twice
    reorder_events: bool = False  # events of each publish batch sent in shuffled order
    seed: int = 0

    def with_updates(self, updates: dict[str, Any]) -> Faults:
        known = {f.name: f.type for f in fields(self)}
        unknown = set(updates) - set(known)
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **_coerce(updates))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Faults:
        return cls(**json.loads(text)) if text else cls()


def _coerce(updates: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in updates.items():
        default = getattr(Faults, key)
        if key == "overflow_after":
            out[key] = None if value in (None, "", "none", "off") else int(value)
        elif isinstance(default, bool):
            out[key] = (
                value if isinstance(value, bool) else str(value).lower() in ("1", "true", "on")
            )
        elif isinstance(default, float):
            share = float(value)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{key} is a share between 0 and 1, got {value}")
            out[key] = share
        else:
            out[key] = int(value)
    return out


class FaultState:
    """The current faults plus their random generator, shared by the server's threads."""

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self.faults = faults
        self._rng = random.Random(faults.seed)

    def set(self, faults: Faults) -> None:
        with self._lock:
            if faults.seed != self.faults.seed:
                self._rng = random.Random(faults.seed)
            self.faults = faults

    def chance(self, share: float) -> bool:
        if share <= 0:
            return False
        with self._lock:
            return self._rng.random() < share

    def shuffle(self, items: list[Any]) -> None:
        with self._lock:
            self._rng.shuffle(items)
