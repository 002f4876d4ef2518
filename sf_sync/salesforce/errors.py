"""The client's exceptions: one family, each saying what happened and what the caller can do.

Every exception that can stop a write part-way carries ``partial``: the :class:`WriteReport`
of what was done before it (set by the write functions), so a caller keeps that work and
resumes with ``partial.remaining(records)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sf_sync.salesforce.writes import WriteReport


class SalesforceError(Exception):
    """Base of the client's own errors."""

    partial: WriteReport | None = None


class LoginFailed(SalesforceError):
    """The login endpoint refused the credentials (or answered something unusable)."""


class SessionExpired(SalesforceError):
    """401 INVALID_SESSION_ID and the credentials cannot log in again (an existing session),
    or a fresh login was refused again right away."""


class ApiLimitReached(SalesforceError):
    """403 REQUEST_LIMIT_EXCEEDED: the org's API allocation is used up. A clean stop."""


class ApiBudgetExhausted(SalesforceError):
    """This client's share of the org's daily API allocation is used up; no call was made."""

    def __init__(self, used: int, limit: int, share: float) -> None:
        super().__init__(
            f"API budget exhausted: the org has used {used} of {limit} daily API requests "
            f"({used / limit:.1%}), this client may use up to {share:.0%}"
        )
        self.used, self.limit, self.share = used, limit, share


class RetriesExhausted(SalesforceError):
    """A call kept failing with a retryable error (5xx, connection error, timeout)."""

    def __init__(self, message: str, *, attempts: int, status: int | None = None,
                 error_code: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.attempts, self.status, self.error_code = attempts, status, error_code


def error_of(body: Any) -> tuple[str | None, str]:
    """``(errorCode, message)`` of a REST error body ``[{"errorCode", "message"}]``."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), str(body[0].get("message", ""))
    if isinstance(body, dict):
        return body.get("errorCode") or body.get("error"), str(
            body.get("message") or body.get("error_description") or ""
        )
    return None, str(body)[:500]
