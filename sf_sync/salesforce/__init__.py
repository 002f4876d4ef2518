"""The Salesforce client layer: logins, one failure policy, Arrow reads, reported writes.

Domain code only: no Dagster here except in ``resource.py``.
"""

from sf_sync.salesforce.auth import Credentials
from sf_sync.salesforce.client import ApiUsage, ClientStats, RetryPolicy, SalesforceClient
from sf_sync.salesforce.errors import (
    ApiBudgetExhausted,
    ApiLimitReached,
    LoginFailed,
    RetriesExhausted,
    SalesforceError,
    SessionExpired,
)
from sf_sync.salesforce.writes import RecordResult, WriteReport

__all__ = [
    "ApiBudgetExhausted",
    "ApiLimitReached",
    "ApiUsage",
    "ClientStats",
    "Credentials",
    "LoginFailed",
    "RecordResult",
    "RetriesExhausted",
    "RetryPolicy",
    "SalesforceClient",
    "SalesforceError",
    "SessionExpired",
    "WriteReport",
]
