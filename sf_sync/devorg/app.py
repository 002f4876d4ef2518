"""The stand-in's HTTP API: Salesforce's REST, SOAP login/undelete and OAuth endpoints.

Handlers are thin: they parse the request, call the store inside one transaction per call and
shape the answer as Salesforce does. Every ``/services/data`` call passes the same gate first:
latency and 5xx faults, the session check, the daily API allocation and its
``Sforce-Limit-Info`` header.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sf_sync.devorg import describe as describe_mod
from sf_sync.devorg.auth import OAuthError, Sessions
from sf_sync.devorg.bulk import bulk_routes
from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.events import EventBuilder, platform_event_row
from sf_sync.devorg.faults import Faults, FaultState
from sf_sync.devorg.metadata import ObjectSpec
from sf_sync.devorg.settings import DevorgSettings
from sf_sync.devorg.store import CallContext, OrgStore, normalise_id, q, utc_from_header
from sf_sync.devorg.values import address_json, format_datetime, parse_datetime, to_json

log = logging.getLogger(__name__)
VERSIONS = ("55.0", "56.0", "57.0", "58.0", "59.0", "60.0", "61.0", "62.0")
QUERY_PAGE = 2000
COLLECTION_LIMIT = 200
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(err: ApiError) -> Response:
    return json_response(err.body(), err.status or 400)


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


# ---------------------------------------------------------------------------------------------
# The gate every REST call passes


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


# ---------------------------------------------------------------------------------------------
# Records


def record_json(
    obj: ObjectSpec, record: dict[str, Any], version: str, fields: list[str] | None = None
) -> dict[str, Any]:
    """A record as REST returns it: ``attributes`` first, then fields in describe order."""
    out: dict[str, Any] = {
        "attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/"
                       f"{record['Id']}"},
    }  # fmt: skip
    specs = obj.fields if fields is None else [_field(obj, f) for f in fields]
    for spec in specs:
        if spec.type == "address":
            out[spec.name] = address_json(obj, spec.name, record)
        else:
            out[spec.name] = to_json(spec, record.get(spec.name))
    return out


def _field(obj: ObjectSpec, name: str) -> Any:
    spec = obj.field(name.strip())
    if spec is None:
        raise ApiError("INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}")
    return spec


def _live(call: Call, obj: ObjectSpec, record_id: str) -> dict[str, Any]:
    rid = normalise_id(record_id)
    record = call.store.get(obj, rid) if rid and rid[:3] == obj.key_prefix else None
    if record is None or record["IsDeleted"]:
        raise ApiError("NOT_FOUND", "The requested resource does not exist")
    return record


def _body_object(call: Call) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise ApiError("JSON_PARSER_ERROR", "The request body must be a JSON object")
    return call.body


def create(call: Call) -> Response:
    name = call.request.path_params["sobject"]
    if name in call.org.settings.platform_event_streams:
        return _publish_platform_event(call, name)
    obj = call.obj(name)
    with call.store.transaction(call.ctx) as tx:
        record_id = tx.create(obj, _body_object(call))
    return json_response({"id": record_id, "success": True, "errors": []}, 201)


def _publish_platform_event(call: Call, name: str) -> Response:
    body = _body_object(call)
    with call.store.transaction(call.ctx) as tx:
        replay = call.store.next_counter("replay_id")
        tx.published.append(
            platform_event_row(call.org.settings, name, body, call.ctx, tx.stamp, replay)
        )
    event_id = f"e00{secrets.token_hex(6)[:12]}AAA"
    enqueued = {"statusCode": "OPERATION_ENQUEUED", "message": event_id, "fields": []}
    return json_response({"id": event_id, "success": True, "errors": [enqueued]}, 201)


def sobject_info(call: Call) -> dict[str, Any]:
    obj = call.obj(call.request.path_params["sobject"])
    return {"objectDescribe": describe_mod.object_summary(obj, call.version), "recentItems": []}


def record_resource(call: Call) -> Response | dict[str, Any]:
    """GET/PATCH/DELETE ``/sobjects/X/{id}``."""
    obj = call.obj(call.request.path_params["sobject"])
    record_id = call.request.path_params["record_id"]
    method = call.request.method
    if method == "GET":
        fields = call.param("fields")
        record = _live(call, obj, record_id)
        return record_json(obj, record, call.version, fields.split(",") if fields else None)
    with call.store.transaction(call.ctx) as tx:
        if method == "PATCH":
            guard = call.request.headers.get("if-unmodified-since")
            tx.update(obj, record_id, _body_object(call), utc_from_header(guard) if guard else None)
        elif method == "DELETE":
            tx.delete(obj, record_id)
        else:
            raise ApiError("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
    return Response(status_code=204)


def external_id_resource(call: Call) -> Response | dict[str, Any]:
    """GET or upsert (PATCH) ``/sobjects/X/{externalIdField}/{value}``."""
    obj = call.obj(call.request.path_params["sobject"])
    field_name = call.request.path_params["field"]
    value = unquote(call.request.path_params["value"])
    spec = obj.field(field_name)
    if spec is None or not (spec.external_id or spec.name == "Id"):
        raise ApiError("NOT_FOUND", f"Provided external ID field does not exist or is not "
                       f"accessible: {field_name}")  # fmt: skip
    with call.store.transaction(call.ctx) as tx:
        matches = [value] if spec.name == "Id" else tx.find_by(obj, spec, value)
        if len(matches) > 1:
            urls = [f"/services/data/v{call.version}/sobjects/{obj.name}/{m}" for m in matches]
            return json_response(urls, 300)
        if call.request.method == "GET":
            if not matches:
                raise ApiError("NOT_FOUND", "The requested resource does not exist")
            return record_json(obj, _live(call, obj, matches[0]), call.version)
        if call.request.method != "PATCH":
            raise ApiError("METHOD_NOT_ALLOWED", "Only GET and PATCH by external Id")
        values = dict(_body_object(call))
        if spec.name in values or field_name in values:
            raise ApiError(
                "INVALID_FIELD",
                f"The external ID field {spec.name} cannot be set in the body of an upsert",
            )
        record_id, created = tx.upsert(obj, spec, value, values)
    body = {"id": record_id, "success": True, "errors": [], "created": created}
    return json_response(body, 201 if created else 200)


def _window(call: Call) -> tuple[str, str]:
    try:
        start = format_datetime(parse_datetime(call.param("start") or ""))
        end = format_datetime(parse_datetime(call.param("end") or ""))
    except ValueError:
        raise ApiError(
            "INVALID_REPLICATION_DATE", "start and end must be ISO-8601 datetimes"
        ) from None
    return start, end


def _modstamp_window(call: Call, deleted: bool) -> tuple[str, str, list[tuple[Any, ...]]]:
    """Records of the object deleted (or changed and live) within ``start``..``end``."""
    obj = call.obj(call.request.path_params["sobject"])
    start, end = _window(call)
    rows = call.store.read(
        f"SELECT Id, SystemModstamp FROM {q(obj.name)} WHERE IsDeleted = ? "
        "AND SystemModstamp >= ? AND SystemModstamp < ? ORDER BY SystemModstamp",
        (int(deleted), start, end),
    )
    return start, end, rows


def deleted(call: Call) -> dict[str, Any]:
    start, end, rows = _modstamp_window(call, deleted=True)
    return {
        "deletedRecords": [{"id": r[0], "deletedDate": r[1]} for r in rows],
        "earliestDateAvailable": start,
        "latestDateCovered": end,
    }


def updated(call: Call) -> dict[str, Any]:
    _start, end, rows = _modstamp_window(call, deleted=False)
    return {"ids": [r[0] for r in rows], "latestDateCovered": end}


# ---------------------------------------------------------------------------------------------
# Query


def _page_size(call: Call) -> int:
    m = re.search(r"batchSize=(\d+)", call.request.headers.get("sforce-query-options", ""))
    return max(200, min(QUERY_PAGE, int(m.group(1)))) if m else QUERY_PAGE


def query(call: Call) -> dict[str, Any]:
    from sf_sync.devorg.soql import SoqlError, compile_query

    text = call.param("q")
    if not text:
        raise ApiError("MALFORMED_QUERY", "A query string has to be specified")
    include_deleted = call.request.url.path.rstrip("/").endswith("queryAll")
    try:
        compiled = compile_query(text, call.org.settings.schema, include_deleted=include_deleted)
    except SoqlError as err:
        raise ApiError(err.error_code, err.message) from None
    total = call.store.read(compiled.count_sql, compiled.count_params)[0][0]
    if compiled.is_count:
        return {"totalSize": total, "done": True, "records": []}
    return _query_page(call, compiled, total, 0, None)


def query_more(call: Call) -> dict[str, Any]:
    locator, _, start = call.request.path_params["locator"].rpartition("-")
    with call.org._cursor_lock:
        cursor = call.org.cursors.get(locator)
    if cursor is None or cursor.expires < time.time() or not start.isdigit():
        raise ApiError("INVALID_QUERY_LOCATOR", "invalid query locator")
    return _query_page(call, cursor.compiled, cursor.total, int(start), locator)


def _query_page(
    call: Call, compiled: Any, total: int, start: int, locator: str | None
) -> dict[str, Any]:
    size = _page_size(call)
    rows = call.store.read(
        f"SELECT * FROM ({compiled.sql}) LIMIT ? OFFSET ?", (*compiled.params, size, start)
    )
    records = [compiled.to_record(row, call.version) for row in rows]
    done = start + len(rows) >= total or len(rows) < size
    out: dict[str, Any] = {"totalSize": total, "done": done, "records": records}
    if not done:
        org = call.org
        with org._cursor_lock:
            if locator is None:
                locator = "01g" + secrets.token_hex(8)[:15]
            org.cursors[locator] = Cursor(compiled, total, time.time() + 15 * 60)
            for key in [k for k, c in org.cursors.items() if c.expires < time.time()]:
                del org.cursors[key]
        path = "queryAll" if "queryAll" in call.request.url.path else "query"
        out["nextRecordsUrl"] = f"/services/data/v{call.version}/{path}/{locator}-{start + size}"
    return out


# ---------------------------------------------------------------------------------------------
# Collections, describe, limits


def collections(call: Call) -> Response | list[dict[str, Any]]:
    """``/composite/sobjects``: up to 200 records a call, each with its own result."""
    method = call.request.method
    if method == "DELETE":
        ids = [i for i in (call.param("ids") or "").split(",") if i]
        all_or_none = (call.param("allOrNone") or "false").lower() == "true"
        items: list[Any] = ids
    else:
        body = _body_object(call)
        items = body.get("records") or []
        all_or_none = bool(body.get("allOrNone", False))
    if len(items) > COLLECTION_LIMIT:
        raise ApiError(
            "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records "
            "into this call",
        )  # fmt: skip
    results: list[dict[str, Any]] = []
    failed = False
    with call.store.transaction(call.ctx) as tx:
        for item in items:
            try:
                with tx.savepoint():
                    results.append(_collection_item(call, tx, method, item))
            except ApiError as err:
                failed = True
                item_id = item if isinstance(item, str) else (item or {}).get("id")
                results.append({"id": item_id, "success": False, "errors": [err.record_error()]})
        if failed and all_or_none:
            tx.changes.clear()
            call.store.conn.execute("ROLLBACK")
            call.store.conn.execute("BEGIN IMMEDIATE")
            results = [
                r if not r["success"] else {"id": None, "success": False, "errors": [
                    {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                     "message": "Record rolled back because not all records were valid and "
                                "the request was using AllOrNone header", "fields": []}]}
                for r in results
            ]  # fmt: skip
    return json_response(results)


def _collection_item(call: Call, tx: Any, method: str, item: Any) -> dict[str, Any]:
    if method == "DELETE":
        obj = call.store.object_of_id(item) if isinstance(item, str) else None
        if obj is None:
            raise ApiError("MALFORMED_ID", f"malformed id {item}")
        return {"id": tx.delete(obj, item), "success": True, "errors": []}
    if not isinstance(item, dict) or not isinstance(item.get("attributes"), dict):
        raise ApiError("INVALID_FIELD", "Each record needs attributes with its type")
    obj = call.obj(str(item["attributes"].get("type")))
    values = {k: v for k, v in item.items() if k not in ("attributes", "id", "Id")}
    upsert_field = call.request.path_params.get("field")
    if upsert_field is not None:  # PATCH /composite/sobjects/X/{externalIdField}
        spec = obj.field(upsert_field)
        key = item.get(spec.name) if spec is not None else None
        if spec is None or not (spec.external_id or spec.name == "Id") or key is None:
            raise ApiError("INVALID_FIELD", f"missing or invalid external id {upsert_field}")
        values.pop(spec.name, None)
        record_id, created = tx.upsert(obj, spec, key, values)
        return {"id": record_id, "success": True, "errors": [], "created": created}
    if method == "POST":
        return {"id": tx.create(obj, values), "success": True, "errors": []}
    record_id = item.get("id") or item.get("Id")
    if not record_id:
        raise ApiError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
    return {"id": tx.update(obj, record_id, values), "success": True, "errors": []}


def collection_retrieve(call: Call) -> list[dict[str, Any] | None]:
    obj = call.obj(call.request.path_params["sobject"])
    ids = [i for i in (call.param("ids") or "").split(",") if i]
    fields = [f for f in (call.param("fields") or "").split(",") if f]
    if not fields:
        raise ApiError("MISSING_ARGUMENT", "fields is required")
    out: list[dict[str, Any] | None] = []
    for record_id in ids:
        try:
            out.append(record_json(obj, _live(call, obj, record_id), call.version, fields))
        except ApiError:
            out.append(None)
    return out


def describe(call: Call) -> dict[str, Any]:
    return describe_mod.describe(call.obj(call.request.path_params["sobject"]), call.version)


def global_describe(call: Call) -> dict[str, Any]:
    return describe_mod.global_describe(call.org.settings.schema, call.version)


def limits(call: Call) -> dict[str, Any]:
    used, limit = call.org.api_usage()
    return {
        "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
        "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
        "DataStorageMB": {"Max": 5, "Remaining": 5},
    }


def resources(call: Call) -> dict[str, str]:
    base = f"/services/data/v{call.version}"
    names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
    return {n: f"{base}/{n}" for n in names}


async def versions(request: Request) -> Response:
    return json_response(
        [{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in VERSIONS]
    )


# ---------------------------------------------------------------------------------------------
# OAuth and SOAP


async def oauth_token(request: Request) -> Response:
    org: DevOrg = request.app.state.org
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    try:
        return json_response(await run_in_threadpool(org.sessions.oauth_token, form))
    except OAuthError as err:
        return json_response({"error": err.error, "error_description": err.description}, err.status)


def _soap(body: str, status: int = 200) -> Response:
    envelope = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="'
        f'{SOAP_NS}" xmlns="urn:partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
    return Response(envelope, status, media_type="text/xml; charset=utf-8")


def _soap_fault(code: str, message: str) -> Response:
    from xml.sax.saxutils import escape

    return _soap(
        f"<soapenv:Fault><faultcode>sf:{escape(code)}</faultcode>"
        f"<faultstring>{escape(message)}</faultstring></soapenv:Fault>",
        500,
    )


def _text(root: ET.Element, local: str) -> str | None:
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == local:
            return el.text
    return None


async def soap(request: Request) -> Response:
    """The partner SOAP API's ``login`` and ``undelete`` (REST has no undelete)."""
    from xml.sax.saxutils import escape

    org: DevOrg = request.app.state.org
    version = request.path_params["version"]
    try:
        root = ET.fromstring(await request.body())
    except ET.ParseError as exc:
        return _soap_fault("INVALID_XML", f"malformed request: {exc}")
    ops = [el.tag.rsplit("}", 1)[-1] for el in root.iter() if el.tag.endswith(("login",
           "undelete"))]  # fmt: skip
    try:
        if "login" in ops:
            token = await run_in_threadpool(
                org.sessions.soap_login, _text(root, "username"), _text(root, "password")
            )
            url = f"{org.settings.instance_url}/services/Soap/u/{version}/{org.store.org_id[:15]}"
            return _soap(
                "<loginResponse><result>"
                f"<metadataServerUrl>{url}</metadataServerUrl><passwordExpired>false"
                f"</passwordExpired><sandbox>true</sandbox><serverUrl>{url}</serverUrl>"
                f"<sessionId>{escape(token)}</sessionId><userId>{org.store.user_id}</userId>"
                "</result></loginResponse>"
            )
        if "undelete" in ops:
            user = await run_in_threadpool(
                org.sessions.user_for, "Bearer " + (_text(root, "sessionId") or "")
            )
            ids = [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "ids"]
            results = await run_in_threadpool(_undelete, org, user, version, ids)
            return _soap(f"<undeleteResponse>{''.join(results)}</undeleteResponse>")
    except ApiError as err:
        return _soap_fault(err.error_code, err.message)
    return _soap_fault("INVALID_OPERATION", "only login and undelete are offered here")


