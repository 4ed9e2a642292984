"""Where a job's files live in shared storage, relative to the storage directory.

Both services spell these paths through this module: the API stores uploads and deletes
a job's files, the workers write work files, and the retention sweep tells which files
belong to no job.
"""

from __future__ import annotations

import uuid

#: Uploads, one file per job: `uploads/<job id>.<format>`.
UPLOADS_DIR = "uploads"
#: Uploads while they arrive: `incoming/<job id>.part`, renamed into `uploads/` once
#: complete. Apart, so that creating them never waits for a flush of `uploads/`.
INCOMING_DIR = "incoming"
#: Work files of the workers, one directory per job: `work/<job id>/`.
WORK_DIR = "work"


def work_dir(job_id: str) -> str:
    """A job's work files."""
    return f"{WORK_DIR}/{job_id}"


def owning_job(name: str) -> uuid.UUID | None:
    """The job id a file or directory name under `uploads/`, `incoming/` or `work/`
    belongs to."""
    stem = name.lstrip(".").split(".", 1)[0]
    try:
        return uuid.UUID(stem)
    except ValueError:
        return None
