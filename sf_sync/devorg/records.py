"""REST handlers for records and metadata: sObject CRUD, upsert by external Id, platform event
publishing, the deleted/updated windows, sObject Collections, describe, limits."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from sf_sync.devorg import describe as describe_mod
from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.events import platform_event_row
from sf_sync.devorg.gate import Call, json_response
from sf_sync.devorg.metadata import ObjectSpec
from sf_sync.devorg.store import normalise_id, q, utc_from_header
from sf_sync.devorg.values import address_json, format_datetime, parse_datetime, to_json

VERSIONS = ("55.0", "56.0", "57.0", "58.0", "59.0", "60.0", "61.0", "62.0")
COLLECTION_LIMIT = 200


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
