"""A job end to end on the ctranslate2 engine (TRANSCRIBE_ENGINE=ctranslate2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SHORT_TEXT, start_worker
from tests.support.jobs import upload, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv, Worker
from tests.support.wer import word_error_rate

pytest.importorskip("faster_whisper")

pytestmark = pytest.mark.models

#: tiny.en on the short espeak-ng text, as in test_pipeline (the same words either engine).
MAX_WER = 0.15


def _loaded_libraries(pid: int) -> str:
    """The shared libraries mapped by `pid` and its descendants (the pools' processes)."""
    maps = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            maps.append(_loaded_libraries(int(child)))
    maps.append(Path(f"/proc/{pid}/maps").read_text())
    return "".join(maps)


@pytest.fixture(scope="module")
def worker(isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(
        isolated_env,
        tmp_path_factory.mktemp("logs") / "worker-ctranslate2.log",
        TRANSCRIBE_ENGINE="ctranslate2",
    )
    yield w
    w.stop()


def test_a_job_is_transcribed_by_ctranslate2(
    ingest: IngestServer, worker: Worker, short_speech: Path
) -> None:
    with ingest.client() as client:
        job_id = upload(client, short_speech, language="en")
        job = wait_for_job(client, job_id)
        assert job["status"] == "completed", job
        result = client.get(f"/v1/jobs/{job_id}/result").json()
    assert word_error_rate(SHORT_TEXT, result["text"]) <= MAX_WER, result["text"]
    words = [w for s in result["segments"] for w in s["words"]]
    assert len(words) >= 15
    assert all(0 <= w["start"] <= w["end"] <= result["duration_s"] + 0.5 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    # CTranslate2 ran it: a worker on the openai-whisper engine never loads it.
    loaded = "libctranslate2" in _loaded_libraries(worker.process.pid)
    assert loaded, "the worker did not load CTranslate2"
