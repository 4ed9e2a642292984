"""`python -m processing_service.replay`: list dead letters and move them back to work.

For each stage's dead-letter queue (`<queue>.XQ`) it prints the count and the reasons
(from Postgres, else from the message's last traceback line), then moves messages back
to their queue with Dramatiq's retry count reset and the traceback and delay dropped, so
each gets a full set of attempts again. A message is acknowledged on the dead-letter
queue only after RabbitMQ confirmed its republication: a crash midway leaves every
message in one queue or the other (at worst in both, which idempotent actors absorb).
Before a message moves, its job shows the stage queued again.

RabbitMQ keeps dead letters 7 days; Postgres keeps each one's payload with its reason.
A dead letter no longer in its queue (not replayed yet, dead for over a minute) is
rebuilt from Postgres and sent like the others.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from dataclasses import dataclass
from typing import Any

import dramatiq
import pika
from pika.adapters.blocking_connection import BlockingChannel

from contracts import Stage
from contracts.routing import STAGE_QUEUES, SUBMIT_ACTOR, SUBMIT_QUEUE, dead_letter_queue
from processing_service.runtime.config import get_settings
from processing_service.runtime.database import Database
from processing_service.runtime.dead_letters import DeadLetterStore

#: Options Dramatiq's retry machinery wrote that must not survive a replay.
SPENT_OPTIONS = ("retries", "traceback", "eta", "requeue_timestamp")
#: Upper bound on messages read from one dead-letter queue in one run.
MAX_READ = 100_000
#: A dead letter recorded in Postgres is rebuilt only once it has been dead this long: a
#: message recorded a moment ago may still be on its way to the dead-letter queue.
REBUILD_AFTER_S = 60.0


@dataclass
class DeadMessage:
    tag: int
    body: bytes
    envelope: dict[str, Any] | None

    @property
    def message_id(self) -> str:
        return str((self.envelope or {}).get("message_id", "?"))

    @property
    def job_id(self) -> str | None:
        args = (self.envelope or {}).get("args") or [None]
        job = args[0].get("job_id") if isinstance(args[0], dict) else None
        return job if isinstance(job, str) else None

    def fallback_reason(self) -> str:
        if self.envelope is None:
            return "not a Dramatiq message"
        trace = str((self.envelope.get("options") or {}).get("traceback") or "").strip()
        return trace.splitlines()[-1] if trace else "unknown (no reason recorded)"

    def replayable_body(self, generation: int | None = None) -> bytes:
        """The message to send again: its spent retry options dropped and, when it carries
        a job generation, the one the replay reopened (workers drop older ones)."""
        if self.envelope is None:
            return self.body
        options = {
            k: v for k, v in (self.envelope.get("options") or {}).items() if k not in SPENT_OPTIONS
        }
        envelope = {**self.envelope, "options": options}
        args = list(envelope.get("args") or [])
        if (
            generation is not None
            and args
            and isinstance(args[0], dict)
            and "generation" in args[0]
        ):
            envelope["args"] = [{**args[0], "generation": generation}, *args[1:]]
        return json.dumps(envelope, separators=(",", ":")).encode()


def _decode(body: bytes) -> dict[str, Any] | None:
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    return envelope if isinstance(envelope, dict) else None


def read_all(channel: BlockingChannel, queue: str, limit: int) -> list[DeadMessage]:
    messages: list[DeadMessage] = []
    while len(messages) < limit:
        method, _props, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        messages.append(DeadMessage(method.delivery_tag, body, _decode(body)))
    return messages


def depth(connection: pika.BlockingConnection, queue: str) -> int:
    channel = connection.channel()
    try:
        count: int = channel.queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    channel.close()
    return count


def replay_queue(
    connection: pika.BlockingConnection,
    store: DeadLetterStore,
    stage: Stage,
    *,
    limit: int | None,
    dry_run: bool,
) -> int:
    """Report one dead-letter queue and move up to `limit` of its messages; the count moved.

    Dead letters that Postgres recorded but RabbitMQ no longer holds (its queue keeps them
    7 days) are rebuilt from their recorded payload and sent too, within the same limit.
    """
    queue = STAGE_QUEUES[stage]
    xq = dead_letter_queue(queue)
    count = depth(connection, xq)
    print(f"{xq}: {count} message(s)")
    channel = connection.channel()
    channel.confirm_delivery()
    messages = read_all(channel, xq, min(count, MAX_READ)) if count else []
    known = store.reasons([m.message_id for m in messages])
    reasons = collections.Counter(known.get(m.message_id) or m.fallback_reason() for m in messages)
    for reason, n in reasons.most_common():
        print(f"  {n} x {reason}")
    # Only with the whole queue read can the ones missing from it be told apart.
    expired = (
        store.expired(stage, {m.message_id for m in messages}, REBUILD_AFTER_S)
        if count <= MAX_READ
        else []
    )
    if expired:
        print(f"  {len(expired)} more recorded in Postgres that RabbitMQ no longer holds")
    to_move = messages if limit is None else messages[:limit]
    to_rebuild = expired if limit is None else expired[: max(limit - len(to_move), 0)]
    if dry_run:
        channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
        channel.close()
        print(f"  dry run: would move {len(to_move)} and rebuild {len(to_rebuild)} to {queue}")
        return 0
    moved = 0
    for message in to_move:
        generation = None
        if message.job_id:
            generation = store.reopen(message.job_id, stage, message.message_id)
        _publish(channel, queue, message.replayable_body(generation))
        channel.basic_ack(message.tag)
        moved += 1
        print(f"  moved {message.message_id} (job {message.job_id or '-'}) to {queue}")
    channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)  # the ones left
    for message_id, job_id, recorded in to_rebuild:
        generation = store.reopen(job_id, stage, message_id)
        payload = recorded
        if generation is not None and "generation" in recorded:
            payload = {**recorded, "generation": generation}
        rebuilt: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name=stage.value, args=(payload,), kwargs={}, options={}
        )
        _publish(channel, queue, rebuilt.encode())
        moved += 1
        print(f"  rebuilt {message_id} (job {job_id}) from Postgres to {queue}")
    if stage is Stage.TRANSCRIBE:
        job_ids = {m.job_id for m in to_move if m.job_id} | {row[1] for row in to_rebuild}
        resend_chunks(channel, store, job_ids)
    channel.close()
    return moved


def _publish(channel: BlockingChannel, queue: str, body: bytes) -> None:
    channel.basic_publish(
        "",
        queue,
        body,
        pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
        mandatory=True,
    )  # raises unless RabbitMQ confirms


def resend_chunks(channel: BlockingChannel, store: DeadLetterStore, job_ids: set[str]) -> None:
    """Have split send again every chunk of these jobs that has no transcript.

    When a chunk died and failed its job, the job's other chunks that were still queued
    were dropped as belonging to a finished job; the replayed chunk alone would leave the
    fan-in waiting for them forever. Split re-sends exactly the missing chunks; the copy
    of a chunk that comes second finds its transcript saved and skips it.
    """
    for job_id in sorted(job_ids):
        payload = store.submission(job_id)
        if payload is None:
            continue
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=SUBMIT_QUEUE, actor_name=SUBMIT_ACTOR, args=(payload,), kwargs={}, options={}
        )
        _publish(channel, SUBMIT_QUEUE, message.encode())
        print(f"  asked split to re-send the untranscribed chunks of job {job_id}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m processing_service.replay", description=__doc__
    )
    parser.add_argument("--queue", default="all", choices=["all", *STAGE_QUEUES.values()])
    parser.add_argument("--limit", type=int, help="move at most this many per queue")
    parser.add_argument("--dry-run", action="store_true", help="list, move nothing")
    args = parser.parse_args(argv)
    settings = get_settings()
    stages = [s for s, q in STAGE_QUEUES.items() if args.queue in ("all", q)]
    store = DeadLetterStore(Database(settings.database_url))
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        moved = sum(
            replay_queue(connection, store, stage, limit=args.limit, dry_run=args.dry_run)
            for stage in stages
        )
    finally:
        connection.close()
    print(f"moved {moved} message(s) in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
