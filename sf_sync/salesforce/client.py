"""``SalesforceClient``: one logged-in connection to an org, with one failure policy.

How it talks to Salesforce
--------------------------
simple-salesforce 1.12's login helpers always post to ``https://{domain}.salesforce.com/...``,
so they cannot reach a My Domain login host given as a URL, nor a local stand-in such as the
dev org on 127.0.0.1. The client therefore does the login requests itself (``auth.py``) against
a configurable ``login_url`` (``https://login.salesforce.com``, ``https://test.salesforce.com``,
a My Domain URL, or the dev org's instance URL), then builds
``simple_salesforce.Salesforce(instance_url=..., session_id=..., session=<our requests.Session>,
version=...)`` in *direct* mode. Direct mode never logs in again on a 401, so the client does
that too (below).

The failure policy, in one place
--------------------------------
Every HTTP request the client makes - simple-salesforce's REST calls, its Bulk API 2.0 calls
and our own logins - goes through ``SalesforceClient._send``, because the ``requests.Session``
handed to simple-salesforce is a subclass whose ``request`` calls it:

* **Budget**: before each API call, if the last known ``api-usage=used/max`` (read from the
  ``Sforce-Limit-Info`` header of every response by a response hook, or from ``/limits`` via
  :meth:`SalesforceClient.refresh_limits`) has reached ``api_budget_share``, raise
  :class:`ApiBudgetExhausted` without calling. The allocation is shared by every integration
  of the org; this keeps sf-sync from eating all of it.
* **Retries**: 5xx answers, connection errors and timeouts are retried with exponential
  backoff and jitter (``RetryPolicy``; ``Retry-After`` is honoured), up to ``attempts`` tries,
  then :class:`RetriesExhausted`. A POST is not idempotent (a create could be applied twice), so
  it is only retried when Salesforce cannot have acted on it: 502/503/504 answers and
  connection failures before the request was sent (connect errors/timeouts). Logins are
  retried on 502/503/504 and connection errors (a SOAP login fault is a final HTTP 500).
* **Expired session**: 401 -> log in again once (if the credentials allow it) and repeat the
  call; with an existing session (``auth_method="session"``) :class:`SessionExpired` instead.
* **API limit**: 403 ``REQUEST_LIMIT_EXCEEDED`` -> :class:`ApiLimitReached`, a clean stop:
  writes attach the report of what was done (``exc.partial``).
* Anything else (4xx) goes back to simple-salesforce, which raises its own exceptions; the
  write functions turn per-record errors into per-record results.

Every call carries ``Sforce-Call-Options: client=<client_name>``, so the change events it
causes say ``changeOrigin ...;client=sf-sync`` (echo suppression downstream).
``stats`` counts the API calls made (each attempt), retries and logins.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from simple_salesforce import Salesforce

from sf_sync.salesforce import auth
from sf_sync.salesforce.auth import Credentials
from sf_sync.salesforce.errors import (
    ApiBudgetExhausted,
    ApiLimitReached,
    RetriesExhausted,
    SessionExpired,
    error_of,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from sf_sync.salesforce.writes import WriteReport

log = logging.getLogger(__name__)
DEFAULT_API_VERSION = "59.0"
_POST_SAFE_STATUSES = (502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: delay n = min(max_delay, base * 2**(n-1)) * U(1-j, 1+j)."""

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return max(0.0, base * rng.uniform(1 - self.jitter, 1 + self.jitter))


@dataclass
class ClientStats:
    api_calls: int = 0  # requests sent to the org's API, every attempt counted
    retries: int = 0
    logins: int = 0  # including the first
    relogins: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ApiUsage:
    used: int
    limit: int

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 1.0


class _PolicySession(requests.Session):
    """A ``requests.Session`` whose every request goes through the client's policy."""

    def __init__(self, client: SalesforceClient, kind: str) -> None:
        super().__init__()
        self._client = client
        self._kind = kind  # "api" or "login"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return self._client._send(super().request, self._kind, method, url, *args, **kwargs)


def _parse_limit_info(header: str | None) -> ApiUsage | None:
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "api-usage" and "/" in value:
            used, _, limit = value.partition("/")
            if used.strip().isdigit() and limit.strip().isdigit():
                return ApiUsage(int(used), int(limit))
    return None


