"""The ingest service's own Prometheus metrics (request metrics come from Litestar's plugin).

Labels stay bounded: outcomes are a fixed set, never job ids, file names or paths.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPLOADS = Counter(
    "ingest_uploads_total",
    "Upload requests by outcome (accepted, or the problem that refused them).",
    ["outcome"],
)
UPLOAD_BYTES = Counter(
    "ingest_upload_bytes_received_total", "Bytes of audio received in upload bodies."
)
# With several API processes (INGEST_PROCESSES) the values are kept per process and
# combined at /metrics as `multiprocess_mode` says (counters are summed); one process
# ignores it.
OUTBOX_BACKLOG = Gauge(
    "ingest_outbox_backlog",
    "Outbox messages not yet confirmed by RabbitMQ (last relay pass).",
    multiprocess_mode="mostrecent",
)
OUTBOX_PUBLISHED = Counter(
    "ingest_outbox_published_total", "Outbox messages published and confirmed by RabbitMQ."
)
OUTBOX_PUBLISH_ERRORS = Counter(
    "ingest_outbox_publish_errors_total", "Relay passes that failed to publish to RabbitMQ."
)
OUTBOX_PUBLISH_LATENCY = Histogram(
    "ingest_outbox_publish_latency_seconds",
    "Time from a job's outbox row being written to RabbitMQ confirming its message.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
RETENTION_DELETED = Counter(
    "ingest_retention_deleted_total",
    "What the retention sweep deleted: expired jobs, and orphan files no job owns.",
    ["what"],
)
RETENTION_ERRORS = Counter(
    "ingest_retention_errors_total", "Retention sweep passes that failed (retried next pass)."
)
JOBS_STEERED = Counter(
    "ingest_jobs_steered_total", "Jobs cancelled or deleted by their clients.", ["action"]
)
EVENT_STREAMS = Gauge(
    "ingest_event_streams",
    "Server-sent event streams open (all API processes).",
    multiprocess_mode="livesum",
)
