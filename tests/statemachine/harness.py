"""An in-process worker for the job state machine: Dramatiq's StubBroker and a stub
worker, the real Postgres (the run's isolated database), real ffmpeg, and small fakes
for the two model adapters only. No model weights, no worker processes.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dramatiq
import msgspec
from dramatiq.brokers.stub import StubBroker

from contracts import (
    JobOptions,
    JobSubmitted,
    Message,
    Segment,
    SpeakerHints,
    SpeakerTurn,
    Stage,
    Word,
)
from contracts.states import FINISHED_STATES, PIPELINE
from infra.postgres import migrate
from processing_service.diarize.found import BlockDiarization
from processing_service.runtime.config import Settings
from processing_service.transcribe.stitching import ChunkTranscript
from processing_service.worker import Models, create_broker
from tests.support.audio import wav_bytes
from tests.support.backends import query

#: Fast retries, and thresholds that cut a 12 s recording into 3 chunks.
FAST_ENV = {
    "RETRY_MIN_BACKOFF_MS": "10",
    "RETRY_MAX_BACKOFF_MS": "50",
    "SPLIT_THRESHOLD_S": "10",
    "CHUNK_S": "5",
    "CHUNK_OVERLAP_S": "1",
}


@dataclass
class FakeTranscriber:
    """One word per chunk, 1 s after the chunk starts; optionally slow or failing."""

    name: str = "fake-whisper"
    #: Seconds to wait, by chunk start time (makes chunks finish out of order).
    delays: dict[float, float] = field(default_factory=dict)
    error: Exception | None = None
    calls: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self,
        path: Path,
        language: str | None,
        offset_s: float,
        *,
        watch: Any = None,
        vocabulary: Any = (),
        prompt: str | None = None,
    ) -> ChunkTranscript:
        assert path.is_file(), path
        with self._lock:
            self.calls.append(offset_s)
        time.sleep(self.delays.get(offset_s, 0.0))
        if self.error is not None:
            raise self.error
        word = Word(offset_s + 1.0, offset_s + 1.4, f" word{offset_s:g}", 0.9)
        segment = Segment(word.start, word.end, word.word.strip(), words=[word])
        return ChunkTranscript(language="en", segments=[segment])


@dataclass
class FakeDiarize:
    """Two voices taking turns every 4 s of the block asked for, with a centroid each
    (so that the real linker joins blocks); optionally slow or failing."""

    error: Exception | None = None
    delay_s: float = 0.0
    calls: list[SpeakerHints] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    link_threshold: float = 0.25

    def __call__(
        self, wav_path: Path, span: tuple[float, float], hints: SpeakerHints, watch: Any = None
    ) -> BlockDiarization:
        assert wav_path.is_file(), wav_path
        self.calls.append(hints)
        self.spans.append(span)
        time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        start, end = span
        # Labels of the block's own, in a different order in each block.
        names = ("A", "B") if round(start) % 8 == 0 else ("B", "A")
        turns = [
            SpeakerTurn(float(t), min(t + 4.0, end), names[t // 4 % 2])
            for t in range(int(start // 4 * 4), int(end), 4)
            if min(t + 4.0, end) > max(t, start)
        ]
        voice = {names[0]: [1.0, 0.0, 0.0], names[1]: [0.0, 1.0, 0.0]}
        return BlockDiarization(start, end, turns, {t.speaker: voice[t.speaker] for t in turns})


@dataclass
class InProcessWorker:
    settings: Settings
    broker: dramatiq.Broker
    worker: dramatiq.Worker
    transcriber: FakeTranscriber
    diarize: FakeDiarize

    def submit(self, seconds: float = 12.0, **options: Any) -> str:
        """Store a WAV and record its job as the ingest service does; send it to split."""
        message = record_job(self.settings, seconds, **options)
        self.send(Stage.SPLIT, message)
        return message.job_id

    def send(self, stage: Stage, message: Message) -> None:
        self.broker.get_actor(stage.value).send(msgspec.to_builtins(message))

    def settle(self, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
        """Wait until the job is terminal and notify is over, and the queues are idle."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in {"completed", "failed"} and job["stages"]["notify"] in {
                s.value for s in FINISHED_STATES
            }:
                self.idle()
                return self.job(job_id)
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not settle: {self.job(job_id)}")

    def idle(self) -> None:
        """Return once no queue holds a message and no worker thread runs one."""
        for queue in list(self.broker.queues):
            self.broker.join(queue, fail_fast=False, timeout=30_000)
        self.worker.join()

    def job(self, job_id: str) -> dict[str, Any]:
        url = self.settings.database_url
        jid = uuid.UUID(job_id)
        row = query(url, "SELECT status, error, warnings, generation FROM jobs WHERE id = $1", jid)[
            0
        ]
        stages = query(url, "SELECT stage, state, attempts FROM job_stages WHERE job_id = $1", jid)
        result = query(url, "SELECT document::text FROM job_results WHERE job_id = $1", jid)
        return {
            "status": row["status"],
            "error": row["error"],
            "warnings": msgspec.json.decode(row["warnings"])
            if isinstance(row["warnings"], str)
            else row["warnings"],
            "generation": row["generation"],
            "stages": {s["stage"]: s["state"] for s in stages},
            "attempts": {s["stage"]: s["attempts"] for s in stages},
            "result": msgspec.json.decode(result[0][0]) if result else None,
        }


