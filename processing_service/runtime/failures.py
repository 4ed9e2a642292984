"""The failure policy: what a stage's last failed attempt does to its job.

Losing a critical stage (split, transcribe) fails the job; the optional ones (diarize,
analyze) degrade it to a completed job with a warning naming what is missing; notify's
last failure buries the webhook delivery. Earlier attempts are only recorded.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from contracts import Stage
from contracts.states import stage_warning
from processing_service.runtime.context import StageContext

log = structlog.get_logger("processing.failures")

#: Losing these fails the job; the others degrade to a warning.
CRITICAL_STAGES = frozenset({Stage.SPLIT, Stage.TRANSCRIBE})

#: What notify does when its last attempt failed (the notify package provides it).
GiveUp = Callable[[StageContext, str, str], None]


def on_failure(
    ctx: StageContext,
    stage: Stage,
    job_id: str,
    error: str,
    *,
    final: bool,
    give_up: GiveUp,
    generation: int | None = None,
) -> None:
    """Record a failed attempt; when it was the last one, settle the job."""
    if not final:
        ctx.jobs.record_attempt_error(job_id, stage, error)
        return
    if stage in CRITICAL_STAGES:
        if ctx.jobs.fail_job(job_id, stage, error):
            log.error("job failed", stage=stage.value, error=error)
            ctx.request_now(job_id, Stage.NOTIFY, generation)
    elif stage is Stage.NOTIFY:
        give_up(ctx, job_id, error)
    else:
        queued = ctx.jobs.degrade(job_id, stage, error, stage_warning(stage, f"failed: {error}"))
        # A diarize that gave up before the transcript was there queues nothing: the
        # transcript's fan-in then queues analysis.
        for following in queued or ():
            ctx.request_now(job_id, following, generation)
