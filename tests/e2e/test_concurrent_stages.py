"""Two heavy processes: diarization runs alongside transcription, in blocks sent as
messages, and the speakers join the transcript when both are done (real models)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import start_worker
from tests.e2e.test_diarization import majority_speakers
from tests.support.backends import query
from tests.support.diarization_audio import Conversation, long_conversation
from tests.support.isolation import isolated
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def eighty_seconds(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    out = Path(tmp_path_factory.mktemp("eighty-seconds")) / "two-voices.wav"
    return long_conversation(out, 80, num_speakers=2, seed=5, pool_size=6)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[IsolatedEnv]:
    with isolated(tmp_path / "storage") as isolated_env:
        yield isolated_env


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.timeout(600)  # two heavy processes load both models on two cores
def test_two_heavy_processes_diarize_in_blocks_while_transcribing(
    env: IsolatedEnv, tmp_path: Path, eighty_seconds: Conversation
) -> None:
    server = IngestServer(env.environ(OUTBOX_POLL_INTERVAL_S="0.2"), tmp_path / "ingest.log")
    worker = start_worker(
        env,
        tmp_path / "worker.log",
        HEAVY_PROCESSES="2",
        TORCH_THREADS="1",
        SPLIT_THRESHOLD_S="60",
        CHUNK_S="45",
        DIARIZATION_BLOCK_S="60",
    )
    try:
        with server.client() as client:
            job_id = upload(client, eighty_seconds.wav, language="en")
            job = wait_for_job(client, job_id, timeout_s=600)
            result = client.get(f"/v1/jobs/{job_id}/result").json()
    finally:
        worker.stop()
        server.stop()
    assert job["status"] == "completed", job
    assert not job["warnings"]
    transcribe, diarize = stage(job, "transcribe"), stage(job, "diarize")
    assert _at(diarize["started_at"]) < _at(transcribe["finished_at"]), (diarize, transcribe)
    blocks = query(
        env.database_url,
        "SELECT count(*), bool_and(result IS NOT NULL) FROM job_speaker_blocks"
        " WHERE job_id = $1::uuid",
        job_id,
    )
    assert tuple(blocks[0]) == (2, True)  # 80 s in blocks of at most 60 s
    # The blocks' speakers were linked: two voices, each turn given to its own.
    assert [s["label"] for s in result["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    rows = majority_speakers(result, eighty_seconds)
    assert len(rows) >= 0.9 * len(eighty_seconds.turns)
    votes: dict[str, Counter[str | None]] = {}
    for true, label, _ in rows:
        votes.setdefault(true, Counter())[label] += 1
    mapping = {true: counter.most_common(1)[0][0] for true, counter in votes.items()}
    assert len(set(mapping.values())) == 2, votes  # each voice its own label
    agreeing = sum(1 for true, label, _ in rows if mapping[true] == label)
    assert agreeing >= 0.85 * len(rows), rows
