"""Events reach RabbitMQ even when the broker dropped the publisher's idle connection."""

from __future__ import annotations

import gc
import subprocess
import time
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import pika
import pytest

from contracts.events import JobFinished
from contracts.routing import EVENTS_EXCHANGE
from processing_service.runtime.errors import TransientError
from processing_service.runtime.events import EventPublisher
from tests.support.servers import IsolatedEnv

QUEUE = "test-event-publisher"


def _event(n: int) -> JobFinished:
    return JobFinished(
        event_id=f"event-{n}",
        job_id="00000000-0000-0000-0000-000000000001",
        status="completed",
        occurred_at=datetime.now(UTC),
    )


def _received(amqp_url: str, count: int) -> list[str]:
    """Message ids of up to ``count`` events from the test queue (waits up to 10 s)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        ids: list[str] = []
        deadline = time.monotonic() + 10
        while len(ids) < count and time.monotonic() < deadline:
            method, properties, _ = channel.basic_get(QUEUE, auto_ack=True)
            if method is None:
                time.sleep(0.05)
            else:
                ids.append(properties.message_id)
        return ids
    finally:
        connection.close()


# pika leaves the sockets of a connection the broker closed for the garbage collector;
# they are collected inside this test, so the warnings cannot surface in a later one.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_connection_closed_by_the_broker_is_replaced_on_the_next_publish(
    isolated_env: IsolatedEnv,
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(isolated_env.amqp_url))
    channel = connection.channel()
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(QUEUE)  # outlives the connections closed below
    channel.queue_bind(QUEUE, EVENTS_EXCHANGE, routing_key="job.#")
    connection.close()

    publisher = EventPublisher(isolated_env.amqp_url)
    publisher.publish("job.completed", _event(1))  # opens this thread's connection
    # What a missed heartbeat or a broker restart does to an idle connection.
    vhost = unquote(urlsplit(isolated_env.amqp_url).path[1:])
    subprocess.run(
        ["rabbitmqctl", "-q", "close_all_connections", "--vhost", vhost, "test: idle"],
        check=True,
    )
    time.sleep(0.5)
    publisher.publish("job.completed", _event(2))  # raised TransientError before
    publisher.publish("job.completed", _event(3))
    assert _received(isolated_env.amqp_url, 3) == ["event-1", "event-2", "event-3"]
    publisher.close()
    gc.collect()


def test_an_unreachable_broker_is_a_transient_error() -> None:
    publisher = EventPublisher("amqp://guest:guest@127.0.0.1:1/%2F")  # nothing listens there
    with pytest.raises(TransientError, match=r"job\.completed event"):
        publisher.publish("job.completed", _event(1))
