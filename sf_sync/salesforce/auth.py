"""Credentials and the login flows, done by us against a configurable ``login_url``.

simple-salesforce 1.12's own login helpers always post to ``https://{domain}.salesforce.com``,
so they cannot reach a My Domain login host on another scheme/port, nor the dev org on
127.0.0.1. We therefore log in ourselves and hand simple-salesforce the resulting
``(instance_url, access_token)`` in direct mode (see ``client.py``).

Flows (all return a :class:`Session`):

* ``client_credentials`` - OAuth 2.0 client credentials (``client_id`` + ``client_secret``).
* ``jwt`` - OAuth 2.0 JWT bearer: an RS256 assertion with ``iss=client_id``, ``sub=username``,
  ``aud=<login_url>`` (or ``jwt_audience``) and ``exp`` about three minutes ahead, signed with
  the connected app's private key (PEM text or a PEM file path).
* ``password`` - username + password + security token: the OAuth password grant when a
  client id/secret is given, else the SOAP partner ``login`` call.
* ``session`` - an existing ``instance_url`` + session id; nothing to log in, so nothing to
  renew when it expires.

Secrets never appear in ``repr``/``str`` of these objects nor in log lines or exception text.
TLS is always verified: :func:`http_session` trusts a custom CA file when one is given.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

import jwt
import requests

from sf_sync.salesforce.errors import LoginFailed

AuthMethod = Literal["client_credentials", "jwt", "password", "session"]
AUTH_METHODS: tuple[str, ...] = ("client_credentials", "jwt", "password", "session")
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SECRET_FIELDS = ("client_secret", "password", "security_token", "private_key", "session_id")
_REQUIRED: dict[str, tuple[str, ...]] = {
    "client_credentials": ("login_url", "client_id", "client_secret"),
    "jwt": ("login_url", "client_id", "username", "private_key"),
    "password": ("login_url", "username", "password"),
    "session": ("instance_url", "session_id"),
}


def _mask(value: str | None) -> str:
    return "None" if value is None else "'***'"


@dataclass(frozen=True, repr=False)
class Credentials:
    """How to log in. Secrets are masked in ``repr``/``str``."""

    method: AuthMethod
    login_url: str | None = None  # https://login.salesforce.com, a My Domain URL, the dev org
    client_id: str | None = None
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    private_key: str | None = None  # PEM text, or the path of a PEM file
    session_id: str | None = None
    instance_url: str | None = None
    jwt_audience: str | None = None  # default: login_url

    def __post_init__(self) -> None:
        if self.method not in _REQUIRED:
            raise ValueError(f"auth method must be one of {AUTH_METHODS}, got {self.method!r}")
        missing = [name for name in _REQUIRED[self.method] if not getattr(self, name)]
        if missing:
            raise ValueError(f"auth method {self.method!r} needs {', '.join(missing)}")
        for name in ("login_url", "instance_url", "jwt_audience"):
            url = getattr(self, name)
            if url:
                if not url.startswith("https://"):
                    raise ValueError(f"{name} must be an https:// URL, got {url!r}")
                object.__setattr__(self, name, url.rstrip("/"))

    @property
    def can_relogin(self) -> bool:
        return self.method != "session"

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            shown = _mask(value) if f.name in _SECRET_FIELDS else repr(value)
            parts.append(f"{f.name}={shown}")
        return f"Credentials({', '.join(parts)})"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class Session:
    """A logged-in session: where the org is and the bearer token for it."""

    instance_url: str
    access_token: str

    def __repr__(self) -> str:
        return f"Session(instance_url={self.instance_url!r}, access_token='***')"

    __str__ = __repr__


def http_session(ca_file: str | Path | None = None) -> requests.Session:
    """A ``requests.Session`` that verifies TLS, against ``ca_file`` when given.

    With a CA file, ``trust_env`` is off: otherwise ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
    from the environment replace ``verify`` (these machines set both). This also means proxy
    variables are ignored for such a session. Verification is never disabled.
    """
    return configure_tls(requests.Session(), ca_file)


def configure_tls(s: requests.Session, ca_file: str | Path | None) -> requests.Session:
    """Points ``s`` at ``ca_file`` (see :func:`http_session`); returns ``s``."""
    if ca_file:
        path = Path(ca_file)
        if not path.is_file():
            raise FileNotFoundError(f"CA file not found: {path}")
        s.trust_env = False
        s.verify = str(path)
    return s


def login(creds: Credentials, http: requests.Session, api_version: str,
          timeout: float = 60) -> Session:  # fmt: skip
    """Logs in with ``creds``; raises :class:`LoginFailed` when refused."""
    if creds.method == "session":
        return Session(creds.instance_url or "", creds.session_id or "")
    if creds.method == "client_credentials":
        form = {"grant_type": "client_credentials", "client_id": creds.client_id,
                "client_secret": creds.client_secret}  # fmt: skip
        return _oauth(creds, http, form, timeout)
    if creds.method == "jwt":
        form = {"grant_type": JWT_GRANT, "assertion": jwt_assertion(creds)}
        return _oauth(creds, http, form, timeout)
    password = (creds.password or "") + (creds.security_token or "")
    if creds.client_id and creds.client_secret:
        form = {"grant_type": "password", "client_id": creds.client_id,
                "client_secret": creds.client_secret, "username": creds.username,
                "password": password}  # fmt: skip
        return _oauth(creds, http, form, timeout)
    return soap_login(creds, http, api_version, timeout)


def _private_key(creds: Credentials) -> str:
    key = creds.private_key or ""
    if "-----BEGIN" in key:
        return key
    path = Path(key).expanduser()
    if not path.is_file():
        raise LoginFailed("jwt login: private_key is neither PEM text nor a readable file")
    return path.read_text()


def jwt_assertion(creds: Credentials, now: float | None = None) -> str:
    """The signed JWT bearer assertion (RS256), valid for three minutes."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": creds.client_id, "sub": creds.username,
              "aud": creds.jwt_audience or creds.login_url, "exp": issued + 180}  # fmt: skip
    try:
        return jwt.encode(claims, _private_key(creds), algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as exc:  # a malformed key: say so, not it
        raise LoginFailed(
            f"jwt login: the private key cannot sign ({type(exc).__name__})"
        ) from None


def _oauth(creds: Credentials, http: requests.Session, form: dict[str, str | None],
           timeout: float) -> Session:  # fmt: skip
    url = f"{creds.login_url}/services/oauth2/token"
    resp = http.post(url, data=form, headers={"Accept": "application/json"}, timeout=timeout)
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        detail = body.get("error_description") if isinstance(body, dict) else None
        raise LoginFailed(
            f"{creds.method} login refused by {creds.login_url} (HTTP {resp.status_code}): "
            f"{error or 'no error code'}: {detail or ''}"
        )
    return Session(str(body.get("instance_url") or creds.login_url).rstrip("/"),
                   body["access_token"])  # fmt: skip


def _local(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> str | None:
    return next((el.text for el in root.iter() if _local(el) == name), None)


def soap_login(creds: Credentials, http: requests.Session, api_version: str,
               timeout: float = 60) -> Session:  # fmt: skip
    """The partner SOAP ``login`` call; the session's instance is ``serverUrl``'s origin."""
    password = (creds.password or "") + (creds.security_token or "")
    envelope = (
        '<?xml version="1.0" encoding="utf-8" ?><env:Envelope '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:partner.soap.sforce.com"><env:Body>'
        f"<urn:login><urn:username>{escape(creds.username or '')}</urn:username>"
        f"<urn:password>{escape(password)}</urn:password></urn:login>"
        "</env:Body></env:Envelope>"
    )
    url = f"{creds.login_url}/services/Soap/u/{api_version}"
    headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"}
    resp = http.post(url, data=envelope.encode(), headers=headers, timeout=timeout)
    try:
        root = ET.fromstring(resp.content)
    except ET.ParseError:
        raise LoginFailed(
            f"password login: {url} answered HTTP {resp.status_code} without SOAP"
        ) from None
    session_id, server_url = _find(root, "sessionId"), _find(root, "serverUrl")
    if resp.status_code != 200 or not session_id or not server_url:
        code = (_find(root, "faultcode") or "no fault code").split(":")[-1]
        raise LoginFailed(
            f"password login refused by {creds.login_url} (HTTP {resp.status_code}): "
            f"{code}: {_find(root, 'faultstring') or ''}"
        )
    scheme, _, rest = server_url.partition("://")
    return Session(f"{scheme}://{rest.split('/', 1)[0]}", session_id)
