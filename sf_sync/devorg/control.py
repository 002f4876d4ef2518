"""Talks to a running dev org's control endpoints (faults, session expiry, outbox status)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

import requests
from simple_salesforce import Salesforce

from sf_sync.devorg.settings import DevorgSettings

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


class DevorgControl:
    """The stand-in's own knobs, over the same verified HTTPS as its API."""

    def __init__(self, settings: DevorgSettings) -> None:
        self.settings = settings
        self.base = settings.instance_url
        self.session = requests.Session()
        self.session.trust_env = False  # this machine's CA bundle variables would win otherwise
        self.session.verify = str(settings.ca_file)

    def token(self) -> str:
        """A session from the OAuth client-credentials flow with the org's own credentials."""
        c = self.settings.credentials
        resp = self.session.post(
            f"{self.base}/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": c.client_id,
                  "client_secret": c.client_secret},
            timeout=30,
        )  # fmt: skip
        resp.raise_for_status()
        return resp.json()["access_token"]

    def salesforce(self, client: str | None = None) -> Salesforce:
        """simple-salesforce on this org, as any integration would use it (direct session).

        ``client`` goes into ``Sforce-Call-Options``, hence into every change event's origin.
        """
        session = requests.Session()
        session.trust_env = False
        session.verify = self.session.verify
        if client:
            session.headers["Sforce-Call-Options"] = f"client={client}"
        return Salesforce(
            instance_url=self.base, session_id=self.token(), session=session,
            version=self.settings.api_version,
        )  # fmt: skip

    def undelete(self, sf: Salesforce, record_ids: list[str]) -> list[bool]:
        """The SOAP API's ``undelete`` (REST has none); one success flag per Id."""
        ids = "".join(f"<urn:ids>{escape(i)}</urn:ids>" for i in record_ids)
        envelope = (
            f'<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
            'xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Header><urn:SessionHeader>'
            f"<urn:sessionId>{escape(sf.session_id)}</urn:sessionId></urn:SessionHeader>"
            f"</soapenv:Header><soapenv:Body><urn:undelete>{ids}</urn:undelete></soapenv:Body>"
            "</soapenv:Envelope>"
        )
        resp = sf.session.post(
            f"{self.base}/services/Soap/u/{self.settings.api_version}", data=envelope,
            headers={"Content-Type": "text/xml", "SOAPAction": "undelete"}, timeout=30,
        )  # fmt: skip
        resp.raise_for_status()
        results = ET.fromstring(resp.content).iter()
        return [el.text == "true" for el in results if el.tag.endswith("success")]

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.session.request(method, self.base + path, timeout=30, **kw)
        resp.raise_for_status()
        return resp.json()

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/_devorg/faults")

    def set_faults(self, updates: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/_devorg/faults", json=updates)

    def reset_faults(self) -> dict[str, Any]:
        defaults = {"latency_ms": 0, "error_rate": 0.0, "api_limit_reached": False,
                    "drop_events": 0.0, "gap_events": 0.0, "overflow_after": None,
                    "duplicate_events": 0.0, "reorder_events": False}  # fmt: skip
        return self.set_faults(defaults)

    def expire_sessions(self) -> dict[str, Any]:
        return self._call("POST", "/_devorg/expire-sessions")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/_devorg/status")

    def wait_published(self, timeout_s: float = 30) -> None:
        """Waits until every committed change event has left the outbox for Kafka."""
        deadline = time.monotonic() + timeout_s
        while self.status()["outbox"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the dev org's outbox did not drain")
            time.sleep(0.05)
