"""Probing, normalizing and cutting audio with ffmpeg, streaming from disk to disk.

Nothing here loads a whole recording into memory: ffmpeg reads and writes files, and
chunks are cut by seeking in the normalized WAV.
"""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

from processing_service.runtime.errors import (
    StorageFull,
    TransientError,
    UndecodableAudio,
    UploadMissing,
)

#: Whisper and pyannote both want 16 kHz mono.
SAMPLE_RATE = 16_000
_FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y")
#: How ffmpeg reports a full volume (it prints the C library's message for the errno).
_STORAGE_FULL = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT))


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says of the upload, plus the exact length after normalizing."""

    codec: str
    container: str
    sample_rate: int
    channels: int
    duration_s: float


def _ffmpeg_to(target: Path, args: list[str], timeout_s: float) -> str | None:
    """Run ffmpeg writing `target` through a `.part` file; the error text, or None.

    A full volume raises `StorageFull` instead: that is no property of the audio.
    """
    partial = target.with_name(target.name + ".part")
    result = subprocess.run(
        [*_FFMPEG, *args, "-c:a", "pcm_s16le", "-f", "wav", str(partial)],
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        stderr = result.stderr.decode(errors="replace")
        if any(text in stderr for text in _STORAGE_FULL):
            # Not the upload's fault: worth retries, and the dead letter says why.
            raise StorageFull(f"the storage volume is full ({_last_line(result.stderr)})")
        return _last_line(result.stderr)
    partial.rename(target)
    return None


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no details"


def probe(path: Path, timeout_s: float = 120) -> AudioInfo:
    """Read codec, rate, channels and duration; raise `UndecodableAudio` if not audio."""
    if not path.exists():
        raise UploadMissing(f"the upload {path.name} is not in storage")
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-of",
            "json",
            "-show_entries",
            "format=format_name,duration:stream=codec_type,codec_name,sample_rate,channels",
            str(path),
        ],
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise UndecodableAudio(f"the file could not be read as audio ({_last_line(result.stderr)})")
    facts = json.loads(result.stdout or b"{}")
    streams = [s for s in facts.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise UndecodableAudio("the file contains no audio stream")
    stream = streams[0]
    fmt = facts.get("format", {})
    try:
        duration = float(fmt.get("duration", "nan"))
    except ValueError:
        duration = math.nan
    return AudioInfo(
        codec=str(stream.get("codec_name", "unknown")),
        container=str(fmt.get("format_name", "unknown")),
        sample_rate=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
        duration_s=duration,
    )


def wav_duration(path: Path) -> float:
    """Exact duration of a PCM WAV from its header."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def normalize(source: Path, target: Path, timeout_s: float = 3600) -> float:
    """Decode `source` to 16 kHz mono 16-bit WAV at `target`; return its duration."""
    target.parent.mkdir(parents=True, exist_ok=True)
    args = ["-i", str(source), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE)]
    error = _ffmpeg_to(target, args, timeout_s)
    if error is not None:
        raise UndecodableAudio(f"the audio could not be decoded ({error})")
    duration = wav_duration(target)
    if duration <= 0:
        raise UndecodableAudio("the audio has zero length: it contains no samples")
    return duration


def cut_chunk(
    source: Path, target: Path, start_s: float, end_s: float, timeout_s: float = 600
) -> None:
    """Copy [start_s, end_s) of a normalized WAV into its own WAV file."""
    args = ["-ss", f"{start_s:.3f}", "-t", f"{end_s - start_s:.3f}", "-i", str(source)]
    error = _ffmpeg_to(target, args, timeout_s)
    if error is not None:
        # Our own normalized WAV was readable a moment ago: a disk problem, worth a retry.
        raise TransientError(f"cutting a chunk failed ({error})")
