"""The ingest API as a real process against the real Postgres and RabbitMQ."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from contracts import JobSubmitted
from contracts.routing import SUBMIT_ACTOR, SUBMIT_QUEUE
from tests.support.audio import wav_bytes
from tests.support.backends import query, wait_for_message
from tests.support.jobs import stored_uploads
from tests.support.servers import IngestServer, IsolatedEnv

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def ingest(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    log = tmp_path_factory.mktemp("logs") / "ingest.log"
    server = IngestServer(isolated_env.environ(OUTBOX_POLL_INTERVAL_S="0.2"), log)
    yield server
    server.stop()


def job_count(env: IsolatedEnv) -> int:
    return int(query(env.database_url, "SELECT count(*) FROM jobs")[0][0])


def stored_files(env: IsolatedEnv) -> list[str]:
    return stored_uploads(env.storage_dir)


def test_accepted_upload_is_recorded_stored_and_published(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    audio = wav_bytes(1.0)
    with ingest.client() as client:
        response = client.post(
            "/v1/jobs",
            files={"file": ("meeting notes.wav", audio, "audio/wav")},
            data={
                "language": "en",
                "min_speakers": "2",
                "max_speakers": "3",
                "metadata": json.dumps({"team": "infra", "n": 1}),
                "webhook_url": "https://example.org/hook",
            },
        )
    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["id"]
    assert body["status"] == "queued"
    assert response.headers["location"] == f"/v1/jobs/{job_id}"
    assert body["sha256"] == hashlib.sha256(audio).hexdigest()
    assert body["webhook_secret"].startswith("whsec_")

    row = query(isolated_env.database_url, "SELECT * FROM jobs WHERE id = $1", uuid.UUID(job_id))[0]
    assert row["status"] == "queued"
    assert row["size_bytes"] == len(audio)
    assert row["original_filename"] == "meeting notes.wav"
    assert row["webhook_secret"] == body["webhook_secret"]
    stages = query(
        isolated_env.database_url,
        "SELECT stage, state FROM job_stages WHERE job_id = $1 ORDER BY position",
        uuid.UUID(job_id),
    )
    assert [tuple(s) for s in stages] == [
        ("split", "queued"),
        ("transcribe", "pending"),
        ("diarize", "pending"),
        ("analyze", "pending"),
        ("notify", "pending"),
    ]

    # The stored name comes from the job id, never from the client's file name.
    stored = isolated_env.storage_dir / row["storage_path"]
    assert stored.name == f"{job_id}.wav"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == body["sha256"]

    envelope, message = wait_for_message(isolated_env.amqp_url, SUBMIT_QUEUE, job_id)
    assert isinstance(message, JobSubmitted)
    assert envelope["actor_name"] == SUBMIT_ACTOR
    assert message.storage_path == row["storage_path"]
    assert message.sha256 == body["sha256"]
    assert message.size_bytes == len(audio)
    assert message.options.language == "en"
    assert (message.options.min_speakers, message.options.max_speakers) == (2, 3)
    assert message.options.metadata == {"team": "infra", "n": 1}
    assert message.options.webhook_url == "https://example.org/hook"
    # The relay stamps the row in the transaction that locked it, once RabbitMQ confirmed.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        published = query(
            isolated_env.database_url,
            "SELECT published_at FROM outbox WHERE job_id = $1",
            uuid.UUID(job_id),
        )
        if published[0]["published_at"] is not None:
            break
        time.sleep(0.05)
    assert published[0]["published_at"] is not None


def test_raw_body_upload_takes_options_from_the_query(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    audio = wav_bytes(0.5)
    with ingest.client() as client:
        response = client.post(
            "/v1/jobs",
            params={"filename": "call.wav", "num_speakers": "2"},
            content=iter([audio[:1000], audio[1000:]]),
            headers={"Content-Type": "audio/wav"},
        )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["filename"] == "call.wav"
    assert body["options"]["num_speakers"] == 2
    assert body["sha256"] == hashlib.sha256(audio).hexdigest()
    _, message = wait_for_message(isolated_env.amqp_url, SUBMIT_QUEUE, body["id"])
    assert message.options.num_speakers == 2


def test_job_status_and_result_before_processing(ingest: IngestServer) -> None:
    with ingest.client() as client:
        job_id = client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.2))}).json()["id"]
        job = client.get(f"/v1/jobs/{job_id}")
        assert job.status_code == 200
        view = job.json()
        assert view["status"] == "queued"
        assert view["progress"] == 0.0
        assert [s["name"] for s in view["stages"]] == [
            "split",
            "transcribe",
            "diarize",
            "analyze",
            "notify",
        ]

        result = client.get(f"/v1/jobs/{job_id}/result")
        assert result.status_code == 409
        assert result.headers["content-type"] == PROBLEM
        assert result.json()["job_status"] == "queued"

        missing = client.get(f"/v1/jobs/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == PROBLEM

        malformed = client.get("/v1/jobs/not-a-uuid")
        assert malformed.status_code == 400
        assert malformed.headers["content-type"] == PROBLEM
        assert "not-a-uuid" in malformed.json()["detail"]


def test_audio_facts_are_shown_without_the_workers_paths(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    with ingest.client() as client:
        job_id = client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.2))}).json()["id"]
        assert "audio" not in client.get(f"/v1/jobs/{job_id}").json()  # split has not run
        facts = {
            "codec": "pcm_s16le",
            "container": "wav",
            "sample_rate": 44100,
            "channels": 2,
            "duration_s": 0.2,
            "chunks": 1,
        }
        # What split stored for jobs before the contract, and may store again: extra keys.
        query(
            isolated_env.database_url,
            "UPDATE jobs SET audio = $2::jsonb WHERE id = $1",
            uuid.UUID(job_id),
            json.dumps(facts | {"normalized_path": f"work/{job_id}/audio.wav"}),
        )
        detail = client.get(f"/v1/jobs/{job_id}").json()
        listed = client.get("/v1/jobs", params={"limit": "100"}).json()["items"]
    assert detail["audio"] == facts
    assert next(item for item in listed if item["id"] == job_id)["audio"] == facts


def test_listing_is_newest_first_with_keyset_pagination(ingest: IngestServer) -> None:
    with ingest.client() as client:
        created = [
            client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.1))}).json()["id"]
            for _ in range(5)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/jobs", params=params).json()
            assert len(page["items"]) <= 2
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen))
        # Our five are the newest, in reverse creation order.
        assert seen[:5] == created[::-1]

        queued = client.get("/v1/jobs", params={"status": "queued", "limit": "100"}).json()
        assert {i["status"] for i in queued["items"]} == {"queued"}
        completed = client.get("/v1/jobs", params={"status": "completed", "limit": "100"}).json()
        assert {i["status"] for i in completed["items"]} <= {"completed"}
        assert not set(created) & {i["id"] for i in completed["items"]}

        # A well-formed cursor whose time cannot be converted to UTC (Postgres' zone).
        out_of_range = base64.urlsafe_b64encode(
            f"0001-01-01T00:00:00+01:00|{uuid.uuid4()}".encode()
        ).decode()
        for bad in (
            {"status": "bogus"},
            {"limit": "0"},
            {"limit": "101"},
            {"cursor": "!!"},
            {"cursor": out_of_range},
        ):
            response = client.get("/v1/jobs", params=bad)
            assert response.status_code == 400, (bad, response.text)
            assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("files", "data", "status", "detail_part"),
    [
        ({"file": ("empty.wav", b"")}, {}, 400, "empty"),
        ({"file": ("notes.txt", b"hello, this is plain text\n" * 10)}, {}, 415, "WAV"),
        ({"file": ("x.wav", b"MZ\x90\x00" + b"\x00" * 64)}, {}, 415, "audio"),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"num_speakers": "-1"}, 422, "num_speakers"),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"num_speakers": "two"}, 422, "num_speakers"),
        (
            {"file": ("a.wav", wav_bytes(0.1))},
            {"min_speakers": "4", "max_speakers": "2"},
            422,
            "min_speakers",
        ),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"metadata": "[1, 2]"}, 422, "JSON object"),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"metadata": "{not json"}, 422, "JSON object"),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"webhook_url": "ftp://example.org/x"}, 422, "http"),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"webhook_url": "not a url"}, 422, "http"),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"webhook_url": "http://[::1/h"}, 422, "http"),
        (
            {"file": ("a.wav", wav_bytes(0.1))},
            {"webhook_url": "http://example.org:99999/h"},
            422,
            "http",
        ),
        (
            {"file": ("a.wav", wav_bytes(0.1))},
            {"webhook_url": "http://127.0.0.1:9/h"},
            422,
            "loopback",
        ),
        (
            {"file": ("a.wav", wav_bytes(0.1))},
            {"webhook_url": "http://localhost/h"},
            422,
            "loopback",
        ),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"language": "english!"}, 422, "language"),
        ({"file": ("a.wav", wav_bytes(0.1))}, {"colour": "blue"}, 422, "unknown field"),
        (
            {"file": ("a.wav", wav_bytes(0.1))},
            {"webhook_url": "https://example.org/h", "webhook_secret": "hunter2"},
            422,
            "whsec_",
        ),
        ({}, {"language": "en"}, 400, "'file'"),
    ],
)
def test_bad_uploads_get_a_problem_and_leave_nothing_behind(
    ingest: IngestServer,
    isolated_env: IsolatedEnv,
    files: dict[str, tuple[str, bytes]],
    data: dict[str, str],
    status: int,
    detail_part: str,
) -> None:
    jobs_before = job_count(isolated_env)
    files_before = stored_files(isolated_env)
    with ingest.client() as client:
        if files:
            response = client.post("/v1/jobs", files=files, data=data)
        else:  # a form without a file part
            response = client.post("/v1/jobs", files={"language": (None, "en")})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert detail_part in problem["detail"]
    assert job_count(isolated_env) == jobs_before
    assert stored_files(isolated_env) == files_before


def test_non_audio_content_type_is_refused(ingest: IngestServer) -> None:
    # application/json is the audio-by-URL submit (its own tests); text is nothing we take.
    with ingest.client() as client:
        response = client.post("/v1/jobs", content=b"hello", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM
    assert "audio_url" in response.json()["detail"]


def test_health_readiness_and_metrics(ingest: IngestServer) -> None:
    with ingest.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"postgres": "ok", "rabbitmq": "ok"}
        job_id = client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.1))}).json()["id"]
        client.get(f"/v1/jobs/{job_id}")
        client.post("/v1/jobs", files={"file": ("a.txt", b"plain text, not audio")})
        metrics = client.get("/metrics").text
        assert client.get("/schema/openapi.json").json()["paths"]["/v1/jobs"]
    assert 'ingest_uploads_total{outcome="accepted"}' in metrics
    assert 'ingest_uploads_total{outcome="unsupported-media-type"}' in metrics
    assert "ingest_upload_bytes_received_total" in metrics
    assert "ingest_outbox_backlog" in metrics
    assert "ingest_outbox_publish_latency_seconds_count" in metrics
    # Requests are grouped by route template, never by raw path (job ids).
    assert 'path="/v1/jobs/{job_id}"' in metrics
    assert job_id not in metrics


def test_logs_are_json_with_request_and_job_ids(ingest: IngestServer) -> None:
    with ingest.client() as client:
        response = client.post(
            "/v1/jobs",
            files={"file": ("a.wav", wav_bytes(0.1))},
            headers={"X-Request-ID": "req-abc-123"},
        )
    assert response.headers["x-request-id"] == "req-abc-123"
    job_id = response.json()["id"]
    lines = [json.loads(line) for line in ingest.log_text().splitlines() if line.startswith("{")]
    accepted = [
        entry
        for entry in lines
        if entry.get("event") == "upload accepted" and entry.get("job_id") == job_id
    ]
    assert accepted, "no JSON 'upload accepted' line for the job"
    assert accepted[0]["request_id"] == "req-abc-123"
    assert any(
        entry.get("event") == "request"
        and entry.get("job_id") == job_id
        and entry.get("status") == 202
        for entry in lines
    )


def test_a_form_field_in_an_unknown_charset_is_a_bad_request(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    jobs_before = job_count(isolated_env)
    boundary = "b0undary"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="language"\r\n'
            "Content-Type: text/plain; charset=x-bogus\r\n\r\n"
            f"en\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + wav_bytes(0.1)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    with ingest.client() as client:
        response = client.post(
            "/v1/jobs",
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "x-bogus" in response.json()["detail"]
    assert job_count(isolated_env) == jobs_before
