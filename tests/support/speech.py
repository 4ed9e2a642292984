"""Speech with known text, made with espeak-ng (and joined with sox)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def speak(text: str, out: Path, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> Path:
    """Write `text` spoken by espeak-ng to the WAV file `out`."""
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), text],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def concatenate(parts: list[Path], out: Path, gap_s: float = 0.4, rate: int = 22050) -> Path:
    """Join WAV files, each followed by `gap_s` of silence, as mono at `rate` Hz (sox)."""
    if len(parts) == 1:
        return Path(parts[0])
    padded = []
    for i, part in enumerate(parts):
        target = out.with_name(f"{out.stem}.pad{i}.wav")
        subprocess.run(
            ["sox", str(part), "-r", str(rate), "-c", "1", str(target), "pad", "0", str(gap_s)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        padded.append(str(target))
    subprocess.run(["sox", *padded, str(out)], check=True, capture_output=True, timeout=120)
    return out


def duration_s(path: Path) -> float:
    result = subprocess.run(
        ["soxi", "-D", str(path)], check=True, capture_output=True, text=True, timeout=60
    )
    return float(result.stdout.strip())


#: A meeting's sentences; said twice over (`two_windows`), about 40 s of speech.
MEETING_SENTENCES = (
    "The budget review starts at ten o'clock tomorrow morning in the large room.",
    "Maria will send the updated spending report to everyone before Friday.",
    "We decided to move the public release to the middle of April.",
    "The support team needs two more people before the summer holidays begin.",
)


def two_windows(folder: Path) -> Path:
    """About 40 s of speech, two whisper windows: `MEETING_SENTENCES` twice, 0.8 s apart."""
    sentences = MEETING_SENTENCES * 2
    parts = [speak(text, folder / f"part{i}.wav") for i, text in enumerate(sentences)]
    return concatenate(parts, folder / "meeting.wav", gap_s=0.8)
