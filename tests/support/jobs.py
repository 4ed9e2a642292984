"""Uploading to the ingest API and following the job until it gets somewhere."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"completed", "failed", "cancelled"}


def upload(client: httpx.Client, path: Path, **fields: str) -> str:
    with path.open("rb") as f:
        response = client.post("/v1/jobs", files={"file": (path.name, f, "audio/wav")}, data=fields)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    until: Any = None,
    timeout_s: float = 240,
    poll_s: float = 0.25,
) -> dict[str, Any]:
    """Poll the job every `poll_s` until `until(job)` holds (default: a terminal status)."""
    check = until or (lambda job: job["status"] in TERMINAL)
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if check(job):
            return job
        time.sleep(poll_s)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s} s; last seen: {job}")


def stage(job: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in job["stages"] if s["name"] == name)
    return found


def stored_uploads(storage_dir: Path) -> list[str]:
    """The files under `uploads/` and `incoming/` (uploads still arriving), as
    `dir/name`: what uploads left in storage."""
    return sorted(
        f"{top}/{p.name}"
        for top in ("uploads", "incoming")
        if (storage_dir / top).is_dir()
        for p in (storage_dir / top).iterdir()
    )
