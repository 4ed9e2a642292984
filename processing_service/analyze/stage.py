"""The analyze stage: meeting notes from the (speaker-attributed) transcript.

Offline methods by default; an OpenAI-compatible endpoint when ANALYSIS_LLM_BASE_URL
is set. Optional: a failure leaves the job completed with a warning.
"""

from __future__ import annotations

import structlog

from contracts import Stage, StageRequested
from contracts.states import DONE_STATES, stage_warning
from processing_service.analyze import notes, store
from processing_service.runtime.context import StageContext

log = structlog.get_logger("processing.analyze")


def run(ctx: StageContext, message: StageRequested) -> None:
    job = ctx.live_job(message.job_id, message.generation)
    if job is None:
        return
    if job.stages[Stage.ANALYZE] not in DONE_STATES:
        ctx.begin(job.id, Stage.ANALYZE)
        document = store.result(ctx.db, job.id)
        found, warnings = notes.analyze(document.segments if document else [], llm=ctx.settings.llm)
        store.save_analysis(
            ctx.db, job.id, found, [stage_warning(Stage.ANALYZE, text) for text in warnings]
        )
        log.info(
            "analysis done",
            action_items=len(found.action_items),
            decisions=len(found.decisions),
        )
    ctx.request(job, Stage.NOTIFY)