def _undelete(org: DevOrg, user: str, version: str, ids: list[str]) -> list[str]:
    from xml.sax.saxutils import escape

    out = []
    ctx = CallContext(user, None, "soap", version)
    with org.store.transaction(ctx) as tx:
        for record_id in ids:
            obj = org.store.object_of_id(record_id)
            try:
                if obj is None:
                    raise ApiError("INVALID_ID_FIELD", f"invalid id: {record_id}")
                with tx.savepoint():
                    done = tx.undelete(obj, record_id)
                out.append(f"<result><id>{done}</id><success>true</success></result>")
            except ApiError as err:
                out.append(
                    f"<result><errors><message>{escape(err.message)}</message><statusCode>"
                    f"{escape(err.error_code)}</statusCode></errors><id>{escape(record_id)}</id>"
                    "<success>false</success></result>"
                )
    return out


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


def build_app(org: DevOrg, extra_routes: list[Route] | None = None) -> Starlette:
    v = "/services/data/v{version:str}"
    routes = [
        Route("/services/oauth2/token", oauth_token, methods=["POST"]),
        Route("/services/Soap/u/{version:str}", soap, methods=["POST"]),
        Route("/services/data", versions, methods=["GET"]),
        Route("/services/data/", versions, methods=["GET"]),
        Route(f"{v}/", rest(resources), methods=["GET"]),
        Route(f"{v}/sobjects", rest(global_describe), methods=["GET"]),
        Route(f"{v}/sobjects/", rest(global_describe), methods=["GET"]),
        Route(f"{v}/sobjects/{{sobject}}", rest(sobject_info), methods=["GET"]),
        Route(f"{v}/sobjects/{{sobject}}/", rest(create), methods=["POST"]),
        Route(f"{v}/sobjects/{{sobject}}/describe", rest(describe), methods=["GET"]),
        Route(f"{v}/sobjects/{{sobject}}/describe/", rest(describe), methods=["GET"]),
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
        Route(f"{v}/query", rest(query), methods=["GET"]),
        Route(f"{v}/query/", rest(query), methods=["GET"]),
        Route(f"{v}/queryAll", rest(query), methods=["GET"]),
        Route(f"{v}/queryAll/", rest(query), methods=["GET"]),
        Route(f"{v}/query/{{locator}}", rest(query_more), methods=["GET"]),
        Route(f"{v}/queryAll/{{locator}}", rest(query_more), methods=["GET"]),
        Route(f"{v}/limits", rest(limits), methods=["GET"]),
        Route(f"{v}/limits/", rest(limits), methods=["GET"]),
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
