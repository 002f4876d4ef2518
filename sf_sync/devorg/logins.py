"""Logins and the SOAP calls: the OAuth token endpoint, the partner API's ``login`` and
``undelete`` (REST has no undelete)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sf_sync.devorg.auth import OAuthError
from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.gate import json_response
from sf_sync.devorg.org import DevOrg
from sf_sync.devorg.store import CallContext

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


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
