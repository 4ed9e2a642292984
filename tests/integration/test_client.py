"""The Python client against the real API (no workers: jobs stay queued).

Typed answers, problems as ApiError, retries that honour Retry-After while Postgres is
away, and a submit whose answer was lost on the way back, retried into the same job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from audio_client import ApiError, Client, RetryPolicy
from audio_client.client import RESULT_FORMATS
from contracts import JobOptions
from contracts.api import JobAccepted, JobView
from ingest_service.renderers import RENDERERS
from tests.support.audio import wav_bytes
from tests.support.backends import query
from tests.support.servers import IngestServer, IsolatedEnv
from tests.support.tcp_proxy import TcpProxy

API_KEY = "client-test-key"


@pytest.fixture(scope="module")
def ingest(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    server = IngestServer(
        isolated_env.environ(INGEST_API_KEYS=f"{API_KEY},other-key"),
        tmp_path_factory.mktemp("logs") / "ingest-client.log",
    )
    yield server
    server.stop()


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes(0.5))
    return path


def job_count(env: IsolatedEnv) -> int:
    return int(query(env.database_url, "SELECT count(*) FROM jobs")[0][0])


class Sleeps:
    """A `sleep` that records what it was asked to wait (and waits it)."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        time.sleep(seconds)


def test_submit_read_and_steer_a_job_with_typed_answers(
    ingest: IngestServer, audio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIO_PIPELINE_API_KEY", API_KEY)
    options = JobOptions(language="en", max_speakers=3, vocabulary=["Zorblax"], metadata={"a": 1})
    with Client(ingest.url) as client:
        accepted = client.submit(audio, options)
        assert isinstance(accepted, JobAccepted)
        assert accepted.status == "queued"
        assert accepted.filename == "tone.wav"
        assert accepted.options == options

        job = client.job(accepted.id)
        assert isinstance(job, JobView)
        assert job.status == "queued"
        assert next(s.name for s in job.stages or []) == "split"
        assert accepted.id in [j.id for j in client.jobs(status="queued").items]

        with pytest.raises(ApiError) as not_ready:
            client.result(accepted.id)
        assert not_ready.value.status == 409
        assert not_ready.value.problem.extensions.get("job_status") == "queued"

        cancelled = client.cancel(accepted.id)
        assert cancelled.status == "cancelled"
        events = list(client.events(accepted.id, timeout_s=30))
        assert [e.name for e in events][-1] == "end"
        assert events[-1].update.status == "cancelled"
        with pytest.raises(ApiError) as ended:
            client.cancel(accepted.id)
        assert ended.value.status == 409

        client.delete(accepted.id)
        with pytest.raises(ApiError) as gone:
            client.job(accepted.id)
        assert gone.value.status == 404
        assert gone.value.problem.type.endswith("job-not-found")


def test_the_api_key_comes_from_the_environment_and_isolates_jobs(
    ingest: IngestServer, audio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDIO_PIPELINE_API_KEY", raising=False)
    with Client(ingest.url) as anonymous, pytest.raises(ApiError) as refused:
        anonymous.submit(audio)
    assert refused.value.status == 401

    monkeypatch.setenv("AUDIO_PIPELINE_API_KEY", API_KEY)
    with Client(ingest.url) as mine, Client(ingest.url, api_key="other-key") as other:
        job_id = mine.submit(audio).id
        with pytest.raises(ApiError) as hidden:
            other.job(job_id)
        assert hidden.value.status == 404
        assert mine.job(job_id).id == job_id


def test_a_submit_whose_answer_was_lost_is_retried_into_the_same_job(
    ingest: IngestServer, isolated_env: IsolatedEnv, audio: Path
) -> None:
    proxy = TcpProxy(("127.0.0.1", ingest.port), lose_answers=1)
    proxy.open()
    before = job_count(isolated_env)
    sleeps = Sleeps()
    try:
        with Client(
            f"http://127.0.0.1:{proxy.port}",
            API_KEY,
            retry=RetryPolicy(backoff_s=0.1),
            sleep=sleeps,
        ) as client:
            accepted = client.submit(audio)
            assert client.job(accepted.id).status == "queued"
    finally:
        proxy.close()
    assert proxy.lose_answers == 0, "the first answer was not lost: the test proves nothing"
    assert len(sleeps.asked) == 1
    # The first attempt made the job; the retry, with the same key, got it back.
    assert job_count(isolated_env) == before + 1


def test_a_503_is_retried_after_what_retry_after_asks(
    isolated_env: IsolatedEnv, audio: Path, tmp_path: Path
) -> None:
    parts = urlsplit(isolated_env.database_url)
    postgres = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    via_proxy = urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{postgres.port}"))
    postgres.open()
    server = IngestServer(
        isolated_env.environ(DATABASE_URL=via_proxy, STORAGE_DIR=str(tmp_path / "storage")),
        tmp_path / "ingest.log",
    )
    sleeps = Sleeps()
    try:
        postgres.close()
        back = threading.Timer(2.0, postgres.open)
        back.start()
        with Client(server.url, sleep=sleeps) as client:
            accepted = client.submit(audio)
            assert client.job(accepted.id).status == "queued"
        back.join()
    finally:
        server.stop()
        postgres.close()
    # The API asks for 5 s while its database is away; the client waited that, once.
    assert sleeps.asked[0] == 5.0
    assert len(sleeps.asked) == 1


def test_rendered_formats_are_the_apis() -> None:
    assert set(RESULT_FORMATS) == {"json", *RENDERERS}
