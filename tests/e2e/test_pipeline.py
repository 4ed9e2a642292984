"""Upload → split → transcribe → (not yet: diarize, analyze, notify) → result."""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LONG_PARTS, SHORT_TEXT, start_worker
from tests.support.audio import undecodable_wav
from tests.support.backends import query
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv, Worker
from tests.support.speech import concatenate, speak
from tests.support.wer import word_error_rate

pytestmark = pytest.mark.models

#: tiny.en on espeak-ng speech: measured 0.00-0.05 on the short text and about 0.05 on
#: the long one; the bounds leave room for CPU-dependent decoding differences.
MAX_WER_SHORT = 0.15
MAX_WER_LONG = 0.20


@pytest.fixture(scope="module")
def worker(isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(isolated_env, tmp_path_factory.mktemp("logs") / "worker.log")
    yield w
    w.stop()


def test_speech_is_transcribed_and_rendered(
    ingest: IngestServer, worker: Worker, short_speech: Path
) -> None:
    with ingest.client() as client:
        job_id = upload(client, short_speech, language="en")
        job = wait_for_job(client, job_id)
        assert job["status"] == "completed", job
        assert {s["name"]: s["state"] for s in job["stages"]} == {
            "split": "succeeded",
            "transcribe": "succeeded",
            "diarize": "succeeded",
            "analyze": "succeeded",
            "notify": "succeeded",
        }
        assert job["progress"] == 1.0
        assert job["audio"]["chunks"] == 1
        assert job["audio"]["sample_rate"] == 22050
        # The stages that are not built yet say so; nothing passes silently.

        result = client.get(f"/v1/jobs/{job_id}/result").json()
        txt = client.get(f"/v1/jobs/{job_id}/result", params={"format": "txt"})
        srt = client.get(f"/v1/jobs/{job_id}/result", params={"format": "srt"})
        vtt = client.get(f"/v1/jobs/{job_id}/result", params={"format": "vtt"})
        bad = client.get(f"/v1/jobs/{job_id}/result", params={"format": "docx"})

    wer = word_error_rate(SHORT_TEXT, result["text"])
    assert wer <= MAX_WER_SHORT, (wer, result["text"])
    assert result["status"] == "completed"
    assert result["language"] == "en"
    assert result["duration_s"] == pytest.approx(job["audio"]["duration_s"])
    assert [s["label"] for s in result["speakers"]] == ["SPEAKER_00"]
    assert result["analysis"]["summary"]
    words = [w for s in result["segments"] for w in s["words"]]
    assert len(words) >= 15
    assert {s["speaker"] for s in result["segments"]} == {"SPEAKER_00"}
    assert all(0 <= w["start"] <= w["end"] <= result["duration_s"] + 0.5 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)

    assert txt.headers["content-type"].startswith("text/plain")
    lines = txt.text.splitlines()
    assert all(line.startswith("SPEAKER_00: ") for line in lines)
    spoken = " ".join(line.removeprefix("SPEAKER_00: ") for line in lines)
    assert word_error_rate(SHORT_TEXT, spoken) == pytest.approx(wer)
    cue = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)$")
    blocks = srt.text.strip().split("\n\n")
    assert len(blocks) == len(result["segments"])
    for number, block in enumerate(blocks, start=1):
        match = cue.match(block)
        assert match, block
        assert int(match[1]) == number
        assert match[2] <= match[3]
    assert vtt.text.startswith("WEBVTT\n\n")
    assert len(
        re.findall(r"^\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d$", vtt.text, re.M)
    ) == len(blocks)
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"


def test_a_long_recording_is_chunked_and_stitched(
    ingest: IngestServer, worker: Worker, long_speech: Path, isolated_env: IsolatedEnv
) -> None:
    with ingest.client() as client:
        job_id = upload(client, long_speech)
        job = wait_for_job(client, job_id)
        result = client.get(f"/v1/jobs/{job_id}/result").json()
    assert job["status"] == "completed", job
    assert job["audio"]["chunks"] >= 3
    reference = " ".join(LONG_PARTS)
    wer = word_error_rate(reference, result["text"])
    assert wer <= MAX_WER_LONG, (wer, result["text"])
    words = [w for s in result["segments"] for w in s["words"]]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts), "stitched words go back in time"
    # No word is said twice at a chunk boundary: consecutive duplicates would show here.
    texts = [w["word"].strip().lower() for w in words]
    assert not [a for a, b in itertools.pairwise(texts) if a == b]
    assert result["duration_s"] == pytest.approx(job["audio"]["duration_s"])
    assert result["duration_s"] > 30
    # Chunk files are removed once stitched; the normalized audio stays for later stages.
    work = isolated_env.storage_dir / "work" / job_id
    assert sorted(p.name for p in work.iterdir()) == ["audio.wav"]


