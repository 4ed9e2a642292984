"""What each stage does, as plain methods over the job store; actors only decode and call.

Every stage is idempotent: it loads the job by id, skips work whose output exists,
persists, and only then sends the next message. A redelivered message (a worker killed,
an ack lost) therefore re-sends at most what may not have been sent, and never writes a
second result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

from contracts import (
    ChunkReady,
    JobStatus,
    JobSubmitted,
    Message,
    ResultDocument,
    SpeakerTurn,
    Stage,
    StageRequested,
    StageState,
)
from processing_service import analysis, audio, diarization, metrics, speakers, transcription
from processing_service.config import Settings
from processing_service.errors import InvalidMessage, StartedTooOften
from processing_service.job_store import (
    DONE_STATES,
    WAITING_STATES,
    ChunkRecord,
    JobRecord,
    JobStore,
)
from processing_service.llm_client import LlmSettings
from processing_service.notification import Notifier

log = structlog.get_logger("processing.pipeline")

#: Losing these fails the job; the others degrade to a warning.
CRITICAL_STAGES = frozenset({Stage.SPLIT, Stage.TRANSCRIBE})


def warning(stage: Stage, text: str) -> str:
    """A job warning; the stage prefix lets a re-run of the stage clear its own."""
    return f"{stage.value}: {text}"


Send = Callable[[Stage, Message], None]


@dataclass
class Pipeline:
    settings: Settings
    store: JobStore
    send: Send
    notifier: Notifier

    # -- helpers -----------------------------------------------------------------------

    def _job(self, job_id: str) -> JobRecord | None:
        job = self.store.load_job(job_id)
        if job is None:
            raise InvalidMessage(f"job {job_id} does not exist")
        if job.status.terminal:
            log.info("job already finished; message ignored", status=job.status.value)
            return None
        return job

    def _request(self, job: JobRecord, stage: Stage) -> None:
        """Send the message that starts `stage` if it has not started yet."""
        if job.stages.get(stage) in WAITING_STATES:
            self.send(stage, StageRequested(job_id=job.id, stage=stage.value))

    def _begin(self, job_id: str, stage: Stage) -> None:
        """Count an attempt; refuse a message that keeps killing its worker.

        Transcribe is exempt: its attempts count every chunk of the job (each chunk's own
        starts are checked in ``transcribe``).
        """
        attempts = self.store.start_stage(job_id, stage)
        if stage is not Stage.TRANSCRIBE and self.settings.policies[stage].started_too_often(
            attempts
        ):
            raise StartedTooOften(stage.value, attempts)

    def _path(self, relative: str) -> Path:
        return self.settings.storage_dir / relative

    # -- split -------------------------------------------------------------------------

    def split(self, message: JobSubmitted) -> None:
        """Probe, normalize to 16 kHz mono, cut long recordings into chunks."""
        job = self._job(message.job_id)
        if job is None:
            return
        if job.stages[Stage.SPLIT] not in DONE_STATES:
            started = time.perf_counter()
            self._begin(job.id, Stage.SPLIT)
            upload = self._path(message.storage_path)
            info = audio.probe(upload)
            work = f"work/{job.id}"
            normalized = f"{work}/audio.wav"
            duration = audio.normalize(upload, self._path(normalized))
            s = self.settings
            plans = audio.plan_chunks(duration, s.split_threshold_s, s.chunk_s, s.chunk_overlap_s)
            chunks = []
            for plan in plans:
                path = normalized
                if len(plans) > 1:
                    path = f"{work}/chunk-{plan.index:04d}.wav"
                    audio.cut_chunk(
                        self._path(normalized), self._path(path), plan.start_s, plan.end_s
                    )
                chunks.append(ChunkRecord(plan.index, plan.start_s, plan.end_s, path, None))
            facts = dataclasses.asdict(info) | {
                "duration_s": round(duration, 3),
                "normalized_path": normalized,
                "chunks": len(chunks),
            }
            self.store.complete_split(job.id, facts, chunks)
            metrics.observe_audio(Stage.SPLIT, duration, time.perf_counter() - started)
            log.info(
                "split done", duration_s=round(duration, 3), chunks=len(chunks), codec=info.codec
            )
        elif job.stages[Stage.TRANSCRIBE] in DONE_STATES:
            return
        chunks = self.store.chunks(job.id)
        for chunk in chunks:
            if chunk.transcript is None:
                self.send(
                    Stage.TRANSCRIBE,
                    ChunkReady(
                        job_id=job.id,
                        chunk_index=chunk.index,
                        chunk_count=len(chunks),
                        audio_path=chunk.audio_path,
                        start_s=chunk.start_s,
                        end_s=chunk.end_s,
                    ),
                )

    # -- transcribe --------------------------------------------------------------------

    def transcribe(self, message: ChunkReady) -> None:
        """Transcribe one chunk; the last chunk to finish stitches the transcript."""
        job = self._job(message.job_id)
        if job is None:
            return
        if job.stages[Stage.TRANSCRIBE] in DONE_STATES:
            self._request(job, Stage.DIARIZE)
            return
        chunk = next((c for c in self.store.chunks(job.id) if c.index == message.chunk_index), None)
        if chunk is None:
            raise InvalidMessage(f"job {job.id} has no chunk {message.chunk_index}")
        if chunk.transcript is None:
            attempts = self.store.start_chunk(job.id, chunk.index)
            if self.settings.policies[Stage.TRANSCRIBE].started_too_often(attempts):
                raise StartedTooOften(f"transcribe of chunk {chunk.index}", attempts)
            s = self.settings
            model = transcription.get_model(s.whisper_model, s.model_cache_dir, s.torch_threads)
            started = time.perf_counter()
            result = transcription.transcribe_file(
                model, self._path(chunk.audio_path), job.options.language, chunk.start_s
            )
            seconds = time.perf_counter() - started
            metrics.observe_audio(Stage.TRANSCRIBE, chunk.end_s - chunk.start_s, seconds)
            log.info(
                "chunk transcribed",
                chunk=chunk.index,
                audio_s=round(chunk.end_s - chunk.start_s, 2),
                seconds=round(seconds, 2),
            )
            self.store.save_chunk_transcript(job.id, chunk.index, msgspec.to_builtins(result))
        self._fan_in(job)

    def _fan_in(self, job: JobRecord) -> None:
        chunks = self.store.chunks(job.id)
        if any(c.transcript is None for c in chunks):
            return
        timed = [
            transcription.TimedChunk(
                c.start_s, c.end_s, msgspec.convert(c.transcript, transcription.ChunkTranscript)
            )
            for c in chunks
        ]
        language, segments = transcription.stitch(timed)
        warnings = []
        requested = job.options.language
        if requested and language and requested != language:
            warnings.append(
                warning(
                    Stage.TRANSCRIBE,
                    f"the model {self.settings.whisper_model} is English-only:"
                    f" language {requested!r} was transcribed as English",
                )
            )
        document = ResultDocument(
            id=job.id,
            status=JobStatus.PROCESSING.value,
            language=language,
            duration_s=(job.audio or {}).get("duration_s"),
            text=transcription.full_text(segments),
            segments=segments,
        )
        if self.store.complete_transcription(job.id, document):
            for text in warnings:
                self.store.add_warning(job.id, text)
            log.info("transcript stitched", chunks=len(chunks), segments=len(segments))
            self.send(Stage.DIARIZE, StageRequested(job_id=job.id, stage=Stage.DIARIZE.value))
        if len(chunks) > 1:
            for chunk in chunks:
                self._path(chunk.audio_path).unlink(missing_ok=True)

    # -- diarize, analyze, notify ------------------------------------------------------

    def diarize(self, message: StageRequested) -> None:
        """Who spoke when (pyannote.audio), merged into the transcript word by word."""
        job = self._job(message.job_id)
        if job is None:
            return
        s = self.settings
        duration_s = float((job.audio or {}).get("duration_s", 0))
        if job.stages[Stage.DIARIZE] not in DONE_STATES and (
            0 < s.diarization_max_duration_s < duration_s
        ):
            # It would run past the stage's time limit, retry and give up anyway, holding
            # the heavy worker for hours: skip it at once, keeping the transcript.
            reason = (
                f"the recording lasts {duration_s:.0f} s, longer than"
                f" DIARIZATION_MAX_DURATION_S ({s.diarization_max_duration_s:.0f} s)"
            )
            log.warning("diarization skipped", reason=reason)
            self.store.degrade(
                job.id, Stage.DIARIZE, reason, f"diarize: skipped: {reason}", StageState.SKIPPED
            )
            job = self.store.load_job(job.id) or job
        if job.stages[Stage.DIARIZE] not in DONE_STATES:
            self._begin(job.id, Stage.DIARIZE)
            diarizer = diarization.load_diarizer(
                s.diarization_pipeline,
                s.model_cache_dir,
                hf_token=s.hf_token,
                segmentation_step=s.diarization_segmentation_step,
                block_s=s.diarization_block_s,
                torch_threads=s.torch_threads,
            )
            audio_path = self._path(
                (job.audio or {}).get("normalized_path", f"work/{job.id}/audio.wav")
            )
            options = job.options
            started = time.perf_counter()
            found = diarizer.diarize(
                audio_path,
                num_speakers=options.num_speakers,
                min_speakers=options.min_speakers,
                max_speakers=options.max_speakers,
            )
            seconds = time.perf_counter() - started
            metrics.observe_audio(Stage.DIARIZE, duration_s, seconds)
            attributed = speakers.attribute(
                self.store.transcript(job.id),
                [SpeakerTurn(t.start, t.end, t.speaker) for t in found],
            )
            self.store.save_attribution(
                job.id, attributed.segments, attributed.speakers, attributed.turns
            )
            log.info(
                "diarization done",
                speakers=len(attributed.speakers),
                turns=len(attributed.turns),
                seconds=round(seconds, 2),
            )
        self._request(job, Stage.ANALYZE)

    def analyze(self, message: StageRequested) -> None:
        """Meeting notes from the (speaker-attributed) transcript; offline unless an LLM is set."""
        job = self._job(message.job_id)
        if job is None:
            return
        if job.stages[Stage.ANALYZE] not in DONE_STATES:
            self._begin(job.id, Stage.ANALYZE)
            document = self.store.result(job.id)
            s = self.settings
            llm = None
            if s.llm_base_url:
                llm = LlmSettings(s.llm_base_url, s.llm_api_key, s.llm_model, s.llm_timeout_s)
            notes, notes_warnings = analysis.analyze(document.segments if document else [], llm=llm)
            self.store.save_analysis(
                job.id, notes, [warning(Stage.ANALYZE, text) for text in notes_warnings]
            )
            log.info(
                "analysis done",
                action_items=len(notes.action_items),
                decisions=len(notes.decisions),
            )
        self._request(job, Stage.NOTIFY)

    def notify(self, message: StageRequested) -> None:
        """Settle the job, publish its event, deliver its webhook (runs for failed jobs too)."""
        self.notifier.notify(message.job_id)

    # -- failures ----------------------------------------------------------------------

    def on_failure(self, stage: Stage, job_id: str, error: str, *, final: bool) -> None:
        """Record a failed attempt; when it was the last one, settle the job."""
        if not final:
            self.store.record_attempt_error(job_id, stage, error)
            return
        if stage in CRITICAL_STAGES:
            if self.store.fail_job(job_id, stage, error, StageState.DEAD):
                log.error("job failed", stage=stage.value, error=error)
                self.send(Stage.NOTIFY, StageRequested(job_id=job_id, stage=Stage.NOTIFY.value))
        elif stage is Stage.NOTIFY:
            self.notifier.give_up(job_id, error)
        elif self.store.degrade(job_id, stage, error, warning(stage, f"failed: {error}")):
            following = Stage.ANALYZE if stage is Stage.DIARIZE else Stage.NOTIFY
            self.send(following, StageRequested(job_id=job_id, stage=following.value))
