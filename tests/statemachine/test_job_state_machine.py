"""The job state machine in process: stages, fan-in, redelivery, degrade vs fail, give-up.

Runs in seconds without model weights: Dramatiq's StubBroker and a stub worker, the
real Postgres and RabbitMQ (for events) of this run, real ffmpeg, fake model adapters.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import ChunkReady, JobSubmitted, Stage, StageRequested
from processing_service.runtime.errors import UndecodableAudio
from tests.statemachine.harness import (
    FakeDiarize,
    FakeTranscriber,
    InProcessWorker,
    in_process_worker,
)
from tests.support.backends import query
from tests.support.servers import IsolatedEnv, free_port
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
def start(isolated_env: IsolatedEnv) -> Iterator[Any]:
    with contextlib.ExitStack() as stack:

        def make(
            transcriber: FakeTranscriber | None = None,
            diarize: FakeDiarize | None = None,
            **env: str,
        ) -> InProcessWorker:
            base = isolated_env.environ(**env)
            return stack.enter_context(
                contextlib.contextmanager(in_process_worker)(base, transcriber, diarize)
            )

        yield make


def _words(job: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (w["word"].strip(), w["speaker"]) for s in job["result"]["segments"] for w in s["words"]
    ]


def test_a_job_runs_every_stage_and_chunks_fan_in_out_of_order(start: Any) -> None:
    # The first chunk finishes last: the fan-in must still stitch in time order, once.
    worker = start(FakeTranscriber(delays={0.0: 0.6}))
    job_id = worker.submit(seconds=12.0, num_speakers=2)
    job = worker.settle(job_id)
    assert job["status"] == "completed", job
    assert set(job["stages"].values()) == {"succeeded"}
    assert sorted(worker.transcriber.calls) == [0.0, 4.0, 8.0]
    assert [w for w, _ in _words(job)] == ["word0", "word4", "word8"]
    assert [s for _, s in _words(job)] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert worker.diarize.calls[0].num_speakers == 2
    assert job["result"]["analysis"] is not None
    assert job["result"]["status"] == "completed"


def test_every_stage_message_redelivered_after_the_job_changes_nothing(start: Any) -> None:
    worker = start()
    job_id = worker.submit()
    before = worker.settle(job_id)
    submitted = query(
        worker.settings.database_url, "SELECT storage_path FROM jobs WHERE id = $1::uuid", job_id
    )[0][0]
    worker.send(
        Stage.SPLIT,
        JobSubmitted(
            job_id=job_id,
            storage_path=submitted,
            original_filename="meeting.wav",
            size_bytes=1,
            sha256="0" * 64,
            content_type="audio/wav",
            submitted_at=datetime.now(UTC),
        ),
    )
    worker.send(Stage.TRANSCRIBE, ChunkReady(job_id, 1, 3, "x.wav", 4.0, 9.0))
    for stage in (Stage.DIARIZE, Stage.ANALYZE, Stage.NOTIFY):
        worker.send(stage, StageRequested(job_id=job_id, stage=stage.value))
    worker.idle()
    after = worker.job(job_id)
    assert after == before
    assert len(worker.transcriber.calls) == 3
    assert len(worker.diarize.calls) == 1


def test_stages_redelivered_mid_job_do_their_work_once(start: Any) -> None:
    worker = start()
    job_id = worker.submit()
    job = worker.settle(job_id)
    # Put the job back to "diarized, analyze queued" and deliver a chunk and diarize
    # again, as a broker does after a lost ack: done work is not repeated, and the
    # stage still waiting for its message (analyze) gets it from the redelivery.
    url = worker.settings.database_url
    query(url, "UPDATE jobs SET status = 'processing' WHERE id = $1::uuid", job_id)
    query(
        url,
        "UPDATE job_stages SET state = CASE stage WHEN 'analyze' THEN 'queued' ELSE 'pending'"
        " END WHERE job_id = $1::uuid AND stage IN ('analyze', 'notify')",
        job_id,
    )
    worker.send(Stage.TRANSCRIBE, ChunkReady(job_id, 2, 3, "x.wav", 8.0, 12.0))
    worker.send(Stage.DIARIZE, StageRequested(job_id=job_id, stage="diarize"))
    again = worker.settle(job_id)
    assert len(worker.transcriber.calls) == 3
    assert len(worker.diarize.calls) == 1
    assert again["status"] == "completed"
    assert again["attempts"]["analyze"] == 2
    assert again["result"]["segments"] == job["result"]["segments"]
    assert again["warnings"] == job["warnings"] == []


def test_a_failing_diarize_degrades_the_job_to_a_warning(start: Any) -> None:
    worker = start(
        diarize=FakeDiarize(error=RuntimeError("no speakers today")), DIARIZE_MAX_RETRIES="1"
    )
    job = worker.settle(worker.submit())
    assert job["status"] == "completed"
    assert job["stages"]["diarize"] == "dead"
    assert job["stages"]["analyze"] == "succeeded"
    assert job["warnings"] == ["diarize: failed: no speakers today"]
    assert len(worker.diarize.calls) == 2  # one retry
    assert all(speaker is None for _, speaker in _words(job))


def test_a_failing_transcribe_fails_the_job_and_still_notifies(start: Any) -> None:
    worker = start(FakeTranscriber(error=UndecodableAudio("not speech")))
    job = worker.settle(worker.submit(seconds=4.0))
    assert job["status"] == "failed"
    assert job["error"] == "transcribe failed: not speech"
    assert job["stages"]["transcribe"] == "dead"
    assert job["stages"]["diarize"] == "skipped"
    assert job["stages"]["notify"] == "succeeded"
    assert len(worker.transcriber.calls) == 1  # permanent: no retries
    assert worker.diarize.calls == []


def test_notify_gives_up_on_a_receiver_that_never_answers(start: Any) -> None:
    worker = start(NOTIFY_MAX_RETRIES="1", WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    job = worker.settle(worker.submit(seconds=4.0, webhook_url=url))
    assert job["status"] == "completed"
    assert job["stages"]["notify"] == "dead"
    assert job["attempts"]["notify"] == 2
    rows = query(
        worker.settings.database_url,
        "SELECT state, attempts FROM webhook_deliveries WHERE job_id = $1::uuid",
        job["result"]["id"],
    )
    assert [(r["state"], r["attempts"]) for r in rows] == [("dead", 2)]


def test_a_late_duplicate_of_a_finished_stage_is_ignored(start: Any) -> None:
    worker = start()
    job_id = worker.submit(seconds=4.0)
    before = worker.settle(job_id)
    query(
        worker.settings.database_url,
        "UPDATE job_results SET document = document || '{\"marker\": 1}' WHERE job_id = $1::uuid",
        job_id,
    )
    worker.send(Stage.DIARIZE, StageRequested(job_id=job_id, stage="diarize"))
    worker.send(Stage.ANALYZE, StageRequested(job_id=job_id, stage="analyze"))
    worker.idle()
    after = worker.job(job_id)
    assert after["result"]["marker"] == 1  # nothing rewrote the result
    assert after["stages"] == before["stages"]
    assert len(worker.diarize.calls) == 1


def test_two_notify_messages_of_one_generation_post_the_webhook_once(start: Any) -> None:
    receiver = WebhookReceiver({"/hook": [200]}, delay_s=1.5)
    try:
        worker = start(WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
        job_id = worker.submit(seconds=4.0, webhook_url=receiver.url("/hook"))
        deadline = time.monotonic() + 30
        while not receiver.received["/hook"]:  # the first POST is on its way
            assert time.monotonic() < deadline, worker.job(job_id)
            time.sleep(0.02)
        worker.send(Stage.NOTIFY, StageRequested(job_id=job_id, stage="notify"))
        job = worker.settle(job_id)
    finally:
        receiver.close()
    assert job["stages"]["notify"] == "succeeded"
    assert len(receiver.received["/hook"]) == 1
    rows = query(
        worker.settings.database_url,
        "SELECT state, attempts FROM webhook_deliveries WHERE job_id = $1::uuid",
        job_id,
    )
    assert [(r["state"], r["attempts"]) for r in rows] == [("delivered", 1)]


def test_a_stale_generation_message_after_rediarize_is_dropped(start: Any) -> None:
    diarize = SlowDiarize()
    worker = start(diarize=diarize)
    job_id = worker.submit(seconds=4.0)
    assert worker.settle(job_id)["generation"] == 0
    # Re-diarize, as the API does: a new generation, and its diarize message.
    query(worker.settings.database_url, NEW_GENERATION_FROM_DIARIZE, job_id)
    diarize.delay_s = 2.0
    worker.send(Stage.DIARIZE, StageRequested(job_id=job_id, stage="diarize", generation=1))
    deadline = time.monotonic() + 10
    while worker.job(job_id)["stages"]["diarize"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # A delayed notify retry of generation 0 arrives while generation 1 diarizes.
    worker.send(Stage.NOTIFY, StageRequested(job_id=job_id, stage="notify", generation=0))
    time.sleep(0.5)
    midway = worker.job(job_id)
    assert midway["status"] == "processing", "the stale notify did not finish generation 1"
    assert midway["attempts"]["notify"] == 0
    job = worker.settle(job_id)
    assert job["status"] == "completed"
    assert job["generation"] == 1
    assert len(diarize.calls) == 2
    assert job["stages"]["notify"] == "succeeded"


class SlowDiarize(FakeDiarize):
    delay_s: float = 0.0

    def __call__(self, wav_path: Any, hints: Any, watch: Any = None) -> Any:
        time.sleep(self.delay_s)
        return super().__call__(wav_path, hints)


#: What `POST /v1/jobs/{id}/diarize` does to the job (infra.generations, in SQL).
NEW_GENERATION_FROM_DIARIZE = (
    "WITH g AS (UPDATE jobs SET status = 'processing', finished_at = NULL,"
    " generation = generation + 1 WHERE id = $1::uuid RETURNING id)"
    " UPDATE job_stages SET state = CASE WHEN stage = 'diarize' THEN 'queued' ELSE 'pending'"
    " END, attempts = 0, finished_at = NULL FROM g WHERE job_stages.job_id = g.id"
    " AND stage IN ('diarize', 'analyze', 'notify')"
)
