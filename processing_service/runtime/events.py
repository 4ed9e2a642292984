"""Publishing job and stage events to the `audio.events` topic exchange, with confirms.

Each worker thread keeps its own pika connection (pika is not thread-safe). Events are
persistent; the exchange is durable and declared on first use. A failure to publish is
transient: the message that wanted to publish is retried.
"""

from __future__ import annotations

import contextlib
import threading

import msgspec
import pika
from pika.adapters.blocking_connection import BlockingChannel

from contracts.events import Event
from contracts.routing import EVENTS_EXCHANGE
from processing_service.runtime.errors import TransientError

_ENCODER = msgspec.json.Encoder()


class EventPublisher:
    def __init__(self, amqp_url: str) -> None:
        self._parameters = pika.URLParameters(amqp_url)
        self._parameters.connection_attempts = 2
        self._parameters.socket_timeout = 10
        self._local = threading.local()
        #: Every thread's open connection, so that `close` can reach them all.
        self._open: set[pika.BlockingConnection] = set()
        self._lock = threading.Lock()

    def _channel(self) -> BlockingChannel:
        channel: BlockingChannel | None = getattr(self._local, "channel", None)
        if channel is None or channel.is_closed:
            self._drop()
            connection = pika.BlockingConnection(self._parameters)
            channel = connection.channel()
            channel.confirm_delivery()
            channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
            self._local.connection, self._local.channel = connection, channel
            with self._lock:
                self._open.add(connection)
        return channel

    def _drop(self) -> None:
        """Forget this thread's connection, closing it if it is still open."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = self._local.channel = None
        with self._lock:
            self._open.discard(connection)
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()

    def close(self) -> None:
        """Close every thread's connection: the worker threads have stopped."""
        self._drop()
        with self._lock:
            connections, self._open = list(self._open), set()
        for connection in connections:
            if connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    connection.close()

    def publish(self, routing_key: str, event: Event) -> None:
        """Publish and wait for RabbitMQ's confirm; raise TransientError on failure.

        A thread's connection may sit idle between jobs long enough for the broker to
        drop it (a BlockingConnection answers heartbeats only while it does I/O), so a
        failure on a connection that was already open is retried once on a new one. A
        publish that reached the broker unconfirmed may then arrive twice: consumers
        deduplicate on the event's deterministic ``event_id`` (its message id).
        """
        reused = getattr(self._local, "channel", None) is not None
        try:
            self._publish(routing_key, event)
        except pika.exceptions.AMQPError as exc:
            self._drop()
            if not reused:
                raise TransientError(f"could not publish the {routing_key} event: {exc!r}") from exc
            try:
                self._publish(routing_key, event)
            except pika.exceptions.AMQPError as again:
                self._drop()
                raise TransientError(
                    f"could not publish the {routing_key} event: {again!r}"
                ) from again

    def _publish(self, routing_key: str, event: Event) -> None:
        self._channel().basic_publish(
            EVENTS_EXCHANGE,
            routing_key,
            _ENCODER.encode(event),
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=event.event_id,
                type=type(event).__struct_config__.tag,
            ),
        )
