"""Stitching chunk transcripts into one: pure functions, no model.

Neighbouring chunks share an overlap; each word is kept once, by the chunk in whose
half of the overlap its midpoint falls.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass

import msgspec

from contracts import Segment


class ChunkTranscript(msgspec.Struct, frozen=True):
    """One chunk's transcript with absolute times, as stored on the chunk row."""

    language: str | None
    segments: list[Segment]


@dataclass(frozen=True)
class TimedChunk:
    start_s: float
    end_s: float
    transcript: ChunkTranscript


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
