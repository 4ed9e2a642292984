"""Every queue, actor, exchange and routing key name, spelled once.

Both services import these names; nothing else in the code base writes them as literals.
"""

from __future__ import annotations

from contracts.states import Stage

#: The Dramatiq queue and actor that receive `JobSubmitted` from the ingest service.
SUBMIT_QUEUE = "split"
SUBMIT_ACTOR = "split"

#: One durable queue per stage; the actor that consumes it has the stage's name.
STAGE_QUEUES: dict[Stage, str] = {stage: stage.value for stage in Stage}

#: Dramatiq dead-letters a queue's messages to this queue (kept 7 days by RabbitMQ).
DEAD_LETTER_SUFFIX = ".XQ"

#: Durable topic exchange that receives job and stage events for downstream consumers.
EVENTS_EXCHANGE = "audio.events"


#: The ingest API's job routes, relative to its base URL (links in answers, webhooks
#: and events).
JOBS_PATH = "/v1/jobs"


def job_path(job_id: str) -> str:
    """Where a job is, e.g. `/v1/jobs/<id>`."""
    return f"{JOBS_PATH}/{job_id}"


def result_path(job_id: str) -> str:
    """Where a job's result document is."""
    return f"{job_path(job_id)}/result"


def dead_letter_queue(queue: str) -> str:
    """Name of the dead-letter queue that Dramatiq pairs with `queue`."""
    return f"{queue}{DEAD_LETTER_SUFFIX}"


def job_event_key(status: str) -> str:
    """Routing key of a terminal job event, e.g. `job.completed`."""
    return f"job.{status}"


def stage_event_key(stage: Stage) -> str:
    """Routing key of a finished-stage event, e.g. `job.stage.transcribe`."""
    return f"job.stage.{stage.value}"
