"""The baseline of `make bench-ingest`: the seed's naive design, FastAPI + Celery + Redis.

An `UploadFile` (Starlette spools it to a temporary file past 1 MiB), copied to storage
with a blocking `shutil.copyfileobj`, one asyncpg INSERT of the job, and Celery's
`apply_async` to a Redis broker (nothing consumes it). No content sniffing, no outbox, no
fsync. It runs in its own virtual environment (`.venv-baseline`, made by the benchmark):
FastAPI's python-multipart and this project's `multipart` cannot share one.

Served by `uvicorn scripts.bench_ingest.baseline_app:app`, with uvloop and httptools as
the API is. Reads BASELINE_DATABASE_URL, BASELINE_REDIS_URL and BASELINE_STORAGE_DIR.
"""
# This module runs only inside .venv-baseline; the project's linters and type checker do
# not have its packages.
# mypy: ignore-errors
# ruff: noqa

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from celery import Celery
from fastapi import FastAPI, File, UploadFile

DATABASE_URL = os.environ["BASELINE_DATABASE_URL"]
STORAGE = Path(os.environ["BASELINE_STORAGE_DIR"])
celery = Celery("baseline", broker=os.environ["BASELINE_REDIS_URL"])

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_jobs (
    id uuid PRIMARY KEY,
    filename text NOT NULL,
    path text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


@celery.task(name="process_audio")
def process_audio(job_id: str, path: str) -> None:  # never runs: no worker
    raise NotImplementedError


@asynccontextmanager
async def lifespan(app: FastAPI):
    STORAGE.mkdir(parents=True, exist_ok=True)
    app.state.pool = await asyncpg.create_pool(DATABASE_URL, min_size=2, max_size=10)
    async with app.state.pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(4242)")
        await conn.execute(SCHEMA)
        await conn.execute("SELECT pg_advisory_unlock(4242)")
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/jobs", status_code=202)
async def create_job(file: UploadFile = File(...)) -> dict[str, str]:
    job_id = str(uuid.uuid4())
    path = STORAGE / f"{job_id}.bin"
    with path.open("wb") as out:
        shutil.copyfileobj(file.file, out)
    async with app.state.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO baseline_jobs (id, filename, path, status) VALUES ($1, $2, $3, 'queued')",
            uuid.UUID(job_id),
            file.filename or "upload",
            str(path),
        )
    process_audio.apply_async(args=[job_id, str(path)])
    return {"id": job_id, "status": "queued"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
