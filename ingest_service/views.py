"""Rendering job rows as the API's answers (the shapes themselves are `contracts.api`)."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import AudioFacts, JobOptions, JobStatus, Stage
from contracts.api import AttemptView, DeadLetterView, DeliveryView, JobView, Links, StageView
from contracts.routing import job_path, result_path
from contracts.states import FINISHED_STATES, PIPELINE, StageState

#: Stage states that count as all of a stage's share of the progress.
_COMPLETE_STATES = FINISHED_STATES - {StageState.CANCELLED}
#: Each stage's share of a job's progress: roughly its share of the work on a typical
#: recording (transcription dominates, then diarization).
STAGE_WEIGHTS: dict[Stage, float] = {
    Stage.SPLIT: 0.05,
    Stage.TRANSCRIBE: 0.6,
    Stage.DIARIZE: 0.25,
    Stage.ANALYZE: 0.05,
    Stage.NOTIFY: 0.05,
}


def links_for(job_id: str) -> Links:
    return Links(self=job_path(job_id), result=result_path(job_id))


def _audio_facts(stored: Any) -> AudioFacts | None:
    # The stored jsonb may carry the workers' own keys (the normalized audio's path):
    # converting to the contract keeps them away from clients.
    return None if stored is None else msgspec.convert(stored, AudioFacts)


def job_view(
    job: Any, stages: list[Any] | None = None, dead_letters: list[Any] | None = None
) -> JobView:
    """Render a job row (and, for the detail view, its stage and dead-letter rows)."""
    job_id = str(job["id"])
    stage_views = None
    progress = None
    current = None
    if stages is not None:
        stage_views = [
            StageView(
                name=s["stage"],
                state=s["state"],
                attempts=s["attempts"],
                error=s["error"],
                started_at=s["started_at"],
                finished_at=s["finished_at"],
                # A cancelled stage keeps the progress it had made.
                progress=1.0 if s["state"] in _COMPLETE_STATES else round(s["progress"], 3),
            )
            for s in stages
        ]
        progress, current = job_progress(JobStatus(job["status"]), stage_views)
    return JobView(
        id=job_id,
        status=job["status"],
        created_at=job["created_at"],
        updated_at=job["updated_at"],
        started_at=job["started_at"],
        finished_at=job["finished_at"],
        filename=job["original_filename"],
        content_type=job["content_type"],
        audio_format=job["audio_format"],
        size_bytes=job["size_bytes"],
        sha256=job["sha256"],
        options=msgspec.convert(job["options"], JobOptions),
        error=job["error"],
        warnings=list(job["warnings"]),
        links=links_for(job_id),
        audio=_audio_facts(job["audio"]),
        source_url=job["source_url"],
        progress=progress,
        stage=current,
        stages=stage_views,
        dead_letters=None
        if dead_letters is None
        else [
            DeadLetterView(
                stage=d["stage"],
                queue=d["queue"],
                message_id=d["message_id"],
                reason=d["reason"],
                dead_at=d["dead_at"],
                replayed_at=d["replayed_at"],
            )
            for d in dead_letters
        ],
    )


def job_progress(status: JobStatus, stages: list[StageView]) -> tuple[float, str | None]:
    """The job's weighted progress, and its current stage (None once it has ended)."""
    if status is JobStatus.COMPLETED:
        return 1.0, None
    by_name = {s.name: s for s in stages}
    done = sum(
        STAGE_WEIGHTS[stage] * by_name[stage.value].progress
        for stage in PIPELINE
        if stage.value in by_name
    )
    current = None
    if not status.terminal:
        running = [s.name for s in stages if s.state == StageState.RUNNING]
        waiting = [s.name for s in stages if s.state in {StageState.QUEUED, StageState.PENDING}]
        current = next(iter(running + waiting), None)
    return round(min(done, 1.0), 3), current


def delivery_views(rows: list[tuple[Any, list[Any]]]) -> list[DeliveryView]:
    return [
        DeliveryView(
            id=str(d["id"]),
            generation=d["generation"],
            event=d["event"],
            url=d["url"],
            state=d["state"],
            attempts=[
                AttemptView(a["attempted_at"], a["status_code"], a["error"], a["duration_ms"])
                for a in attempts
            ],
            last_error=d["last_error"],
            created_at=d["created_at"],
            delivered_at=d["delivered_at"],
        )
        for d, attempts in rows
    ]
