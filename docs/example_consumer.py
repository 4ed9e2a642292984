"""A downstream consumer of job events: bind a queue, decode with the contracts, ack.

Run it beside the stack:  .venv/bin/python docs/example_consumer.py
It prints one line per event and de-duplicates on the event id (a redelivered worker
message can publish an event twice; the id stays the same).
"""

from __future__ import annotations

import os

import pika

from contracts.events import EVENT_DECODER, JobFinished
from contracts.routing import EVENTS_EXCHANGE

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
QUEUE = "example-consumer"


def main() -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(QUEUE, durable=True)
    channel.queue_bind(QUEUE, EVENTS_EXCHANGE, routing_key="job.#")  # or job.completed
    seen: set[str] = set()  # use a table with a unique key in a real consumer

    def on_message(ch, method, properties, body):  # type: ignore[no-untyped-def]
        event = EVENT_DECODER.decode(body)
        if event.event_id not in seen:
            seen.add(event.event_id)
            if isinstance(event, JobFinished):
                print(f"{method.routing_key}: job {event.job_id} {event.status} {event.metadata}")
            else:
                print(f"{method.routing_key}: job {event.job_id} stage {event.stage} {event.state}")
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(QUEUE, on_message)
    channel.start_consuming()


if __name__ == "__main__":
    main()
