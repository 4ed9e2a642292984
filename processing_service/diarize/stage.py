"""The diarize stage: who spoke when (pyannote.audio), merged into the transcript.

Diarization needs only the normalized audio, so split requests it alongside the
transcription chunks; with more than one heavy worker the two run at once. The request
plans blocks of at most DIARIZATION_BLOCK_S: one block is diarized there and then;
several go out as one message each (`StageRequested.part`), diarized by whichever heavy
workers are free, and the last to finish links their speakers. The linked turns wait
for the transcript: whichever of the transcript's fan-in and the diarization's finishes
second attributes the words (`join`), completes diarize and queues analysis.

Diarization is optional: a failure (or a recording too long for it) leaves the job
with its transcript and a warning, never a failed job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from contracts import SpeakerHints, Stage, StageRequested, StageState
from contracts.states import FINISHED_STATES, stage_warning
from processing_service.diarize import store
from processing_service.diarize.attribution import attribute
from processing_service.diarize.found import BlockDiarization
from processing_service.runtime import metrics
from processing_service.runtime.context import StageContext, normalized_audio
from processing_service.runtime.errors import StartedTooOften
from processing_service.runtime.jobs import JobRecord

log = structlog.get_logger("processing.diarize")


class Diarize(Protocol):
    """The stage's model adapter: one block of a 16 kHz mono WAV diarized."""

    #: Cosine distance under which speakers of different blocks are one speaker.
    link_threshold: float

    def __call__(
        self,
        wav_path: Path,
        span: tuple[float, float],
        hints: SpeakerHints,
        watch: Callable[[float], None] | None = None,
    ) -> BlockDiarization:
        """The block `span` (seconds) diarized; `watch` gets the fraction of the block
        done as it goes (it may raise to stop)."""
        ...


def run(ctx: StageContext, message: StageRequested, *, diarize: Diarize) -> None:
    job = ctx.live_job(message.job_id, message.generation)
    if job is None:
        return
    if job.stages[Stage.DIARIZE] in FINISHED_STATES:
        # A redelivered request: send on what finishing diarize queued, once more.
        ctx.resend_queued(job, Stage.ANALYZE)
        return
    if message.part is None:
        _plan(ctx, job, diarize)
    else:
        _block(ctx, job, message.part, diarize)
    join(ctx, job)


def join(ctx: StageContext, job: JobRecord) -> bool:
    """Attribute the transcript's words if it and the diarization are both done; True
    when this call did (it completed diarize)."""
    joined = store.attribute_when_ready(ctx.db, job.id, attribute)
    if joined is None:
        return False
    log.info(
        "speakers attributed",
        speakers=len(joined.attribution.speakers),
        turns=len(joined.attribution.turns),
    )
    for stage in joined.queued:
        ctx.request_now(job.id, stage, job.generation)
    return True


def _plan(ctx: StageContext, job: JobRecord, diarize: Diarize) -> None:
    if _too_long(ctx, job):
        return
    blocks = store.blocks_of(ctx.db, job.id, job.generation)
    if not blocks:
        spans = _spans(ctx.path(normalized_audio(job.id)), ctx.settings.diarization.block_s)
        blocks = store.plan(ctx.db, job.id, job.generation, spans)
    if len(blocks) == 1:
        _block(ctx, job, 0, diarize)
        return
    ctx.jobs.start_stage(job.id, Stage.DIARIZE)
    waiting = [b.index for b in blocks if b.result is None]
    for index in waiting:
        ctx.send(
            Stage.DIARIZE,
            StageRequested(
                job_id=job.id, stage=Stage.DIARIZE.value, generation=job.generation, part=index
            ),
        )
    log.info("diarization fanned out", blocks=len(blocks), sent=len(waiting))
    _link(ctx, job, diarize)  # every block done already (a redelivered request)


def _block(ctx: StageContext, job: JobRecord, index: int, diarize: Diarize) -> None:
    blocks = store.blocks_of(ctx.db, job.id, job.generation)
    if not 0 <= index < len(blocks):
        # A block of a plan this generation does not have (a replayed dead block
        # reopened the job in a new generation): plan this generation's blocks.
        log.info("block of another plan; planning afresh", block=index)
        _plan(ctx, job, diarize)
        return
    block = blocks[index]
    if block.result is None:
        attempts = store.start_block(ctx.db, job.id, job.generation, index)
        ctx.jobs.start_stage(job.id, Stage.DIARIZE)
        if ctx.settings.policies[Stage.DIARIZE].started_too_often(attempts):
            raise StartedTooOften(f"diarize of block {index}", attempts)
        hints = job.options.speaker_hints
        if len(blocks) > 1:
            # A block may hear fewer voices than the recording; only the cap holds.
            hints = SpeakerHints(max_speakers=hints.num_speakers or hints.max_speakers)
        started = time.perf_counter()
        found = diarize(
            ctx.path(normalized_audio(job.id)),
            (block.start_s, block.end_s),
            hints,
            watch=ctx.watch(job.id, Stage.DIARIZE, index),
        )
        seconds = time.perf_counter() - started
        metrics.observe_audio(Stage.DIARIZE, block.end_s - block.start_s, seconds)
        store.save_block(ctx.db, job.id, job.generation, index, found)
        log.info(
            "block diarized",
            block=index,
            blocks=len(blocks),
            audio_s=round(block.end_s - block.start_s, 2),
            seconds=round(seconds, 2),
        )
    _link(ctx, job, diarize)


def _link(ctx: StageContext, job: JobRecord, diarize: Diarize) -> None:
    """Once every block is diarized, link their speakers into the generation's turns."""
    blocks = store.blocks_of(ctx.db, job.id, job.generation)
    done = [b.result for b in blocks if b.result is not None]
    if not blocks or len(done) < len(blocks) or store.has_turns(ctx.db, job.id, job.generation):
        return
    from processing_service.diarize.blocks import link_blocks  # noqa: PLC0415 - numpy

    hints = job.options.speaker_hints
    turns = link_blocks(
        done,
        threshold=diarize.link_threshold,
        min_speakers=hints.num_speakers or hints.min_speakers,
        max_speakers=hints.num_speakers or hints.max_speakers,
    )
    store.save_turns(ctx.db, job.id, job.generation, turns)
    log.info("diarization linked", blocks=len(blocks), turns=len(turns))


def _spans(wav_path: Path, block_s: float) -> list[tuple[float, float]]:
    from processing_service.diarize.blocks import plan_spans  # noqa: PLC0415 - numpy

    return plan_spans(wav_path, block_s)


def _too_long(ctx: StageContext, job: JobRecord) -> bool:
    """Skip diarization past DIARIZATION_MAX_DURATION_S; True when it was skipped.

    Each block runs under the stage's time limit, so length alone never makes it time
    out; the cap bounds the work one upload may ask of the heavy workers.
    """
    duration_s = job.audio.duration_s if job.audio else 0.0
    limit = ctx.settings.diarization.max_duration_s
    if not 0 < limit < duration_s:
        return False
    reason = (
        f"the recording lasts {duration_s:.0f} s, longer than"
        f" DIARIZATION_MAX_DURATION_S ({limit:.0f} s)"
    )
    log.warning("diarization skipped", reason=reason)
    queued = ctx.jobs.degrade(
        job.id,
        Stage.DIARIZE,
        reason,
        stage_warning(Stage.DIARIZE, f"skipped: {reason}"),
        StageState.SKIPPED,
    )
    for stage in queued or ():
        ctx.request_now(job.id, stage, job.generation)
    return True