def test_undecodable_audio_fails_fast_with_a_clear_reason(
    ingest: IngestServer, worker: Worker, isolated_env: IsolatedEnv
) -> None:
    junk = undecodable_wav()
    with ingest.client() as client:
        response = client.post("/v1/jobs", files={"file": ("broken.wav", junk, "audio/wav")})
        assert response.status_code == 202
        job_id = response.json()["id"]
        job = wait_for_job(client, job_id, timeout_s=60)
        result = client.get(f"/v1/jobs/{job_id}/result")
    assert job["status"] == "failed"
    assert "split failed" in job["error"]
    assert "could not be read as audio" in job["error"]
    split = stage(job, "split")
    assert split["state"] == "dead"
    assert split["attempts"] == 1  # permanent: no retries
    assert stage(job, "transcribe")["state"] == "skipped"
    assert result.status_code == 409
    assert "could not be read as audio" in result.json()["detail"]
    rows = query(
        isolated_env.database_url,
        "SELECT count(*) FROM job_results WHERE job_id = $1::uuid",
        job_id,
    )
    assert rows[0][0] == 0


def test_a_silent_recording_completes_with_no_words(
    ingest: IngestServer, worker: Worker, tmp_path: Path
) -> None:
    # A muted microphone: no speech, no words, and still a completed job whose every
    # format renders (tests/integration/test_speech_gate.py shows what the gate keeps out).
    silent = tmp_path / "muted.wav"
    sox = ["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(silent), "trim", "0", "60"]
    subprocess.run(sox, check=True, capture_output=True, timeout=60)
    with ingest.client() as client:
        job_id = upload(client, silent, language="en")
        job = wait_for_job(client, job_id)
        result = client.get(f"/v1/jobs/{job_id}/result").json()
        formats = {f: client.get(f"/v1/jobs/{job_id}/result", params={"format": f})
                   for f in ("txt", "srt", "vtt")}  # fmt: skip
    assert job["status"] == "completed", job
    assert stage(job, "transcribe")["state"] == "succeeded"
    assert result["segments"] == []
    assert result["text"].strip() == ""
    assert all(r.status_code == 200 for r in formats.values()), formats


MEETING = [
    "Let's start the planning meeting.",
    "I will send the revised budget to the finance team by Friday.",
    "We decided to postpone the product launch until May.",
    "Maria, can you update the customer list before Monday?",
    "The weather has been nice this week.",
    "We agreed to hire a new designer next quarter.",
    "I'll schedule the design review for next Tuesday.",
]
COMMITMENTS = ["revised budget", "customer list", "design review"]
DECISIONS = ["product launch", "new designer"]


def test_a_spoken_meeting_yields_its_commitments_and_decisions(
    ingest: IngestServer, worker: Worker, speech_dir: Path
) -> None:
    parts = [speak(text, speech_dir / f"meeting{i}.wav") for i, text in enumerate(MEETING)]
    meeting = concatenate(parts, speech_dir / "meeting.wav", gap_s=0.7)
    with ingest.client() as client:
        job_id = upload(client, meeting, language="en")
        job = wait_for_job(client, job_id)
        result = client.get(f"/v1/jobs/{job_id}/result").json()
    assert job["status"] == "completed", job
    notes = result["analysis"]
    items = " | ".join(item["text"].lower() for item in notes["action_items"])
    decisions = " | ".join(d["text"].lower() for d in notes["decisions"])
    found_items = [c for c in COMMITMENTS if c in items]
    found_decisions = [d for d in DECISIONS if d in decisions]
    # Whisper may garble a word; two of three commitments and one of two decisions is the floor.
    assert len(found_items) >= 2, notes
    assert len(found_decisions) >= 1, notes
    assert "weather" not in items
    assert any(item["due"] for item in notes["action_items"])
    assert notes["keywords"]
