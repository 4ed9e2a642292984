"""The split stage: probe, normalize to 16 kHz mono, cut long recordings into chunks.

It then sends the chunks to transcribe and the normalized audio to diarize, which run
side by side. Redelivered after it succeeded, split sends again the chunks that have no
transcript yet (a replay of a dead chunk relies on it) and diarize if it has not
started, and nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from contracts import AudioFacts, ChunkReady, JobSubmitted, Stage
from contracts.layout import work_dir
from contracts.states import DONE_STATES
from processing_service.runtime import metrics
from processing_service.runtime.context import StageContext, normalized_audio
from processing_service.split import ffmpeg
from processing_service.split.fetch import fetch_audio
from processing_service.split.planning import plan_chunks
from processing_service.split.store import (
    PlannedChunk,
    complete_split,
    record_fetched,
    source_headers,
)
from processing_service.transcribe.store import chunks_of

log = structlog.get_logger("processing.split")


def run(ctx: StageContext, message: JobSubmitted) -> None:
    job = ctx.live_job(message.job_id)
    if job is None:
        return
    if job.stages[Stage.SPLIT] not in DONE_STATES:
        _split(ctx, message)
    chunks = [] if job.stages[Stage.TRANSCRIBE] in DONE_STATES else chunks_of(ctx.db, job.id)
    for chunk in chunks:
        if chunk.transcript is None:
            ctx.send(
                Stage.TRANSCRIBE,
                ChunkReady(
                    job_id=job.id,
                    chunk_index=chunk.index,
                    chunk_count=len(chunks),
                    audio_path=chunk.audio_path,
                    start_s=chunk.start_s,
                    end_s=chunk.end_s,
                    generation=job.generation,
                ),
            )
    # Diarization needs only the normalized audio: it runs alongside the chunks, on
    # another heavy worker when there is one (after them in the queue, so that a single
    # worker still finishes the transcript first).
    ctx.request(job, Stage.DIARIZE)


def _split(ctx: StageContext, message: JobSubmitted) -> None:
    started = time.perf_counter()
    job_id = message.job_id
    ctx.begin(job_id, Stage.SPLIT)
    upload = ctx.path(message.storage_path)
    if message.audio_url is not None and not upload.exists():
        _fetch(ctx, message, upload)
    info = ffmpeg.probe(upload)
    normalized = normalized_audio(job_id)
    duration = ffmpeg.normalize(upload, ctx.path(normalized))
    c = ctx.settings.chunks
    plans = plan_chunks(duration, c.split_threshold_s, c.chunk_s, c.overlap_s)
    chunks = []
    for plan in plans:
        path = normalized
        if len(plans) > 1:
            path = f"{work_dir(job_id)}/chunk-{plan.index:04d}.wav"
            ffmpeg.cut_chunk(ctx.path(normalized), ctx.path(path), plan.start_s, plan.end_s)
        chunks.append(PlannedChunk(plan.index, plan.start_s, plan.end_s, path))
    facts = AudioFacts(
        codec=info.codec,
        container=info.container,
        sample_rate=info.sample_rate,
        channels=info.channels,
        duration_s=round(duration, 3),
        chunks=len(chunks),
    )
    complete_split(ctx.db, job_id, facts, chunks)
    # ffmpeg cannot be interrupted half-way: a cancel that came meanwhile is seen here,
    # and the files just cut are dropped (JobCancelled).
    ctx.watch(job_id, Stage.SPLIT).check()
    metrics.observe_audio(Stage.SPLIT, duration, time.perf_counter() - started)
    log.info("split done", duration_s=facts.duration_s, chunks=len(chunks), codec=info.codec)


def _fetch(ctx: StageContext, message: JobSubmitted, dest: Path) -> None:
    """Download the audio of a job submitted by URL to where an upload would be."""
    f = ctx.settings.fetch
    watch = ctx.watch(message.job_id, Stage.SPLIT)
    fetched = fetch_audio(
        message.audio_url or "",
        source_headers(ctx.db, message.job_id),
        dest,
        max_bytes=f.max_bytes,
        allowed=f.allowed_networks,
        connect_timeout_s=f.connect_timeout_s,
        read_timeout_s=f.read_timeout_s,
        max_redirects=f.max_redirects,
        # Bytes say nothing of the share done; the call still notices a cancel.
        watch=lambda _received: watch(0.0),
    )
    record_fetched(ctx.db, message.job_id, fetched.size_bytes, fetched.sha256, fetched.content_type)
