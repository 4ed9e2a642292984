"""Transcribing chunks with openai-whisper and stitching them back together.

The model loads lazily, once per worker process (after Dramatiq forks), and is shared
by the process's threads. Stitching is a pure function of chunk transcripts.
"""

from __future__ import annotations

import collections
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from contracts import Segment, Word
from processing_service.errors import UploadMissing

_models: dict[str, Any] = {}
_lock = threading.Lock()


class ChunkTranscript(msgspec.Struct, frozen=True):
    """One chunk's transcript with absolute times, as stored on the chunk row."""

    language: str | None
    segments: list[Segment]


@dataclass(frozen=True)
class TimedChunk:
    start_s: float
    end_s: float
    transcript: ChunkTranscript


def resolve_model(spec: str, cache_dir: Path) -> str:
    """A checkpoint path if `spec` is a file or a cached model name, else the name itself."""
    if Path(spec).is_file():
        return spec
    cached = cache_dir / "whisper" / f"{spec}.pt"
    return str(cached) if cached.is_file() else spec


def get_model(spec: str, cache_dir: Path, torch_threads: int) -> Any:
    """The process's whisper model for `spec`, loaded on first use."""
    with _lock:
        if spec not in _models:
            import torch  # noqa: PLC0415 - the speech stack loads only in workers that need it

            from processing_service.whisper_weights import load_whisper_checkpoint  # noqa: PLC0415

            if torch_threads:
                torch.set_num_threads(torch_threads)
            _models[spec] = load_whisper_checkpoint(
                resolve_model(spec, cache_dir), download_root=str(cache_dir / "whisper")
            )
        return _models[spec]


def is_multilingual(model: Any) -> bool:
    return bool(model.is_multilingual)


def transcribe_file(
    model: Any, path: Path, language: str | None, offset_s: float
) -> ChunkTranscript:
    """Transcribe one audio file; times in the result are shifted by `offset_s`."""
    import whisper  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415

    if not path.exists():  # else the reason would be ffmpeg's whole banner
        raise UploadMissing(f"the chunk {path.name} is not in storage")
    audio = whisper.load_audio(str(path))
    result = model.transcribe(
        audio,
        language=language if is_multilingual(model) else "en",
        word_timestamps=True,
        fp16=False,
        verbose=None,
    )
    segments = []
    for seg in result["segments"]:
        words = [
            Word(
                start=round(offset_s + float(w["start"]), 3),
                end=round(offset_s + float(w["end"]), 3),
                word=str(w["word"]),
                probability=round(float(w["probability"]), 4),
            )
            for w in seg.get("words", [])
        ]
        segments.append(
            Segment(
                start=round(offset_s + float(seg["start"]), 3),
                end=round(offset_s + float(seg["end"]), 3),
                text=str(seg["text"]).strip(),
                words=words,
            )
        )
    return ChunkTranscript(language=result.get("language"), segments=segments)


def _keep(segment: Segment, low: float, high: float) -> Segment | None:
    """The part of `segment` whose words' midpoints lie in [low, high)."""
    if not segment.words:
        mid = (segment.start + segment.end) / 2
        return segment if low <= mid < high else None
    words = [w for w in segment.words if low <= (w.start + w.end) / 2 < high]
    if not words:
        return None
    if len(words) == len(segment.words):
        return segment
    return Segment(
        start=words[0].start,
        end=words[-1].end,
        text="".join(w.word for w in words).strip(),
        speaker=segment.speaker,
        words=words,
    )


def stitch(chunks: list[TimedChunk]) -> tuple[str | None, list[Segment]]:
    """Join chunk transcripts into one, keeping each overlapped word once.

    Neighbouring chunks share an overlap; the cut lies in its middle, and each word goes
    to the chunk in which its midpoint falls, so both ends of the cut are far from either
    chunk's edge, where whisper is least reliable.
    """
    chunks = sorted(chunks, key=lambda c: c.start_s)
    cuts = [(a.end_s + b.start_s) / 2 for a, b in itertools.pairwise(chunks)]
    bounds = [-float("inf"), *cuts, float("inf")]
    segments: list[Segment] = []
    spoken: collections.Counter[str] = collections.Counter()
    for i, chunk in enumerate(chunks):
        for segment in chunk.transcript.segments:
            kept = _keep(segment, bounds[i], bounds[i + 1])
            if kept is not None:
                segments.append(kept)
        if chunk.transcript.language:
            spoken[chunk.transcript.language] += round(chunk.end_s - chunk.start_s)
    language = spoken.most_common(1)[0][0] if spoken else None
    return language, segments


def full_text(segments: list[Segment]) -> str:
    return " ".join(s.text for s in segments if s.text).strip()
