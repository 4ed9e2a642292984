"""Reading the real Postgres and RabbitMQ from tests."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import pika

from contracts import Message, message_from_builtins


def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows
        finally:
            await conn.close()

    return asyncio.run(run())


def take_messages(amqp_url: str, queue: str) -> list[tuple[dict[str, Any], Message]]:
    """Consume everything now on `queue`: (Dramatiq envelope, decoded contract message)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()
        out = []
        while True:
            try:
                method, _props, body = channel.basic_get(queue, auto_ack=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:  # nobody has declared the queue yet
                    return out
                raise
            if method is None:
                return out
            envelope = json.loads(body)
            out.append((envelope, message_from_builtins(envelope["args"][0])))
    finally:
        conn.close()


def wait_for_messages(
    amqp_url: str, queue: str, job_ids: list[str], timeout_s: float = 20
) -> dict[str, tuple[dict[str, Any], Message]]:
    """Consume from `queue` until a message for each of `job_ids` has arrived."""
    found: dict[str, tuple[dict[str, Any], Message]] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for envelope, message in take_messages(amqp_url, queue):
            if message.job_id in job_ids:
                found[message.job_id] = (envelope, message)
        if len(found) == len(job_ids):
            return found
        time.sleep(0.1)
    missing = sorted(set(job_ids) - set(found))
    raise AssertionError(f"no message on {queue} within {timeout_s} s for jobs {missing}")


def wait_for_message(
    amqp_url: str, queue: str, job_id: str, timeout_s: float = 20
) -> tuple[dict[str, Any], Message]:
    """Consume from `queue` until the message for `job_id` arrives."""
    return wait_for_messages(amqp_url, queue, [job_id], timeout_s)[job_id]