class SalesforceClient:
    """A logged-in connection: ``.sf`` is the simple-salesforce object, ``.http`` its session."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_version: str = DEFAULT_API_VERSION,
        ca_file: str | Path | None = None,
        client_name: str = "sf-sync",
        api_budget_share: float = 0.8,
        bulk_threshold: int = 10_000,
        retry: RetryPolicy | None = None,
        timeout_s: float = 120.0,
        bulk_poll_wait_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < api_budget_share <= 1:
            raise ValueError("api_budget_share must be in (0, 1]")
        if "," in client_name or "=" in client_name:
            raise ValueError("client_name may not contain ',' or '='")
        self.credentials = credentials
        self.api_version = api_version.lstrip("v")
        self.client_name = client_name
        self.api_budget_share = api_budget_share
        self.bulk_threshold = bulk_threshold
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.bulk_poll_wait_s = bulk_poll_wait_s
        self.stats = ClientStats()
        self.usage: ApiUsage | None = None
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self.http = auth.configure_tls(_PolicySession(self, "api"), ca_file)
        self.http.headers["Sforce-Call-Options"] = f"client={client_name}"
        self.http.hooks["response"].append(self._observe)
        self._login_http = auth.configure_tls(_PolicySession(self, "login"), ca_file)
        self._session = self._login()
        self.sf = Salesforce(
            instance_url=self._session.instance_url, session_id=self._session.access_token,
            session=self.http, version=self.api_version,
        )  # fmt: skip
        self._describes: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return (
            f"SalesforceClient(instance_url={self.instance_url!r}, "
            f"method={self.credentials.method!r}, client={self.client_name!r})"
        )

    # ------------------------------------------------------------------ session

    @property
    def instance_url(self) -> str:
        return self._session.instance_url

    @cached_property
    def _instance_host(self) -> str:
        return urlsplit(self._session.instance_url).netloc

    def _login(self) -> auth.Session:
        session = auth.login(
            self.credentials, self._login_http, self.api_version, timeout=self.timeout_s
        )
        if self.credentials.can_relogin:
            with self._lock:
                self.stats.logins += 1
        log.info("logged in to %s (%s)", session.instance_url, self.credentials.method)
        return session

    def _relogin(self) -> None:
        with self._lock:
            self._session = self._login()
            self.stats.relogins += 1
            self.sf.session_id = self._session.access_token
            self.sf.headers["Authorization"] = f"Bearer {self._session.access_token}"

    def close(self) -> None:
        self.http.close()
        self._login_http.close()

    def __enter__(self) -> SalesforceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the policy

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        usage = _parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            with self._lock:
                self.usage = usage

    def check_budget(self) -> None:
        """Raises :class:`ApiBudgetExhausted` if the known usage has reached the share."""
        usage = self.usage
        if usage is not None and usage.share >= self.api_budget_share:
            raise ApiBudgetExhausted(usage.used, usage.limit, self.api_budget_share)

    def refresh_limits(self) -> ApiUsage:
        """Reads ``/limits`` (one API call) and returns the org's daily API usage."""
        daily = self.sf.limits()["DailyApiRequests"]
        usage = ApiUsage(int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"]))
        with self._lock:
            self.usage = usage
        return usage

    def _may_retry(self, kind: str, method: str, status: int | None,
                   exc: Exception | None) -> bool:  # fmt: skip
        if kind == "login":  # SOAP answers a refused login with a 500 fault: final
            return status is None or status in _POST_SAFE_STATUSES
        if method.upper() != "POST":
            return True
        if status is not None:
            return status in _POST_SAFE_STATUSES
        return isinstance(exc, requests.exceptions.ConnectTimeout) or (
            isinstance(exc, requests.exceptions.ConnectionError)
            and "NewConnectionError" in repr(exc)
        )

    def _backoff(self, attempt: int, response: requests.Response | None) -> None:
        delay = self.retry.delay(attempt, self._rng)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), self.retry.max_delay_s))
        with self._lock:
            self.stats.retries += 1
        self._sleep(delay)

    def _send(self, send: Callable[..., requests.Response], kind: str, method: str, url: str,
              *args: Any, **kwargs: Any) -> requests.Response:  # fmt: skip
        """Every request of the client, with budget, retries, re-login and limit handling."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        api = kind == "api" and urlsplit(url).netloc == self._instance_host
        what = f"{method.upper()} {urlsplit(url).path}"
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            if api:
                self.check_budget()
                headers = dict(kwargs.get("headers") or {})
                headers["Authorization"] = f"Bearer {self._session.access_token}"
                kwargs["headers"] = headers
                with self._lock:
                    self.stats.api_calls += 1
            try:
                resp = send(method, url, *args, **kwargs)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if attempt < self.retry.attempts and self._may_retry(kind, method, None, exc):
                    log.warning("%s: %s, retrying (attempt %d of %d)", what,
                                type(exc).__name__, attempt, self.retry.attempts)  # fmt: skip
                    self._backoff(attempt, None)
                    continue
                raise RetriesExhausted(
                    f"{what}: {type(exc).__name__} after {attempt} attempt(s)", attempts=attempt
                ) from exc
            status = resp.status_code
            if status >= 500:
                if not self._may_retry(kind, method, status, None):
                    return resp  # not safe to repeat: simple-salesforce raises on it
                if attempt < self.retry.attempts:
                    log.warning("%s: HTTP %d, retrying (attempt %d of %d)", what, status,
                                attempt, self.retry.attempts)  # fmt: skip
                    self._backoff(attempt, resp)
                    continue
                code, message = _error(resp)
                raise RetriesExhausted(
                    f"{what}: HTTP {status} {code or ''} after {attempt} attempt(s): {message}",
                    attempts=attempt, status=status, error_code=code,
                )  # fmt: skip
            if api and status == 401:
                code, message = _error(resp)
                if not self.credentials.can_relogin:
                    raise SessionExpired(
                        f"{what}: HTTP 401 {code}: the session expired and an existing session "
                        "cannot be renewed; supply a new session id or a login method"
                    )
                if relogged:
                    raise SessionExpired(f"{what}: HTTP 401 {code} again after a fresh login")
                log.info("%s: HTTP 401 %s, logging in again", what, code)
                self._relogin()
                relogged = True
                attempt -= 1  # the re-login is not a failed attempt
                continue
            if api and status == 403:
                code, message = _error(resp)
                if code == "REQUEST_LIMIT_EXCEEDED":
                    raise ApiLimitReached(f"{what}: REQUEST_LIMIT_EXCEEDED: {message}")
            return resp

    # ------------------------------------------------------------------ conveniences

    def describe(self, object_name: str) -> dict[str, Any]:
        """``describe`` of an object, cached for the client's life."""
        key = object_name.lower()
        if key not in self._describes:
            self._describes[key] = getattr(self.sf, object_name).describe()
        return self._describes[key]

    def count(self, object_name: str, where: str | None = None, *,
              include_deleted: bool = False) -> int:  # fmt: skip
        from sf_sync.salesforce import reads

        return reads.count(self, object_name, where, include_deleted=include_deleted)

    def query_arrow(self, object_name: str, fields: list[str] | None = None,
                    where: str | None = None, *, include_deleted: bool = False,
                    bulk_threshold: int | None = None) -> pa.Table:  # fmt: skip
        from sf_sync.salesforce import reads

        return reads.query_arrow(self, object_name, fields, where,
                                 include_deleted=include_deleted,
                                 bulk_threshold=bulk_threshold)  # fmt: skip

    def update_records(self, object_name: str, records: list[dict[str, Any]],
                       **kwargs: Any) -> WriteReport:  # fmt: skip
        from sf_sync.salesforce import writes

        return writes.update_records(self, object_name, records, **kwargs)

    def create_records(self, object_name: str, records: list[dict[str, Any]],
                       **kwargs: Any) -> WriteReport:  # fmt: skip
        from sf_sync.salesforce import writes

        return writes.create_records(self, object_name, records, **kwargs)

    def upsert_records(self, object_name: str, records: list[dict[str, Any]],
                       external_id_field: str, **kwargs: Any) -> WriteReport:  # fmt: skip
        from sf_sync.salesforce import writes

        return writes.upsert_records(self, object_name, records, external_id_field, **kwargs)

    def delete_records(self, object_name: str, ids: list[str], **kwargs: Any) -> WriteReport:
        from sf_sync.salesforce import writes

        return writes.delete_records(self, object_name, ids, **kwargs)


def _error(resp: requests.Response) -> tuple[str | None, str]:
    try:
        return error_of(resp.json())
    except ValueError:
        return None, resp.text[:300]
