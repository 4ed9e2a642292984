"""The transcribe stage: one chunk per message; the last chunk to finish stitches.

Chunks finish in any order, on any worker; the fan-in counts transcripts in Postgres
under the job's row lock, so exactly one of them stores the stitched transcript. It then
joins the diarization that ran alongside (`diarize.stage.join`): if its speakers are
there already, the words are attributed now.
"""

from __future__ import annotations

import time

import structlog

from contracts import ChunkReady, JobStatus, ResultDocument, Stage
from contracts.states import DONE_STATES, stage_warning
from processing_service.diarize import stage as diarize_stage
from processing_service.runtime import metrics
from processing_service.runtime.context import StageContext
from processing_service.runtime.errors import InvalidMessage, StartedTooOften
from processing_service.runtime.jobs import JobRecord
from processing_service.transcribe import store
from processing_service.transcribe.stitching import TimedChunk, full_text, stitch
from processing_service.transcribe.whisper import Transcriber

log = structlog.get_logger("processing.transcribe")


def run(ctx: StageContext, message: ChunkReady, *, transcriber: Transcriber) -> None:
    job = ctx.live_job(message.job_id, message.generation)
    if job is None:
        return
    if job.stages[Stage.TRANSCRIBE] in DONE_STATES:
        # A redelivered chunk: finish what its fan-in may not have.
        _join_speakers(ctx, job)
        ctx.resend_queued(job, Stage.ANALYZE)
        return
    chunk = next(
        (c for c in store.chunks_of(ctx.db, job.id) if c.index == message.chunk_index), None
    )
    if chunk is None:
        raise InvalidMessage(f"job {job.id} has no chunk {message.chunk_index}")
    if chunk.transcript is None:
        attempts = store.start_chunk(ctx.db, job.id, chunk.index)
        ctx.jobs.start_stage(job.id, Stage.TRANSCRIBE)
        if ctx.settings.policies[Stage.TRANSCRIBE].started_too_often(attempts):
            raise StartedTooOften(f"transcribe of chunk {chunk.index}", attempts)
        started = time.perf_counter()
        result = transcriber(
            ctx.path(chunk.audio_path),
            job.options.language,
            chunk.start_s,
            watch=ctx.watch(job.id, Stage.TRANSCRIBE, chunk.index),
            vocabulary=job.options.vocabulary,
            prompt=job.options.prompt,
        )
        seconds = time.perf_counter() - started
        metrics.observe_audio(Stage.TRANSCRIBE, chunk.end_s - chunk.start_s, seconds)
        log.info(
            "chunk transcribed",
            chunk=chunk.index,
            audio_s=round(chunk.end_s - chunk.start_s, 2),
            seconds=round(seconds, 2),
        )
        store.save_chunk_transcript(ctx.db, job.id, chunk.index, result)
    _fan_in(ctx, job, transcriber.name)


def _fan_in(ctx: StageContext, job: JobRecord, model_name: str) -> None:
    chunks = store.chunks_of(ctx.db, job.id)
    timed = [TimedChunk(c.start_s, c.end_s, c.transcript) for c in chunks if c.transcript]
    if len(timed) < len(chunks):
        return
    language, segments = stitch(timed)
    warnings = []
    requested = job.options.language
    if requested and language and requested != language:
        warnings.append(
            stage_warning(
                Stage.TRANSCRIBE,
                f"the model {model_name} is English-only:"
                f" language {requested!r} was transcribed as English",
            )
        )
    document = ResultDocument(
        id=job.id,
        status=JobStatus.PROCESSING.value,
        language=language,
        duration_s=job.audio.duration_s if job.audio else None,
        text=full_text(segments),
        segments=segments,
    )
    queued = store.complete_transcription(ctx.db, job.id, document)
    if queued is not None:
        for text in warnings:
            ctx.jobs.add_warning(job.id, text)
        log.info("transcript stitched", chunks=len(chunks), segments=len(segments))
        # Analysis, when diarization has given up or been skipped already.
        for stage in queued:
            ctx.request_now(job.id, stage, job.generation)
        _join_speakers(ctx, job)
    if len(chunks) > 1:
        for chunk in chunks:
            ctx.path(chunk.audio_path).unlink(missing_ok=True)


def _join_speakers(ctx: StageContext, job: JobRecord) -> None:
    """Attribute the words if the diarization finished first. Diarize is then completed
    by this transcribe message, so its event is published here (StageEvents publishes
    the events of a message's own stage)."""
    if diarize_stage.join(ctx, job):
        ctx.publish_stage_event(job.id, Stage.DIARIZE)
