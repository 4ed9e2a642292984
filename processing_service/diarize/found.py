"""What diarizing one block of a recording finds: the unit the diarize stage stores.

No numpy here: the stage and its store import this in every worker process.
"""

from __future__ import annotations

import msgspec

from contracts import SpeakerTurn


class BlockDiarization(msgspec.Struct, frozen=True):
    """One block's diarization: its span of the recording, its turns (recording time,
    labels of its own) and each label's centroid speaker embedding, for linking the
    blocks' speakers (`blocks.link_blocks`)."""

    start_s: float
    end_s: float
    turns: list[SpeakerTurn]
    centroids: dict[str, list[float]] = {}
