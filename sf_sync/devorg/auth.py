"""Logins and sessions: OAuth token endpoint, SOAP partner login, session expiry.

Sessions are kept in the org's SQLite file, so a restarted stand-in still honours them until
they expire, as a real org does.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

import jwt

from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.settings import DevorgSettings
from sf_sync.devorg.store import OrgStore

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class OAuthError(Exception):
    """An OAuth failure: Salesforce answers ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class Sessions:
    def __init__(self, store: OrgStore, settings: DevorgSettings) -> None:
        self.store = store
        self.settings = settings

    def issue(self) -> str:
        token = f"{self.store.org_id[:15]}!{secrets.token_urlsafe(48)}"
        with self.store.lock:
            self.store.conn.execute(
                "INSERT INTO _sessions VALUES (?, ?, ?)",
                (token, self.store.user_id, time.time() + self.settings.session_timeout_s),
            )
        return token

    def user_for(self, authorization: str | None) -> str:
        """The user of a valid ``Authorization: Bearer|OAuth <token>``; else INVALID_SESSION_ID."""
        token = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() in ("bearer", "oauth"):
                token = value.strip()
        if token:
            rows = self.store.read(
                "SELECT user_id FROM _sessions WHERE token = ? AND expires_at > ?",
                (token, time.time()),
            )
            if rows:
                return rows[0][0]
        raise ApiError("INVALID_SESSION_ID", "Session expired or invalid")

    def expire_all(self) -> int:
        with self.store.lock:
            return self.store.conn.execute("DELETE FROM _sessions").rowcount

    # ------------------------------------------------------------------ login flows

    def oauth_token(self, form: dict[str, str]) -> dict[str, Any]:
        c = self.settings.credentials
        grant = form.get("grant_type")
        if grant == "password":
            self._client(form)
            if not _same(form.get("username"), c.username) or not _same(
                form.get("password"), c.password + c.security_token
            ):
                raise OAuthError("invalid_grant", "authentication failure")
        elif grant == "client_credentials":
            self._client(form)
        elif grant == JWT_GRANT:
            self._jwt(form.get("assertion") or "")
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        token = self.issue()
        return {
            "access_token": token,
            "instance_url": self.settings.instance_url,
            "id": f"{self.settings.instance_url}/id/{self.store.org_id}/{self.store.user_id}",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
            "signature": secrets.token_urlsafe(32),
        }

    def _client(self, form: dict[str, str]) -> None:
        c = self.settings.credentials
        if not _same(form.get("client_id"), c.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not _same(form.get("client_secret"), c.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials", 401)

    def _jwt(self, assertion: str) -> None:
        """JWT bearer: RS256 signed by the connected app's key; iss, sub, aud and exp checked."""
        c = self.settings.credentials
        if c.jwt_public_key_file is None or not c.jwt_public_key_file.exists():
            raise OAuthError("invalid_grant", "no certificate is registered for JWT bearer")
        key = c.jwt_public_key_file.read_bytes()
        try:
            claims = jwt.decode(
                assertion, key, algorithms=["RS256"],
                audience=[self.settings.instance_url, "https://login.salesforce.com",
                          "https://test.salesforce.com"],
                options={"require": ["iss", "sub", "aud", "exp"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_grant", "expired authorization code") from None
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims["iss"] != c.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if claims["sub"] != c.username:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")

    def soap_login(self, username: str | None, password: str | None) -> str:
        c = self.settings.credentials
        if not _same(username, c.username) or not _same(password, c.password + c.security_token):
            raise ApiError(
                "INVALID_LOGIN",
                "INVALID_LOGIN: Invalid username, password, security token; or user locked out.",
                status=500,
            )
        return self.issue()
