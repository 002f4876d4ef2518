"""The dev org process: TLS material, the outbox publisher and the HTTPS server.

Run by ``sf-sync devorg start`` as ``python -m sf_sync.devorg.server``; see ``service.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import trustme
import uvicorn

from sf_sync.config import load_settings
from sf_sync.devorg.app import DevOrg, build_app
from sf_sync.devorg.publisher import OutboxPublisher
from sf_sync.devorg.settings import DevorgSettings, devorg_settings
from sf_sync.kafka.admin import ensure_topics


def ensure_tls(settings: DevorgSettings) -> tuple[Path, Path]:
    """A local CA (``ca.pem``, the file clients trust) and a server certificate for the host.

    Made once and kept, so clients that trust the CA keep working across restarts.
    """
    state = settings.state_dir
    cert, key = state / "server.pem", state / "server-key.pem"
    if not (settings.ca_file.exists() and cert.exists() and key.exists()):
        state.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="sf-sync dev org")
        server = ca.issue_cert(settings.host, "localhost", "127.0.0.1")
        server.private_key_pem.write_to_path(str(key))
        os.chmod(key, 0o600)
        server.cert_chain_pems[0].write_to_path(str(cert))
        for extra in server.cert_chain_pems[1:]:
            extra.write_to_path(str(cert), append=True)
        ca.cert_pem.write_to_path(str(settings.ca_file))
    return cert, key


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sf-sync dev org (a local Salesforce stand-in)")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = devorg_settings(load_settings(), port=args.port)
    cert, key = ensure_tls(settings)
    topics = [s.topic for s in settings.change_streams.values()] + [
        s.topic for s in settings.platform_event_streams.values()
    ]
    if topics:
        try:
            ensure_topics(settings.bootstrap, topics, partitions=3)
        except Exception as exc:  # the outbox waits for Kafka; the API works meanwhile
            logging.warning("could not create topics yet: %s", exc)
    org = DevOrg(settings)
    publisher = OutboxPublisher(org.store, settings.bootstrap, org.faults)
    app = build_app(org)
    app.state.published = lambda: publisher.published
    publisher.start()
    try:
        uvicorn.run(
            app, host=settings.host, port=settings.port, ssl_certfile=str(cert),
            ssl_keyfile=str(key), log_level="warning", access_log=False,
            timeout_graceful_shutdown=3,
            timeout_keep_alive=120,  # clients poll slower than uvicorn's 5 s default
        )  # fmt: skip
    finally:
        publisher.stop()


if __name__ == "__main__":
    main()
