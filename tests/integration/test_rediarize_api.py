"""`POST /v1/jobs/{id}/diarize` queues diarize again on a completed job (no worker needed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from contracts import StageRequested
from tests.support.audio import wav_bytes
from tests.support.backends import query, wait_for_message
from tests.support.servers import IngestServer, IsolatedEnv

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def ingest(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    server = IngestServer(
        isolated_env.environ(OUTBOX_POLL_INTERVAL_S="0.2"),
        tmp_path_factory.mktemp("logs") / "ingest-rediarize.log",
    )
    yield server
    server.stop()


def completed_job(server: IngestServer, env: IsolatedEnv) -> str:
    """A job that looks like the pipeline finished it (transcript, speakers, warnings)."""
    with server.client() as client:
        job_id = client.post(
            "/v1/jobs",
            files={"file": ("a.wav", wav_bytes(0.2))},
            data={"language": "en", "num_speakers": "3"},
        ).json()["id"]
    jid = uuid.UUID(job_id)
    segment = {"start": 0.0, "end": 1.0, "text": "hello", "speaker": "SPEAKER_00", "words": []}
    document = {
        "id": job_id,
        "status": "completed",
        "language": "en",
        "duration_s": 1.0,
        "text": "hello",
        "segments": [segment],
        "speakers": [{"label": "SPEAKER_00", "talk_time_s": 1.0, "turns": 1}],
        "turns": [{"start": 0.0, "end": 1.0, "speaker": "SPEAKER_00"}],
        "analysis": None,
        "warnings": [],
    }
    query(
        env.database_url,
        "UPDATE jobs SET status = 'completed', finished_at = now(),"
        ' warnings = \'["transcribe: kept", "diarize: old", "analyze: old"]\' WHERE id = $1',
        jid,
    )
    query(
        env.database_url,
        "UPDATE job_stages SET state = 'succeeded', attempts = 1 WHERE job_id = $1",
        jid,
    )
    query(
        env.database_url,
        "INSERT INTO job_results (job_id, document, transcript) VALUES ($1, $2::jsonb, $3::jsonb)",
        jid,
        json.dumps(document),
        json.dumps([segment | {"speaker": None}]),
    )
    return job_id


def test_rediarize_queues_diarize_with_new_hints(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    job_id = completed_job(ingest, isolated_env)
    with ingest.client() as client:
        assert client.get(f"/v1/jobs/{job_id}/result", params={"format": "rttm"}).text.startswith(
            f"SPEAKER {job_id} 1 0.000 1.000 <NA> <NA> SPEAKER_00"
        )
        response = client.post(
            f"/v1/jobs/{job_id}/diarize", json={"min_speakers": 2, "max_speakers": 4}
        )
        assert response.status_code == 202, response.text
        assert response.headers["location"] == f"/v1/jobs/{job_id}"
        view = response.json()
        # Another request while it runs is refused: the job is not completed any more.
        again = client.post(f"/v1/jobs/{job_id}/diarize", json={})
        result = client.get(f"/v1/jobs/{job_id}/result")
    assert view["status"] == "processing"
    assert view["options"]["num_speakers"] is None
    assert (view["options"]["min_speakers"], view["options"]["max_speakers"]) == (2, 4)
    assert view["options"]["language"] == "en"
    assert view["warnings"] == ["transcribe: kept"]
    assert {s["name"]: (s["state"], s["attempts"]) for s in view["stages"]} == {
        "split": ("succeeded", 1),
        "transcribe": ("succeeded", 1),
        "diarize": ("queued", 0),
        "analyze": ("pending", 0),
        "notify": ("pending", 0),
    }
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert result.status_code == 409
    envelope, message = wait_for_message(isolated_env.amqp_url, "diarize", job_id)
    assert envelope["actor_name"] == "diarize"
    assert message == StageRequested(job_id=job_id, stage="diarize", generation=1)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"num_speakers": 0}', 422),
        (b'{"min_speakers": 5, "max_speakers": 2}', 422),
        (b'{"speakers": 2}', 422),
        (b"[2]", 422),
        (b"two speakers", 422),
    ],
)
def test_bad_hints_are_refused(
    ingest: IngestServer, isolated_env: IsolatedEnv, body: bytes, status: int
) -> None:
    job_id = completed_job(ingest, isolated_env)
    with ingest.client() as client:
        response = client.post(
            f"/v1/jobs/{job_id}/diarize", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "completed"


def test_a_job_whose_webhook_is_still_retrying_is_diarized_again_in_a_new_generation(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    job_id = completed_job(ingest, isolated_env)
    jid = uuid.UUID(job_id)
    # Completed, but notify's webhook got a 503 and waits for its next attempt.
    query(
        isolated_env.database_url,
        "UPDATE job_stages SET state = 'running' WHERE job_id = $1 AND stage = 'notify'",
        jid,
    )
    query(
        isolated_env.database_url,
        "INSERT INTO webhook_deliveries (id, job_id, generation, event, url)"
        " VALUES ($1, $2, 0, 'job.completed', 'https://example.org/h')",
        uuid.uuid4(),
        jid,
    )
    with ingest.client() as client:
        accepted = client.post(f"/v1/jobs/{job_id}/diarize", json={"num_speakers": 2})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["status"] == "processing"
    # The new generation's message says which it is, so that workers drop the old
    # notify's retry; the old delivery will not be attempted again and says why.
    [[payload]] = query(
        isolated_env.database_url,
        "SELECT payload FROM outbox WHERE job_id = $1 AND actor = 'diarize'",
        jid,
    )
    assert (json.loads(payload) if isinstance(payload, str) else payload)["generation"] == 1
    [[state, error]] = query(
        isolated_env.database_url,
        "SELECT state, last_error FROM webhook_deliveries WHERE job_id = $1",
        jid,
    )
    assert (state, error) == ("dead", "superseded by generation 1")


def test_only_completed_jobs_can_be_diarized_again(ingest: IngestServer) -> None:
    with ingest.client() as client:
        queued = client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.2))}).json()["id"]
        response = client.post(f"/v1/jobs/{queued}/diarize", json={"num_speakers": 2})
        assert response.status_code == 409
        assert "queued" in response.json()["detail"]
        assert client.post(f"/v1/jobs/{uuid.uuid4()}/diarize", json={}).status_code == 404
        assert client.get(f"/v1/jobs/{queued}/result", params={"format": "rttm"}).status_code == 409


def test_a_late_failure_of_a_duplicate_diarize_keeps_the_speakers(
    ingest: IngestServer, isolated_env: IsolatedEnv, request: pytest.FixtureRequest
) -> None:
    from contracts import Stage  # noqa: PLC0415
    from processing_service.runtime.database import Database  # noqa: PLC0415
    from processing_service.runtime.jobs import JobStore  # noqa: PLC0415

    job_id = completed_job(ingest, isolated_env)
    jid = uuid.UUID(job_id)
    # Still running (analyze next), diarize has succeeded: a duplicate diarize message
    # that now fails for the last time must not undo it.
    query(isolated_env.database_url, "UPDATE jobs SET status = 'processing' WHERE id = $1", jid)
    database = Database(isolated_env.database_url)
    request.addfinalizer(database.close)  # its pool must not outlive the test database
    store = JobStore(database)

    def speakers() -> object:
        return query(
            isolated_env.database_url,
            "SELECT document->'speakers' FROM job_results WHERE job_id = $1",
            jid,
        )[0][0]

    before = speakers()
    assert store.degrade(job_id, Stage.DIARIZE, "late", "diarize: failed: late") is None
    assert speakers() == before != "[]"
    job = store.load_job(job_id)
    assert job is not None
    assert job.stages[Stage.DIARIZE].value == "succeeded"

    # The same failure while diarize has not succeeded is a real one.
    query(
        isolated_env.database_url,
        "UPDATE job_stages SET state = 'running' WHERE job_id = $1 AND stage = 'diarize'",
        jid,
    )
    assert store.degrade(job_id, Stage.DIARIZE, "boom", "diarize: failed: boom") is not None
    assert speakers() == "[]"
    job = store.load_job(job_id)
    assert job is not None
    assert job.stages[Stage.DIARIZE].value == "dead"
    warnings = query(isolated_env.database_url, "SELECT warnings FROM jobs WHERE id = $1", jid)
    assert "diarize: failed: boom" in warnings[0][0]
