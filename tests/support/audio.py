"""Small audio files made in memory for tests."""

from __future__ import annotations

import io
import math
import struct
import subprocess
import wave


def wav_bytes(seconds: float = 1.0, rate: int = 16000, freq: float = 440.0) -> bytes:
    """A mono 16-bit WAV with a sine tone."""
    frames = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(frames))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buf.getvalue()


def wav_header(
    riff_size: int, data_size: int, *, format_tag: int = 1, block_align: int = 2
) -> bytes:
    """A 44-byte mono 16 kHz WAV header declaring the given sizes (whatever follows)."""
    fmt = struct.pack("<HHIIHH", format_tag, 1, 16000, 16000 * block_align, block_align, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


def undecodable_wav() -> bytes:
    """A WAV whose headers are consistent (it passes the API's structural checks) but that
    no decoder opens: IMA ADPCM with a block size that codec cannot have."""
    samples = bytes(range(256)) * 40
    return wav_header(36 + len(samples), len(samples), format_tag=0x11) + samples


def ffmpeg_tone(fmt: str, seconds: float = 1.0, *args: str, rate: int = 16000) -> bytes:
    """A sine tone encoded by ffmpeg as `fmt` (to a pipe: streaming headers), mono."""
    tone = f"sine=d={seconds}:sample_rate={rate}"
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", tone, "-ac", "1"]
    done = subprocess.run(
        [*command, *args, "-f", fmt, "-"],
        capture_output=True,
        check=True,
    )
    return done.stdout
