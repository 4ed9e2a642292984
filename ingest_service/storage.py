"""Streaming an upload into shared storage: sniffed, hashed and size-checked on the way.

Bytes go from the request straight to one file, written once: no spooling, no copy. The
file is created only once its leading bytes look like audio, grows under a hidden
`.part` name, has its container headers checked (`ingest_service.structure`), and is
renamed to its final name (derived from the job id, never from the client's file name)
once complete. Anything that goes wrong removes it, a full volume included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from contracts.layout import UPLOADS_DIR, work_dir
from ingest_service.problems import EmptyUpload, UnsupportedAudio, UploadTooLarge
from ingest_service.sniffing import ACCEPTED_FORMATS, SNIFF_BYTES, AudioFormat, sniff_audio
from ingest_service.structure import check_structure


@dataclass(frozen=True)
class StoredUpload:
    """An upload that is complete on disk under its final name."""

    relative_path: str
    path: Path
    size_bytes: int
    sha256: str
    audio_format: AudioFormat


class UploadWriter:
    """Receives one upload's bytes in order and stores them as `uploads/<job_id>.<ext>`."""

    def __init__(self, storage_dir: Path, job_id: str, max_bytes: int, *, fsync: bool) -> None:
        self._dir = storage_dir / UPLOADS_DIR
        self._job_id = job_id
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._head = bytearray()
        self._format: AudioFormat | None = None
        self._file: BinaryIO | None = None
        self._part_path = self._dir / f".{job_id}.part"
        self._final_path: Path | None = None
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Take the next bytes; raises as soon as the upload is too large or not audio."""
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.discard()
            raise UploadTooLarge(
                f"the upload exceeds the limit of {self.max_bytes} bytes",
                max_bytes=self.max_bytes,
            )
        self._hash.update(chunk)
        if self._file is not None:
            self._file.write(chunk)
            return
        self._head += chunk
        if len(self._head) >= SNIFF_BYTES:
            self._start_file()

    def _start_file(self) -> None:
        self._format = sniff_audio(bytes(self._head[:SNIFF_BYTES]))
        if self._format is None:
            raise UnsupportedAudio(
                f"the upload does not start like an audio file; accepted: {ACCEPTED_FORMATS}",
                accepted=[f.value for f in AudioFormat],
            )
        self._dir.mkdir(parents=True, exist_ok=True)
        self._file = self._part_path.open("wb")
        self._file.write(self._head)
        self._head = bytearray()

    async def finish(self) -> StoredUpload:
        """Close the file, make it durable and give it its final name."""
        if self.size == 0:
            raise EmptyUpload(f"the uploaded file is empty; send audio ({ACCEPTED_FORMATS})")
        if self._file is None:
            self._start_file()
        assert self._file is not None
        assert self._format is not None
        self._file.flush()
        with self._part_path.open("rb") as stored:
            check_structure(stored, self.size, self._format)
        if self._fsync:
            await asyncio.to_thread(os.fsync, self._file.fileno())
        self._file.close()
        name = f"{self._job_id}.{self._format.value}"
        self._final_path = self._dir / name
        self._part_path.rename(self._final_path)
        return StoredUpload(
            relative_path=f"{UPLOADS_DIR}/{name}",
            path=self._final_path,
            size_bytes=self.size,
            sha256=self._hash.hexdigest(),
            audio_format=self._format,
        )

    def discard(self) -> None:
        """Remove whatever this upload left on disk; safe to call more than once."""
        if self._file is not None:
            # Closing flushes what is buffered, which fails again on a full volume.
            with contextlib.suppress(OSError):
                self._file.close()
        for path in (self._part_path, self._final_path):
            if path is not None:
                path.unlink(missing_ok=True)


def remove_job_files(storage_dir: Path, job_id: str, storage_path: str | None) -> int:
    """Remove a job's upload and work files; how many files went. Blocking: run it in a
    thread. Missing files are fine (a worker or another sweep removed them first)."""
    removed = 0
    targets = [storage_dir / UPLOADS_DIR / f".{job_id}.part"]
    if storage_path:
        targets.append(storage_dir / storage_path)
    for path in targets:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    work = storage_dir / work_dir(job_id)
    if work.is_dir():
        removed += sum(1 for p in work.rglob("*") if p.is_file())
        shutil.rmtree(work, ignore_errors=True)
    return removed
