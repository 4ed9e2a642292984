"""The diarize stage: who spoke when (pyannote.audio), merged into the transcript.

Diarization is optional: a failure (or a recording too long for it) leaves the job
with its transcript and a warning, never a failed job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from contracts import SpeakerHints, SpeakerTurn, Stage, StageRequested, StageState
from contracts.states import DONE_STATES, stage_warning
from processing_service.diarize import store
from processing_service.diarize.attribution import attribute
from processing_service.runtime import metrics
from processing_service.runtime.context import StageContext, normalized_audio
from processing_service.runtime.jobs import JobRecord

log = structlog.get_logger("processing.diarize")


class Diarize(Protocol):
    """The stage's model adapter: speaker turns of a 16 kHz mono WAV."""

    def __call__(
        self, wav_path: Path, hints: SpeakerHints, watch: Callable[[float], None] | None = None
    ) -> list[SpeakerTurn]:
        """Speaker turns; `watch` gets the fraction done as it goes (it may raise to stop)."""
        ...


def run(ctx: StageContext, message: StageRequested, *, diarize: Diarize) -> None:
    job = ctx.live_job(message.job_id, message.generation)
    if job is None:
        return
    duration_s = job.audio.duration_s if job.audio else 0.0
    if job.stages[Stage.DIARIZE] not in DONE_STATES and _too_long(ctx, job, duration_s):
        job = ctx.jobs.load_job(job.id) or job
    if job.stages[Stage.DIARIZE] not in DONE_STATES:
        ctx.begin(job.id, Stage.DIARIZE)
        started = time.perf_counter()
        found = diarize(
            ctx.path(normalized_audio(job.id)),
            job.options.speaker_hints,
            watch=ctx.watch(job.id, Stage.DIARIZE),
        )
        seconds = time.perf_counter() - started
        metrics.observe_audio(Stage.DIARIZE, duration_s, seconds)
        attributed = attribute(store.transcript(ctx.db, job.id), found)
        store.save_attribution(
            ctx.db, job.id, attributed.segments, attributed.speakers, attributed.turns
        )
        log.info(
            "diarization done",
            speakers=len(attributed.speakers),
            turns=len(attributed.turns),
            seconds=round(seconds, 2),
        )
    ctx.request(job, Stage.ANALYZE)


def _too_long(ctx: StageContext, job: JobRecord, duration_s: float) -> bool:
    """Skip diarization past DIARIZATION_MAX_DURATION_S; True when it was skipped.

    It would run past the stage's time limit, retry and give up anyway, holding the
    heavy worker for hours: skip it at once, keeping the transcript.
    """
    limit = ctx.settings.diarization.max_duration_s
    if not 0 < limit < duration_s:
        return False
    reason = (
        f"the recording lasts {duration_s:.0f} s, longer than"
        f" DIARIZATION_MAX_DURATION_S ({limit:.0f} s)"
    )
    log.warning("diarization skipped", reason=reason)
    ctx.jobs.degrade(
        job.id,
        Stage.DIARIZE,
        reason,
        stage_warning(Stage.DIARIZE, f"skipped: {reason}"),
        StageState.SKIPPED,
    )
    return True
