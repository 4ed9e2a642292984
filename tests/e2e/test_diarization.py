"""Speakers end to end: pyannote.audio on generated conversations, merged into the transcript."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import start_worker
from tests.support.diarization_audio import Conversation, conversation
from tests.support.isolation import isolated
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv, Worker

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def worker(isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(isolated_env, tmp_path_factory.mktemp("logs") / "worker-diarize.log")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    return conversation(Path(tmp_path_factory.mktemp("conversation")), 2, seed=3)


def majority_speakers(
    result: dict[str, Any], reference: Conversation
) -> list[tuple[str, str | None, float]]:
    """For each reference turn: (true speaker, the label most of its words got, share)."""
    words = [w for s in result["segments"] for w in s["words"]]
    rows = []
    for turn in reference.turns:
        labels = Counter(
            w["speaker"] for w in words if turn.start <= (w["start"] + w["end"]) / 2 < turn.end
        )
        if labels:
            label, count = labels.most_common(1)[0]
            rows.append((turn.speaker, label, count / sum(labels.values())))
    return rows


def test_each_turn_of_a_two_voice_conversation_is_attributed_to_its_speaker(
    ingest: IngestServer, worker: Worker, two_voices: Conversation
) -> None:
    with ingest.client() as client:
        job_id = upload(client, two_voices.wav, language="en")
        job = wait_for_job(client, job_id)
        result = client.get(f"/v1/jobs/{job_id}/result").json()
        rttm = client.get(f"/v1/jobs/{job_id}/result", params={"format": "rttm"}).text
        srt = client.get(f"/v1/jobs/{job_id}/result", params={"format": "srt"}).text
    assert job["status"] == "completed", job
    assert stage(job, "diarize")["state"] == "succeeded"
    assert not [w for w in job["warnings"] if w.startswith("diarize")]
    assert [s["label"] for s in result["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    assert all(s["talk_time_s"] > 3 and s["turns"] >= 2 for s in result["speakers"])

    rows = majority_speakers(result, two_voices)
    # Whisper may drop a short turn altogether (seen once in a clean-clone run); every
    # turn that has words must be attributed right, and all but one must have words.
    assert len(rows) >= len(two_voices.turns) - 1
    mapping = {true: label for true, label, _ in rows}
    # One label per true speaker, different labels for different speakers, every turn agreeing.
    assert len(set(mapping.values())) == 2
    assert all(mapping[true] == label for true, label, _ in rows), rows
    assert min(share for _, _, share in rows) >= 0.8, rows
    # Labels follow first appearance.
    assert mapping[two_voices.speakers[0]] == "SPEAKER_00"

    lines = rttm.strip().splitlines()
    assert len(lines) == len(result["turns"])
    assert all(line.startswith(f"SPEAKER {job_id} 1 ") for line in lines)
    assert "[SPEAKER_00]" in srt
    assert "[SPEAKER_01]" in srt


def test_rediarizing_with_one_speaker_replaces_the_attribution(
    ingest: IngestServer, worker: Worker, two_voices: Conversation
) -> None:
    with ingest.client() as client:
        job_id = upload(client, two_voices.wav, language="en")
        # Completed, and notified: a job can be diarized again once its notify has run.
        first = wait_for_job(
            client, job_id, lambda job: stage(job, "notify")["state"] in {"succeeded", "failed"}
        )
        text = client.get(f"/v1/jobs/{job_id}/result").json()["text"]
        response = client.post(f"/v1/jobs/{job_id}/diarize", json={"num_speakers": 1})
        assert response.status_code == 202, response.text
        again = wait_for_job(client, job_id)
        result = client.get(f"/v1/jobs/{job_id}/result").json()
    assert first["status"] == again["status"] == "completed"
    assert again["options"]["num_speakers"] == 1
    assert [s["label"] for s in result["speakers"]] == ["SPEAKER_00"]
    assert {s["speaker"] for s in result["segments"]} == {"SPEAKER_00"}
    assert result["text"] == text  # the transcript was not redone


@pytest.fixture(scope="module")
def failing_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedEnv]:
    with isolated(Path(tmp_path_factory.mktemp("failing-storage"))) as env:
        yield env


def test_a_failed_diarization_leaves_a_completed_job_with_its_transcript(
    failing_env: IsolatedEnv, tmp_path: Path, two_voices: Conversation
) -> None:
    server = IngestServer(
        failing_env.environ(OUTBOX_POLL_INTERVAL_S="0.2"), tmp_path / "ingest.log"
    )
    # A pipeline that cannot load: the real failure path of a broken model.
    broken = start_worker(
        failing_env,
        tmp_path / "worker.log",
        DIARIZATION_PIPELINE=str(tmp_path / "no-such-pipeline.yaml"),
        DIARIZE_MAX_RETRIES="0",
    )
    try:
        with server.client() as client:
            job_id = upload(client, two_voices.wav, language="en")
            job = wait_for_job(client, job_id)
            result = client.get(f"/v1/jobs/{job_id}/result").json()
    finally:
        broken.stop()
        server.stop()
    assert job["status"] == "completed", job
    assert stage(job, "diarize")["state"] == "dead"
    assert stage(job, "analyze")["state"] == "succeeded"
    assert any(w.startswith("diarize: failed") for w in job["warnings"]), job["warnings"]
    assert result["text"]
    assert result["speakers"] == []
    assert {s["speaker"] for s in result["segments"]} == {None}
    assert result["warnings"] == job["warnings"]


def test_a_recording_over_the_diarization_limit_completes_without_speakers_at_once(
    failing_env: IsolatedEnv, tmp_path: Path, two_voices: Conversation
) -> None:
    server = IngestServer(
        failing_env.environ(OUTBOX_POLL_INTERVAL_S="0.2"), tmp_path / "ingest.log"
    )
    # The limit is under the clip's length; the pipeline spec would fail if it were loaded.
    limited = start_worker(
        failing_env,
        tmp_path / "worker.log",
        DIARIZATION_MAX_DURATION_S="5",
        DIARIZATION_PIPELINE=str(tmp_path / "never-loaded.yaml"),
    )
    try:
        with server.client() as client:
            job_id = upload(client, two_voices.wav, language="en")
            job = wait_for_job(client, job_id)
            result = client.get(f"/v1/jobs/{job_id}/result").json()
    finally:
        limited.stop()
        server.stop()
    assert job["status"] == "completed", job
    diarize = stage(job, "diarize")
    assert diarize["state"] == "skipped"
    assert diarize["attempts"] == 0  # no model load, no retries
    assert stage(job, "analyze")["state"] == "succeeded"
    [warning] = [w for w in job["warnings"] if w.startswith("diarize:")]
    assert warning.startswith("diarize: skipped: the recording lasts")
    assert "DIARIZATION_MAX_DURATION_S (5 s)" in warning
    assert result["text"]
    assert result["speakers"] == []
    assert {s["speaker"] for s in result["segments"]} == {None}