def record_job(settings: Settings, seconds: float = 12.0, **options: Any) -> JobSubmitted:
    """Store a WAV and record its job (split queued) as the ingest service does."""
    job_id = str(uuid.uuid4())
    relative = f"uploads/{job_id}.wav"
    path = settings.storage_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    data = wav_bytes(seconds)
    path.write_bytes(data)
    message = JobSubmitted(
        job_id=job_id,
        storage_path=relative,
        original_filename="meeting.wav",
        size_bytes=len(data),
        sha256="0" * 64,
        content_type="audio/wav",
        submitted_at=datetime.now(UTC),
        options=msgspec.convert(options, JobOptions),
    )
    query(
        settings.database_url,
        "INSERT INTO jobs (id, original_filename, content_type, audio_format, size_bytes,"
        " sha256, storage_path, options, webhook_secret) VALUES"
        " ($1, 'meeting.wav', 'audio/wav', 'wav', $2, $3, $4, $5::jsonb, $6)",
        uuid.UUID(job_id),
        len(data),
        message.sha256,
        relative,
        msgspec.json.encode(message.options).decode(),
        "whsec_" + "QUJD" * 8 if options.get("webhook_url") else None,
    )
    query(
        settings.database_url,
        "INSERT INTO job_stages (job_id, stage, position, state)"
        " SELECT $1, s.stage, s.ord - 1, CASE WHEN s.ord = 1 THEN 'queued' ELSE 'pending' END"
        " FROM unnest($2::text[]) WITH ORDINALITY AS s(stage, ord)",
        uuid.UUID(job_id),
        [stage.value for stage in PIPELINE],
    )
    return message


def migrated(database_url: str) -> None:
    asyncio.run(migrate(database_url))


def in_process_worker(
    env: dict[str, str],
    transcriber: FakeTranscriber | None = None,
    diarize: FakeDiarize | None = None,
) -> Iterator[InProcessWorker]:
    """A running stub worker over the given environment; stopped on exit."""
    settings = Settings.from_env(FAST_ENV | env)
    migrated(settings.database_url)
    transcriber = transcriber or FakeTranscriber()
    diarize = diarize or FakeDiarize()
    broker = create_broker(settings, StubBroker(), Models(transcriber=transcriber, diarize=diarize))
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=4)
    worker.start()
    try:
        yield InProcessWorker(settings, broker, worker, transcriber, diarize)
    finally:
        worker.stop()
        broker.close()


Factory = Callable[..., InProcessWorker]
