"""Salesforce's error shape: a JSON list of ``{message, errorCode, fields}`` with an HTTP status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The HTTP status Salesforce's REST API answers each error code with (400 unless listed).
STATUS_BY_CODE = {
    "INVALID_SESSION_ID": 401,
    "INVALID_AUTH_HEADER": 401,
    "REQUEST_LIMIT_EXCEEDED": 403,
    "INSUFFICIENT_ACCESS": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "PRECONDITION_FAILED": 412,
    "UNKNOWN_EXCEPTION": 500,
    "SERVER_UNAVAILABLE": 503,
}


@dataclass
class ApiError(Exception):
    """An error the API reports to the caller, exactly as Salesforce would shape it."""

    error_code: str
    message: str
    fields: list[str] = field(default_factory=list)
    status: int | None = None

    def __post_init__(self) -> None:
        super().__init__(f"{self.error_code}: {self.message}")
        if self.status is None:
            self.status = STATUS_BY_CODE.get(self.error_code, 400)

    def body(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields:
            entry["fields"] = self.fields
        return [entry]

    def record_error(self) -> dict[str, Any]:
        """The per-record form used in save results (sObject Collections, Bulk results)."""
        return {"statusCode": self.error_code, "message": self.message, "fields": self.fields}
