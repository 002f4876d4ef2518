"""The stand-in's HTTP application: Salesforce's routes (REST in ``records``, ``query_api``
and ``bulk`` behind the ``gate``; OAuth and SOAP in ``logins``), the stand-in's own control
endpoints under ``/_devorg/``, and Salesforce-shaped 404/405 answers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sf_sync.devorg.bulk import bulk_routes
from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.gate import error_response, json_response, rest
from sf_sync.devorg.logins import oauth_token, soap
from sf_sync.devorg.org import DevOrg
from sf_sync.devorg.query_api import query, query_more
from sf_sync.devorg.records import (
    collection_retrieve,
    collections,
    create,
    deleted,
    describe,
    external_id_resource,
    global_describe,
    limits,
    record_resource,
    resources,
    sobject_info,
    updated,
    versions,
)

__all__ = ["DevOrg", "build_app"]


# ---------------------------------------------------------------------------------------------
# The stand-in's own control endpoints (not Salesforce's)


async def devorg_status(request: Request) -> Response:
    org: DevOrg = request.app.state.org
    used, limit = org.api_usage()
    return json_response({
        "instance_url": org.settings.instance_url,
        "outbox": await run_in_threadpool(org.store.outbox_size),
        "published": getattr(request.app.state, "published", lambda: 0)(),
        "faults": orjson.loads(org.faults.faults.to_json()),
        "api_usage": {"used": used, "max": limit},
    })  # fmt: skip


async def devorg_faults(request: Request) -> Response:
    org: DevOrg = request.app.state.org
    if request.method == "PUT":
        try:
            updates = orjson.loads(await request.body() or b"{}")
            faults = org.set_faults(updates)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
    else:
        faults = org.faults.faults
    return json_response(orjson.loads(faults.to_json()))


async def devorg_expire_sessions(request: Request) -> Response:
    org: DevOrg = request.app.state.org
    return json_response({"expired": await run_in_threadpool(org.sessions.expire_all)})


async def not_found(request: Request, exc: Exception) -> Response:
    return error_response(ApiError("NOT_FOUND", "The requested resource does not exist"))


async def not_allowed(request: Request, exc: Exception) -> Response:
    method = request.method
    return error_response(ApiError("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed"))


def _with_slash(path: str, endpoint: Any, methods: list[str]) -> list[Route]:
    """Salesforce answers these paths with and without a trailing slash, without redirects."""
    return [Route(path, endpoint, methods=methods), Route(path + "/", endpoint, methods=methods)]


def build_app(org: DevOrg, extra_routes: list[Route] | None = None) -> Starlette:
    v = "/services/data/v{version:str}"
    routes = [
        Route("/services/oauth2/token", oauth_token, methods=["POST"]),
        Route("/services/Soap/u/{version:str}", soap, methods=["POST"]),
        *_with_slash("/services/data", versions, ["GET"]),
        Route(f"{v}/", rest(resources), methods=["GET"]),
        *_with_slash(f"{v}/sobjects", rest(global_describe), ["GET"]),
        Route(f"{v}/sobjects/{{sobject}}", rest(sobject_info), methods=["GET"]),
        Route(f"{v}/sobjects/{{sobject}}/", rest(create), methods=["POST"]),
        *_with_slash(f"{v}/sobjects/{{sobject}}/describe", rest(describe), ["GET"]),
        Route(f"{v}/sobjects/{{sobject}}/deleted/", rest(deleted), methods=["GET"]),
        Route(f"{v}/sobjects/{{sobject}}/updated/", rest(updated), methods=["GET"]),
        Route(
            f"{v}/sobjects/{{sobject}}/{{record_id}}",
            rest(record_resource),
            methods=["GET", "PATCH", "DELETE"],
        ),
        Route(
            f"{v}/sobjects/{{sobject}}/{{field}}/{{value:path}}",
            rest(external_id_resource),
            methods=["GET", "PATCH"],
        ),
        *_with_slash(f"{v}/query", rest(query), ["GET"]),
        *_with_slash(f"{v}/queryAll", rest(query), ["GET"]),
        Route(f"{v}/query/{{locator}}", rest(query_more), methods=["GET"]),
        Route(f"{v}/queryAll/{{locator}}", rest(query_more), methods=["GET"]),
        *_with_slash(f"{v}/limits", rest(limits), ["GET"]),
        Route(f"{v}/composite/sobjects", rest(collections), methods=["POST", "PATCH", "DELETE"]),
        Route(f"{v}/composite/sobjects/{{sobject}}", rest(collection_retrieve), methods=["GET"]),
        Route(
            f"{v}/composite/sobjects/{{sobject}}/{{field}}", rest(collections), methods=["PATCH"]
        ),
        Route("/_devorg/status", devorg_status, methods=["GET"]),
        Route("/_devorg/faults", devorg_faults, methods=["GET", "PUT"]),
        Route("/_devorg/expire-sessions", devorg_expire_sessions, methods=["POST"]),
        *bulk_routes(),
        *(extra_routes or []),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    app.state.org = org
    return app
