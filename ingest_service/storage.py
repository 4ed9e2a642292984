"""Streaming an upload into shared storage: sniffed, hashed and size-checked on the way.

Bytes go from the request straight to one file, written once: no spooling, no copy. The
file is created only once its leading bytes look like audio, grows as
`incoming/<job id>.part`, has its container headers checked (`ingest_service.structure`),
and is renamed into `uploads/` under its final name (derived from the job id, never from
the client's file name) once complete. Anything that goes wrong removes it, a full volume
included.

Durability, before the 202: the file's data is flushed (`fdatasync`) and the file renamed,
in a thread; then `uploads/` is flushed too, so that the name survives a crash. That
directory flush is shared: concurrent uploads wait for one `fsync` of the directory that
started after their own rename (`DirectorySync`), instead of one each. Files arrive in a
directory of their own because creating a file in a directory waits while that
directory is being flushed (ext4 locks it): creating them in `uploads/`, `open` took 27%
of the event loop's py-spy samples, 14% in `incoming/` (make bench-ingest --profile).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

from contracts.layout import INCOMING_DIR, UPLOADS_DIR, work_dir
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
        self._incoming = storage_dir / INCOMING_DIR
        self._job_id = job_id
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._head = bytearray()
        self._format: AudioFormat | None = None
        self._file: BinaryIO | None = None
        self._part_path = self._incoming / f"{job_id}.part"
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
        self._incoming.mkdir(parents=True, exist_ok=True)
        # Read back by the structure check through the same handle: no second open.
        self._file = self._part_path.open("w+b")
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
        check_structure(self._file, self.size, self._format)
        name = f"{self._job_id}.{self._format.value}"
        self._final_path = self._dir / name
        if self._fsync:
            # The rename waits while another thread flushes uploads/: off the event loop.
            await asyncio.to_thread(self._settle, self._file, self._final_path)
            await DirectorySync.of(self._dir).sync()
        else:
            self._settle(self._file, self._final_path, flush=False)
        return StoredUpload(
            relative_path=f"{UPLOADS_DIR}/{name}",
            path=self._final_path,
            size_bytes=self.size,
            sha256=self._hash.hexdigest(),
            audio_format=self._format,
        )

    def _settle(self, file: BinaryIO, final_path: Path, *, flush: bool = True) -> None:
        """Flush the data (with `flush`), close the file and give it its final name."""
        if flush:
            os.fdatasync(file.fileno())
        file.close()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._part_path.rename(final_path)

    def discard(self) -> None:
        """Remove whatever this upload left on disk; safe to call more than once."""
        if self._file is not None:
            # Closing flushes what is buffered, which fails again on a full volume.
            with contextlib.suppress(OSError):
                self._file.close()
        for path in (self._part_path, self._final_path):
            if path is not None:
                path.unlink(missing_ok=True)


class DirectorySync:
    """Group-committed `fsync` of one directory, for the entries renamed into it.

    A caller's rename is durable once an fsync of the directory that *started after* it
    has finished. Callers take a ticket after their rename; one fsync at a time runs,
    covering every ticket taken before it started, so a burst of N uploads costs a few
    directory flushes instead of N. One instance per directory and process.
    """

    #: Per event loop (its lock belongs to one), then per directory.
    _instances: ClassVar[
        weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, DirectorySync]]
    ] = weakref.WeakKeyDictionary()

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = asyncio.Lock()
        self._issued = 0  # tickets handed out
        self._covered = 0  # tickets a finished fsync covers

    @classmethod
    def of(cls, directory: Path) -> DirectorySync:
        per_loop = cls._instances.setdefault(asyncio.get_running_loop(), {})
        found = per_loop.get(directory)
        if found is None:
            found = per_loop[directory] = cls(directory)
        return found

    async def sync(self) -> None:
        """Return once the directory has been flushed after this call began."""
        self._issued += 1
        ticket = self._issued
        async with self._lock:
            if self._covered >= ticket:
                return  # an fsync that started after our rename has finished
            covers = self._issued
            await asyncio.to_thread(_fsync_directory, self._directory)
            self._covered = covers


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_job_files(storage_dir: Path, job_id: str, storage_path: str | None) -> int:
    """Remove a job's upload and work files; how many files went. Blocking: run it in a
    thread. Missing files are fine (a worker or another sweep removed them first)."""
    removed = 0
    targets = [storage_dir / INCOMING_DIR / f"{job_id}.part"]
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
