"""Where `split` cuts a long recording: pure arithmetic, no audio."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkPlan:
    """A stretch of the normalized audio to transcribe on its own."""

    index: int
    start_s: float
    end_s: float


def plan_chunks(
    duration_s: float, threshold_s: float, chunk_s: float, overlap_s: float
) -> list[ChunkPlan]:
    """One chunk up to `threshold_s`; past it, equal chunks of at most `chunk_s`.

    Each chunk but the last runs `overlap_s` into the next one, so that a word cut at a
    boundary is heard whole by one of them; stitching keeps each word once.
    """
    if duration_s <= threshold_s:
        return [ChunkPlan(0, 0.0, duration_s)]
    count = math.ceil(duration_s / chunk_s)
    step = duration_s / count
    return [
        ChunkPlan(i, round(i * step, 3), round(min((i + 1) * step + overlap_s, duration_s), 3))
        for i in range(count)
    ]
