"""Steering jobs through the real API process: cancel, delete, Idempotency-Key, retention,
and the event stream (no workers: the jobs stay where the test puts them)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.routing import STAGE_QUEUES
from contracts.states import Stage
from tests.support.audio import wav_bytes
from tests.support.backends import query
from tests.support.job_events import JOB_TABLES, read_events, rows_of
from tests.support.servers import IngestServer, IsolatedEnv

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def ingest(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    log = tmp_path_factory.mktemp("logs") / "ingest-steering.log"
    server = IngestServer(isolated_env.environ(OUTBOX_POLL_INTERVAL_S="0.2"), log)
    yield server
    server.stop()


def submit(client: httpx.Client, headers: dict[str, str] | None = None, **fields: str) -> Any:
    return client.post(
        "/v1/jobs",
        files={"file": ("a.wav", wav_bytes(1.0), "audio/wav")},
        data=fields,
        headers=headers or {},
    )


def files_of(storage: Path, job_id: str) -> list[Path]:
    return [p for p in storage.rglob("*") if job_id in str(p)]


def test_cancel_a_queued_job(ingest: IngestServer, isolated_env: IsolatedEnv) -> None:
    with ingest.client() as client:
        job_id = submit(client).json()["id"]
        response = client.post(f"/v1/jobs/{job_id}/cancel")
        assert response.status_code == 202, response.text
        view = response.json()
        assert view["status"] == "cancelled"
        assert view["error"] == "cancelled by the client"
        assert "stage" not in view
        states = {s["name"]: s["state"] for s in view["stages"]}
        assert states == {
            "split": "cancelled",
            "transcribe": "cancelled",
            "diarize": "cancelled",
            "analyze": "cancelled",
            "notify": "queued",
        }
        # The notify message that tells the client goes through the outbox.
        outbox = query(
            isolated_env.database_url,
            "SELECT queue, payload FROM outbox WHERE job_id = $1 ORDER BY id",
            uuid.UUID(job_id),
        )
        assert [r["queue"] for r in outbox] == [STAGE_QUEUES[Stage.SPLIT], "notify"]
        assert json.loads(outbox[1]["payload"])["stage"] == "notify"

        again = client.post(f"/v1/jobs/{job_id}/cancel")
        assert again.status_code == 409
        assert again.headers["content-type"].startswith(PROBLEM)
        assert "cancelled already" in again.json()["detail"]
        assert client.post(f"/v1/jobs/{uuid.uuid4()}/cancel").status_code == 404


def test_delete_leaves_no_row_and_no_file(ingest: IngestServer, isolated_env: IsolatedEnv) -> None:
    with ingest.client() as client:
        job_id = submit(client, headers={"Idempotency-Key": "delete-me"}).json()["id"]
        assert files_of(isolated_env.storage_dir, job_id)
        work = isolated_env.storage_dir / "work" / job_id
        work.mkdir(parents=True)
        (work / "chunk-0000.wav").write_bytes(b"x")
        assert all(
            n >= 1
            for t, n in rows_of(isolated_env.database_url, job_id).items()
            if t in {"jobs", "outbox", "idempotency_keys"}
        )

        response = client.delete(f"/v1/jobs/{job_id}")
        assert response.status_code == 204, response.text
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
    assert rows_of(isolated_env.database_url, job_id) == dict.fromkeys(JOB_TABLES, 0)
    assert files_of(isolated_env.storage_dir, job_id) == []
    # The tombstone that lets workers drop the job's queued messages quietly.
    assert (
        query(
            isolated_env.database_url,
            "SELECT count(*) FROM deleted_jobs WHERE id = $1",
            uuid.UUID(job_id),
        )[0][0]
        == 1
    )


def test_idempotency_key_gives_one_job(ingest: IngestServer, isolated_env: IsolatedEnv) -> None:
    key = f"submit-{uuid.uuid4()}"
    with ingest.client() as client:
        first = submit(client, headers={"Idempotency-Key": key}, language="en")
        second = submit(client, headers={"Idempotency-Key": key}, language="en")
        assert first.status_code == second.status_code == 202
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        job_id = first.json()["id"]
        assert second.headers["location"] == f"/v1/jobs/{job_id}"

        other = submit(client, headers={"Idempotency-Key": key}, language="de")
        assert other.status_code == 422
        assert other.headers["content-type"].startswith(PROBLEM)
        assert job_id in other.json()["detail"]

        bad = submit(client, headers={"Idempotency-Key": "x" * 300})
        assert bad.status_code == 400

    uploads = isolated_env.storage_dir / "uploads"
    assert len([p for p in uploads.iterdir() if job_id in p.name]) == 1
    created = query(
        isolated_env.database_url,
        "SELECT count(*) FROM idempotency_keys WHERE key = $1",
        key,
    )[0][0]
    assert created == 1
    # The replayed request and the refused one stored nothing: one upload per job row.
    stored = {p.name.split(".")[0] for p in uploads.iterdir() if not p.name.startswith(".")}
    jobs = {str(r[0]) for r in query(isolated_env.database_url, "SELECT id FROM jobs")}
    assert stored <= jobs


def test_concurrent_submits_with_one_key_make_one_job(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    key = f"race-{uuid.uuid4()}"
    answers: list[httpx.Response] = []

    def send() -> None:
        with ingest.client() as client:
            answers.append(submit(client, headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json()["id"] for a in answers}) == 1
    job_id = answers[0].json()["id"]
    assert query(
        isolated_env.database_url,
        "SELECT job_id FROM idempotency_keys WHERE key = $1",
        key,
    )[0][0] == uuid.UUID(job_id)


def test_idempotency_key_is_per_api_key(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    log = tmp_path_factory.mktemp("logs") / "ingest-keys.log"
    server = IngestServer(isolated_env.environ(INGEST_API_KEYS="alpha,beta"), log)
    try:
        with server.client("alpha") as alpha, server.client("beta") as beta:
            a = submit(alpha, headers={"Idempotency-Key": "shared"}).json()["id"]
            b = submit(beta, headers={"Idempotency-Key": "shared"}).json()["id"]
            assert a != b
            assert submit(alpha, headers={"Idempotency-Key": "shared"}).json()["id"] == a
            # Another key's job is invisible: 404 for cancel, delete and events alike.
            assert beta.post(f"/v1/jobs/{a}/cancel").status_code == 404
            assert beta.delete(f"/v1/jobs/{a}").status_code == 404
            assert beta.get(f"/v1/jobs/{a}/events").status_code == 404
    finally:
        server.stop()


def test_event_stream_follows_changes_made_elsewhere(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    """Changes written straight to Postgres (as a worker or another API process would)
    reach the stream through LISTEN/NOTIFY, and the stream ends with the job."""
    with ingest.client() as client:
        job_id = submit(client).json()["id"]
        jid = uuid.UUID(job_id)

        def work() -> None:
            time.sleep(0.5)
            db = isolated_env.database_url
            query(db, "UPDATE jobs SET status = 'processing' WHERE id = $1", jid)
            query(
                db,
                "UPDATE job_stages SET state = 'succeeded' WHERE job_id = $1 AND stage = 'split'",
                jid,
            )
            query(
                db,
                "UPDATE job_stages SET state = 'running'"
                " WHERE job_id = $1 AND stage = 'transcribe'",
                jid,
            )
            for fraction in (0.25, 0.5):
                time.sleep(0.3)
                query(
                    db,
                    "UPDATE job_stages SET progress = $2"
                    " WHERE job_id = $1 AND stage = 'transcribe'",
                    jid,
                    fraction,
                )
            time.sleep(0.3)
            client.post(f"/v1/jobs/{job_id}/cancel")

        writer = threading.Thread(target=work)
        started = time.monotonic()
        writer.start()
        events = read_events(client, job_id)
        writer.join()
    elapsed = time.monotonic() - started
    names = [name for name, _ in events]
    assert names[0] == "stage"
    assert events[0][1]["stage"] == "split"
    assert names[-1] == "end"
    assert events[-1][1]["status"] == "cancelled"
    stages = [data["stage"] for name, data in events if name == "stage"]
    assert "transcribe" in stages
    progress = [data["progress"] for name, data in events if name == "progress"]
    # split done (0.05) plus a quarter, then a half, of transcribe's 0.6.
    assert progress[-2:] == [pytest.approx(0.2), pytest.approx(0.35)]
    # Driven by notifications, not by the 5 s re-check.
    assert elapsed < 4.5


def test_retention_sweep_deletes_expired_jobs_and_orphans_only(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    storage = Path(tmp_path_factory.mktemp("retention-storage"))
    env = isolated_env.environ(
        STORAGE_DIR=str(storage),
        RETENTION_SWEEP_INTERVAL_S="0.3",
        ORPHAN_GRACE_S="600",
        RETENTION_DAYS="30",
    )
    logs = tmp_path_factory.mktemp("logs")
    # Two API processes sweep the same database and storage side by side.
    servers = [IngestServer(env, logs / f"ingest-sweep-{i}.log") for i in range(2)]
    try:
        with servers[0].client() as client:
            expired = submit(client, delete_after="1").json()["id"]
            kept = submit(client).json()["id"]
            running = submit(client, delete_after="1").json()["id"]
            query(
                isolated_env.database_url,
                "UPDATE jobs SET status = 'completed', finished_at = now() - interval '5 s'"
                " WHERE id = ANY($1::uuid[])",
                [uuid.UUID(expired), uuid.UUID(kept)],
            )
            hour_ago = time.time() - 3600
            old_orphan = storage / "uploads" / f"{uuid.uuid4()}.wav"
            old_orphan.write_bytes(b"RIFF")
            # An upload that never finished arriving (its process died mid-body).
            old_partial = storage / "incoming" / f"{uuid.uuid4()}.part"
            old_partial.parent.mkdir(exist_ok=True)
            old_partial.write_bytes(b"RIFF")
            old_work = storage / "work" / str(uuid.uuid4())
            old_work.mkdir(parents=True)
            (old_work / "audio.wav").write_bytes(b"RIFF")
            fresh_orphan = storage / "uploads" / f"{uuid.uuid4()}.wav"
            fresh_orphan.write_bytes(b"RIFF")
            foreign = storage / "uploads" / "README.txt"
            foreign.write_text("not ours")
            for path in (old_orphan, old_partial, old_work, old_work / "audio.wav", foreign):
                os.utime(path, (hour_ago, hour_ago))
            # The kept job's own upload is old too: it has a job, so it stays.
            for path in files_of(storage, kept):
                os.utime(path, (hour_ago, hour_ago))

            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if (
                    client.get(f"/v1/jobs/{expired}").status_code == 404
                    and not old_orphan.exists()
                    and not old_partial.exists()
                    and not old_work.exists()
                ):
                    break
                time.sleep(0.2)
            assert client.get(f"/v1/jobs/{expired}").status_code == 404
            assert client.get(f"/v1/jobs/{kept}").status_code == 200
            assert client.get(f"/v1/jobs/{running}").status_code == 200
        assert files_of(storage, expired) == []
        assert files_of(storage, kept)
        assert files_of(storage, running)
        assert not old_orphan.exists()
        assert not old_partial.exists()
        assert not old_work.exists()
        assert fresh_orphan.exists()
        assert foreign.exists()
        assert rows_of(isolated_env.database_url, expired) == dict.fromkeys(JOB_TABLES, 0)

        counted: dict[str, float] = {"job": 0.0, "orphan_file": 0.0}
        for server in servers:
            text = httpx.get(f"{server.url}/metrics").text
            for line in text.splitlines():
                for what in counted:
                    if line.startswith(f'ingest_retention_deleted_total{{what="{what}"}}'):
                        counted[what] += float(line.split()[-1])
        assert counted == {"job": 1.0, "orphan_file": 3.0}
    finally:
        for server in servers:
            server.stop()


def test_url_submits_are_checked_before_anything_is_recorded(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    before = query(isolated_env.database_url, "SELECT count(*) FROM jobs")[0][0]
    with ingest.client() as client:
        cases = {
            # Refused on address parsing: nothing is sent to these.
            "http://10.1.2.3/a.wav": "private",
            "http://169.254.169.254/latest": "metadata",
            "http://127.0.0.1:9/a.wav": "loopback",
            "ftp://example.org/a.wav": "http(s)",
            "not a url": "http(s)",
        }
        for url, reason in cases.items():
            response = client.post("/v1/jobs", json={"audio_url": url})
            assert response.status_code == 422, (url, response.text)
            assert response.headers["content-type"].startswith(PROBLEM)
            assert reason in response.json()["detail"], (url, response.json())
        secret = "Bearer do-not-echo\n"
        response = client.post(
            "/v1/jobs",
            json={"audio_url": "https://example.org/a.wav", "source_headers": {"X-Key": secret}},
        )
        assert response.status_code == 422
        assert "do-not-echo" not in response.text
        response = client.post(
            "/v1/jobs", json={"audio_url": "https://example.org/a.wav", "colour": "red"}
        )
        assert response.status_code == 422
        assert "colour" in response.json()["detail"]
        assert (
            client.post(
                "/v1/jobs", content=b"[1, 2", headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
    assert query(isolated_env.database_url, "SELECT count(*) FROM jobs")[0][0] == before


def test_a_url_submit_records_the_source_but_shows_no_secret(
    ingest: IngestServer, isolated_env: IsolatedEnv
) -> None:
    with ingest.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "audio_url": "https://example.org/calls/monday.mp3?X-Amz-Signature=abc123",
                "source_headers": {"Authorization": "Bearer tok-991"},
                "num_speakers": 2,
                "metadata": {"call": 12},
            },
            headers={"Idempotency-Key": "url-once"},
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["source_url"] == "https://example.org/calls/monday.mp3"
        assert accepted["filename"] == "monday.mp3"
        assert accepted["options"]["num_speakers"] == 2
        again = client.post(
            "/v1/jobs",
            json={
                "audio_url": "https://example.org/calls/monday.mp3?X-Amz-Signature=abc123",
                "source_headers": {"Authorization": "Bearer tok-991"},
                "num_speakers": 2,
                "metadata": {"call": 12},
            },
            headers={"Idempotency-Key": "url-once"},
        )
        assert again.json()["id"] == accepted["id"]
        view = client.get(f"/v1/jobs/{accepted['id']}").text
    assert "tok-991" not in view
    assert "abc123" not in view
    assert "tok-991" not in ingest.log_text()
    row = query(
        isolated_env.database_url,
        "SELECT source_headers, storage_path FROM jobs WHERE id = $1",
        uuid.UUID(accepted["id"]),
    )[0]
    assert json.loads(row["source_headers"]) == {"Authorization": "Bearer tok-991"}
    outbox = query(
        isolated_env.database_url,
        "SELECT payload::text FROM outbox WHERE job_id = $1",
        uuid.UUID(accepted["id"]),
    )
    assert len(outbox) == 1
    assert "tok-991" not in outbox[0][0]
