"""SOQL over REST: ``query`` and ``queryAll``, paged by ``nextRecordsUrl`` locators."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.gate import Call
from sf_sync.devorg.org import Cursor

QUERY_PAGE = 2000


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
