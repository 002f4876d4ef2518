"""The gate every ``/services/data`` call passes: latency and 5xx faults, the session check,
the daily API allocation and its ``Sforce-Limit-Info`` header; then the handler runs in a worker
thread with a :class:`Call`, and errors leave in Salesforce's shape."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.metadata import ObjectSpec
from sf_sync.devorg.org import DevOrg
from sf_sync.devorg.store import CallContext, OrgStore

log = logging.getLogger(__name__)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(err: ApiError) -> Response:
    return json_response(err.body(), err.status or 400)


Handler = Callable[["Call"], Any]


@dataclass
class Call:
    """One authenticated REST call."""

    org: DevOrg
    request: Request
    ctx: CallContext
    version: str
    body: Any

    @property
    def store(self) -> OrgStore:
        return self.org.store

    def obj(self, name: str) -> ObjectSpec:
        obj = self.org.settings.schema.get(name)
        if obj is None:
            raise ApiError("NOT_FOUND", "The requested resource does not exist")
        return obj

    def param(self, name: str) -> str | None:
        return self.request.query_params.get(name)


def _client_option(header: str | None) -> str | None:
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "client" and value.strip():
            return value.strip()
    return None


def rest(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wraps a handler with the API gate, the call context and Salesforce's error shape."""

    async def endpoint(request: Request) -> Response:
        org: DevOrg = request.app.state.org
        faults = org.faults.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        try:
            user = await run_in_threadpool(
                org.sessions.user_for, request.headers.get("authorization")
            )
            if org.faults.chance(faults.error_rate):
                raise ApiError(
                    "SERVER_UNAVAILABLE", "Server is temporarily unavailable (injected fault)",
                    status=503,
                )  # fmt: skip
            used, limit = org.api_usage()
            if faults.api_limit_reached or used >= limit:
                raise ApiError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            used, limit = await run_in_threadpool(org.count_call)
            raw = await request.body()
            try:
                csv_body = request.headers.get("content-type", "").startswith("text/csv")
                body = raw if csv_body else orjson.loads(raw) if raw else None  # CSV: Bulk API
            except orjson.JSONDecodeError as exc:
                raise ApiError("JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
            version = request.path_params.get("version", org.settings.api_version)
            api = "bulkapi" if "/jobs/" in request.url.path else "rest"
            ctx = CallContext(
                user, _client_option(request.headers.get("sforce-call-options")), api, version
            )
            call = Call(org, request, ctx, version, body)
            result = await run_in_threadpool(handler, call)
            response = result if isinstance(result, Response) else json_response(result)
        except ApiError as err:
            response = error_response(err)
            used, limit = org.api_usage()
        except Exception:  # a bug of ours: answer as Salesforce does, keep the trace in the log
            error_id = secrets.token_hex(6)
            log.exception("unexpected error %s", error_id)
            response = error_response(ApiError(
                "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId "
                f"if you contact support: {error_id}", status=500,
            ))  # fmt: skip
            used, limit = org.api_usage()
        response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
        return response

    return endpoint
