"""The workers' own Prometheus metrics, beside Dramatiq's Prometheus middleware.

Worker pools run several processes, so metrics live in prometheus_client's multiprocess
mode: `python -m processing_service` points PROMETHEUS_MULTIPROC_DIR at a directory per
pool before any worker starts, and Dramatiq's exposition server (one per pool, on the
pool's metrics port) serves everything written there. Labels are bounded: stage, queue
and outcome names only, never job ids or paths.
"""

from __future__ import annotations

import threading
import time

import pika
import structlog
from prometheus_client import Counter, Gauge, Histogram

from contracts import Stage
from contracts.routing import STAGE_QUEUES, dead_letter_queue

log = structlog.get_logger("processing.metrics")

STAGE_DURATION = Histogram(
    "pipeline_stage_duration_seconds",
    "Wall time of one successful stage message (a chunk, for transcribe).",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800),
)
AUDIO_SECONDS = Counter(
    "pipeline_audio_seconds_total", "Seconds of audio processed, per stage.", ["stage"]
)
REAL_TIME_FACTOR = Histogram(
    "pipeline_real_time_factor",
    "Processing time divided by audio duration, per stage run.",
    ["stage"],
    buckets=(0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5),
)
CANCELLED_STOPS = Counter(
    "pipeline_cancelled_stops_total",
    "Stage runs stopped part-way because their job was cancelled or deleted.",
    ["stage"],
)
JOBS = Counter(
    "pipeline_jobs_total",
    "Jobs that reached a terminal state: completed, completed_with_warnings, failed.",
    ["outcome"],
)
WEBHOOKS = Counter(
    "pipeline_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered, retried, failed, refused, dead.",
    ["outcome"],
)
QUEUE_MESSAGES = Gauge(
    "pipeline_queue_messages",
    "Messages waiting in a stage queue (sampled by the workers).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
DEAD_LETTERS = Gauge(
    "pipeline_dead_letter_messages",
    "Messages in a stage's dead-letter queue (sampled by the workers).",
    ["queue"],
    multiprocess_mode="mostrecent",
)


def observe_audio(stage: Stage, audio_s: float, seconds: float) -> None:
    """Count processed audio and the run's real-time factor."""
    if audio_s > 0:
        AUDIO_SECONDS.labels(stage.value).inc(audio_s)
        REAL_TIME_FACTOR.labels(stage.value).observe(seconds / audio_s)


class QueueSampler:
    """A daemon thread that samples queue and dead-letter depths every `interval_s`."""

    def __init__(self, amqp_url: str, interval_s: float = 15.0) -> None:
        self._amqp_url = amqp_url
        self._interval_s = interval_s
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="queue-sampler", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - sampling must never stop the worker
                log.warning("could not sample queue depths", error=repr(exc))
            time.sleep(self._interval_s)

    def sample(self) -> None:
        parameters = pika.URLParameters(self._amqp_url)
        parameters.socket_timeout = 5
        connection = pika.BlockingConnection(parameters)
        try:
            for queue in STAGE_QUEUES.values():
                for name, gauge in (
                    (queue, QUEUE_MESSAGES),
                    (dead_letter_queue(queue), DEAD_LETTERS),
                ):
                    channel = connection.channel()
                    try:
                        depth = channel.queue_declare(name, passive=True).method.message_count
                    except pika.exceptions.ChannelClosedByBroker:
                        depth = 0  # not declared yet: nothing in it
                    else:
                        channel.close()
                    gauge.labels(queue).set(depth)
        finally:
            connection.close()
