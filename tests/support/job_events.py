"""Following jobs from outside: their events on RabbitMQ, their event stream over HTTP,
and the rows they leave in Postgres."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pika

from contracts.events import EVENT_DECODER
from contracts.routing import EVENTS_EXCHANGE
from tests.support.backends import query

#: Every table that holds rows of a job.
JOB_TABLES = (
    "jobs",
    "job_stages",
    "job_results",
    "job_chunks",
    "job_speaker_blocks",
    "job_speaker_turns",
    "outbox",
    "webhook_deliveries",
    "dead_letters",
    "idempotency_keys",
)


def bind_events_queue(amqp_url: str, name: str) -> str:
    """A durable queue bound to every job and stage event, as a consumer would bind it."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = conn.channel()
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    queue: str = channel.queue_declare(name, durable=True).method.queue
    channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="job.#")
    conn.close()
    return queue


def consume(
    amqp_url: str, queue: str, job_id: str, want: int, timeout_s: float = 30
) -> list[tuple[str, Any, str]]:
    """(routing key, event, AMQP message id) of the job's events, until `want` arrived."""
    found: list[tuple[str, Any, str]] = []
    deadline = time.monotonic() + timeout_s
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()
        while time.monotonic() < deadline and len(found) < want:
            method, props, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                time.sleep(0.1)
                continue
            event = EVENT_DECODER.decode(body)
            if event.job_id == job_id:
                channel.basic_ack(method.delivery_tag)
                found.append((method.routing_key, event, props.message_id))
            else:
                channel.basic_nack(method.delivery_tag, requeue=True)
    finally:
        conn.close()
    return found


def read_events(client: httpx.Client, job_id: str, timeout_s: float = 20) -> list[tuple[str, Any]]:
    """(event name, data) of the job's server-sent events until the server closes them."""
    events: list[tuple[str, Any]] = []
    name = None
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout_s) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((str(name), json.loads(line.split(":", 1)[1])))
    return events


def rows_of(database_url: str, job_id: str) -> dict[str, int]:
    """How many rows of the job each table holds."""
    jid = uuid.UUID(job_id)
    counts = {}
    for table in JOB_TABLES:
        column = "id" if table == "jobs" else "job_id"
        sql = f"SELECT count(*) FROM {table} WHERE {column} = $1"
        counts[table] = int(query(database_url, sql, jid)[0][0])
    return counts
