"""The job state machine in process: stages, fan-in, redelivery, degrade vs fail, give-up.

Runs in seconds without model weights: Dramatiq's StubBroker and a stub worker, the
real Postgres and RabbitMQ (for events) of this run, real ffmpeg, fake model adapters.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import ChunkReady, JobSubmitted, Message, Stage, StageRequested
from processing_service.runtime.errors import UndecodableAudio
from tests.statemachine.harness import (
    FakeDiarize,
    FakeTranscriber,
    InProcessWorker,
    in_process_worker,
)
from tests.support.backends import query
from tests.support.job_events import bind_events_queue, consume
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
    # Put the job back to "diarized, analyze queued" and deliver a chunk, then diarize,
    # again, as a broker does after a lost ack: done work is not repeated, and the stage
    # still waiting for its message (analyze) gets it from either redelivery.
    url = worker.settings.database_url
    redelivered: list[Message] = [
        ChunkReady(job_id, 2, 3, "x.wav", 8.0, 12.0),
        StageRequested(job_id=job_id, stage="diarize"),
    ]
    for attempt, message in enumerate(redelivered, start=2):
        query(url, "UPDATE jobs SET status = 'processing' WHERE id = $1::uuid", job_id)
        query(
            url,
            "UPDATE job_stages SET state = CASE stage WHEN 'analyze' THEN 'queued'"
            " ELSE 'pending' END WHERE job_id = $1::uuid AND stage IN ('analyze', 'notify')",
            job_id,
        )
        worker.send(Stage(message.stage) if isinstance(message, StageRequested)
                    else Stage.TRANSCRIBE, message)  # fmt: skip
        again = worker.settle(job_id)
        assert again["status"] == "completed"
        assert again["attempts"]["analyze"] == attempt
        assert again["result"]["segments"] == job["result"]["segments"]
        assert again["warnings"] == job["warnings"] == []
    assert len(worker.transcriber.calls) == 3
    assert len(worker.diarize.calls) == 1


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
    # Diarization ran alongside, or was dropped with the failed job: it did not finish it.
    assert not (job["result"] or {}).get("speakers")


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
    diarize = FakeDiarize()
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


#: What `POST /v1/jobs/{id}/diarize` does to the job (infra.generations, in SQL).
NEW_GENERATION_FROM_DIARIZE = (
    "WITH g AS (UPDATE jobs SET status = 'processing', finished_at = NULL,"
    " generation = generation + 1 WHERE id = $1::uuid RETURNING id)"
    " UPDATE job_stages SET state = CASE WHEN stage = 'diarize' THEN 'queued' ELSE 'pending'"
    " END, attempts = 0, finished_at = NULL FROM g WHERE job_stages.job_id = g.id"
    " AND stage IN ('diarize', 'analyze', 'notify')"
)


def _stage_times(worker: InProcessWorker, job_id: str) -> dict[str, Any]:
    rows = query(
        worker.settings.database_url,
        "SELECT stage, started_at, finished_at FROM job_stages WHERE job_id = $1::uuid",
        job_id,
    )
    return {r["stage"]: (r["started_at"], r["finished_at"]) for r in rows}


def test_diarization_runs_alongside_transcription_and_joins_when_both_are_done(
    start: Any,
) -> None:
    # The transcript takes 1.5 s; the speakers are found meanwhile and wait for it.
    worker = start(FakeTranscriber(delays={0.0: 1.5}))
    events = bind_events_queue(worker.settings.amqp_url, f"alongside-{uuid.uuid4()}")
    job_id = worker.submit(seconds=4.0)
    job = worker.settle(job_id)
    assert job["status"] == "completed", job
    assert set(job["stages"].values()) == {"succeeded"}
    assert _words(job) == [("word0", "SPEAKER_00")]
    linked_before_transcript = query(
        worker.settings.database_url,
        "SELECT t.created_at < s.finished_at FROM job_speaker_turns t"
        " JOIN job_stages s ON s.job_id = t.job_id AND s.stage = 'transcribe'"
        " WHERE t.job_id = $1::uuid",
        job_id,
    )
    assert linked_before_transcript == [(True,)]
    times = _stage_times(worker, job_id)
    assert times["diarize"][0] < times["transcribe"][1], "diarize started after the transcript"
    assert times["analyze"][0] >= times["diarize"][1]
    # Diarize was completed by the transcript's fan-in: its event went out all the same.
    keys = [key for key, _, _ in consume(worker.settings.amqp_url, events, job_id, want=6)]
    assert sorted(keys) == sorted(
        ["job.completed", *(f"job.stage.{s}" for s in ("split", "transcribe", "diarize",
                                                         "analyze", "notify"))]
    )  # fmt: skip


def test_a_diarization_that_gives_up_before_the_transcript_leaves_analysis_to_wait(
    start: Any,
) -> None:
    worker = start(
        FakeTranscriber(delays={0.0: 1.5}),
        FakeDiarize(error=UndecodableAudio("no voices")),
    )
    job_id = worker.submit(seconds=4.0)
    job = worker.settle(job_id)
    assert job["status"] == "completed", job
    assert job["stages"]["diarize"] == "dead"
    assert job["warnings"] == ["diarize: failed: no voices"]
    # Analysis ran once, on the transcript, after it was there.
    assert job["stages"]["analyze"] == "succeeded"
    assert job["attempts"]["analyze"] == 1
    times = _stage_times(worker, job_id)
    assert times["diarize"][1] < times["transcribe"][1]
    assert times["analyze"][0] >= times["transcribe"][1]
    assert _words(job) == [("word0", None)]


def test_a_long_recording_is_diarized_in_blocks_sent_as_messages_and_linked(start: Any) -> None:
    # 150 s in blocks of at most 60 s: three blocks, each labelling the two voices its
    # own way; only their centroids tell which voice is which across blocks.
    worker = start(
        DIARIZATION_BLOCK_S="60", SPLIT_THRESHOLD_S="60", CHUNK_S="30", CHUNK_OVERLAP_S="1"
    )
    job_id = worker.submit(seconds=150.0, max_speakers=3)
    job = worker.settle(job_id)
    assert job["status"] == "completed", job
    assert set(job["stages"].values()) == {"succeeded"}
    spans = sorted(worker.diarize.spans)
    assert len(spans) == 3
    assert spans[0][0] == 0.0
    assert spans[-1][1] == 150.0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    # A block may hear fewer voices than the recording: only the cap goes to each.
    assert {h.max_speakers for h in worker.diarize.calls} == {3}
    assert {h.min_speakers for h in worker.diarize.calls} == {None}
    words = [w for s in job["result"]["segments"] for w in s["words"]]
    assert len(words) >= 5
    for word in words:
        voice = int(word["start"] // 4) % 2  # the fake's voices alternate every 4 s
        assert word["speaker"] == f"SPEAKER_0{voice}", word
    assert [s["label"] for s in job["result"]["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    blocks = query(
        worker.settings.database_url,
        "SELECT count(*), bool_and(result IS NOT NULL), max(attempts) FROM job_speaker_blocks"
        " WHERE job_id = $1::uuid",
        job_id,
    )
    assert tuple(blocks[0]) == (3, True, 1)
