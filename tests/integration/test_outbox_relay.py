"""Uploads are accepted while RabbitMQ is unreachable, and published when it is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from contracts.routing import SUBMIT_QUEUE
from tests.support.audio import wav_bytes
from tests.support.backends import query, wait_for_messages
from tests.support.servers import IngestServer, IsolatedEnv
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def broker_proxy(isolated_env: IsolatedEnv) -> Iterator[TcpProxy]:
    parts = urlsplit(isolated_env.amqp_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    yield proxy
    proxy.close()


def test_relay_publishes_what_was_accepted_while_the_broker_was_away(
    isolated_env: IsolatedEnv, broker_proxy: TcpProxy, tmp_path_factory: pytest.TempPathFactory
) -> None:
    parts = urlsplit(isolated_env.amqp_url)
    via_proxy = urlunsplit(parts._replace(netloc=f"guest:guest@127.0.0.1:{broker_proxy.port}"))
    env = isolated_env.environ(AMQP_URL=via_proxy, OUTBOX_POLL_INTERVAL_S="0.2")
    server = IngestServer(env, tmp_path_factory.mktemp("logs") / "ingest-relay.log")
    try:
        with server.client() as client:
            # Broker unreachable: uploads are still accepted, and readiness says why.
            ids = [
                client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.1))}).json()["id"]
                for _ in range(3)
            ]
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["postgres"] == "ok"
            assert ready.json()["checks"]["rabbitmq"].startswith("unreachable")
            time.sleep(1.0)
            rows = query(
                isolated_env.database_url,
                "SELECT published_at, attempts, last_error FROM outbox WHERE job_id = ANY($1)",
                [uuid.UUID(i) for i in ids],
            )
            assert [r["published_at"] for r in rows] == [None, None, None]
            # The relay tried, failed, and recorded why on the row it was stuck at.
            assert any(r["attempts"] > 0 and r["last_error"] for r in rows)

            broker_proxy.open()
            wait_for_messages(isolated_env.amqp_url, SUBMIT_QUEUE, ids, timeout_s=40)
            assert client.get("/readyz").status_code == 200
            metrics = client.get("/metrics").text
        assert "ingest_outbox_publish_errors_total" in metrics
        published_errors = next(
            line
            for line in metrics.splitlines()
            if line.startswith("ingest_outbox_publish_errors_total")
        )
        assert float(published_errors.split()[-1]) >= 1
    finally:
        server.stop()
