"""The request bodies: real WAV files (RIFF/WAVE header + 16-bit PCM) and multipart forms."""

from __future__ import annotations

import array
import hashlib
import math
import struct
from pathlib import Path

from scripts.bench_ingest import MIB

SAMPLE_RATE = 16_000
WAV_HEADER_BYTES = 44
BOUNDARY = "bench-ingest-boundary-7d4f2a9c"


def wav_header(data_bytes: int) -> bytes:
    """A canonical 44-byte RIFF/WAVE header for 16 kHz mono 16-bit PCM."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def wav_file_bytes(total_bytes: int) -> bytes:
    """A valid WAV file of exactly `total_bytes`: a 440 Hz tone."""
    samples = (total_bytes - WAV_HEADER_BYTES) // 2
    tone = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)) for i in range(samples))
    )
    data = tone.tobytes() + b"\0" * ((total_bytes - WAV_HEADER_BYTES) % 2)
    return wav_header(len(data)) + data


def multipart_body(audio: bytes) -> bytes:
    """A multipart/form-data body with the audio as its `file` part."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bench.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head + audio + f"\r\n--{BOUNDARY}--\r\n".encode()


def make_big_wav(path: Path, total_bytes: int) -> None:
    """A WAV of `total_bytes`: a real header, then sparse zeros (silence)."""
    with path.open("wb") as f:
        f.write(wav_header(total_bytes - WAV_HEADER_BYTES))
        f.truncate(total_bytes)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()
