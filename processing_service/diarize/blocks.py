"""Block-wise diarization helpers: where to cut long audio, and linking speakers across blocks.

Pure numpy and the standard library (no torch), so they are cheap to unit-test:

* ``plan_blocks`` splits a WAV into near-equal blocks of at most ``block_s`` (plus a few
  seconds), each cut moved to the quietest 100 ms near its nominal position so that a cut
  rarely splits a word;
* ``read_block`` reads one block as a float32 ``(1, samples)`` array in [-1, 1];
* ``link_speakers`` clusters the speakers found in each block (their centroid speaker
  embeddings) into global speakers: greedy agglomerative clustering with centroid
  linkage on cosine distance, never joining two speakers of the same block (pyannote
  already told them apart), stopping at ``threshold`` — unless a hint forces it:
  merging stops at ``min_speakers`` and continues (same-block pairs allowed as a last
  resort) down to ``max_speakers``;
* ``link_blocks`` turns the blocks' diarizations (``BlockDiarization``, diarized
  apart, possibly by different workers) into the recording's speaker turns.
"""

from __future__ import annotations

import itertools
import math
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from contracts import SpeakerTurn
from processing_service.diarize.found import BlockDiarization

Array = npt.NDArray[Any]
#: How far (seconds) a cut may move from its nominal position to find a pause.
CUT_SEARCH_S = 10.0
_FRAME_S = 0.1


def read_block(wav: wave.Wave_read, start: int, stop: int) -> Array:
    """Frames ``[start, stop)`` of a 16-bit PCM WAV as float32 ``(1, n)``, channels averaged."""
    if wav.getsampwidth() != 2:
        raise ValueError(f"expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit samples")
    wav.setpos(start)
    samples = np.frombuffer(wav.readframes(stop - start), dtype="<i2")
    channels = wav.getnchannels()
    data = samples.reshape(-1, channels).astype(np.float32)
    mono = data[:, 0] if channels == 1 else data.mean(axis=1)
    return (mono / 32768.0)[None, :]


def _quietest(wav: wave.Wave_read, nominal: int, search: int) -> int:
    """The centre of the lowest-energy 100 ms frame within ``search`` frames of ``nominal``."""
    rate = wav.getframerate()
    low, high = max(0, nominal - search), min(wav.getnframes(), nominal + search)
    audio = read_block(wav, low, high)[0]
    hop = max(1, round(_FRAME_S * rate))
    frames = len(audio) // hop
    if frames < 3:
        return nominal
    energy = np.square(audio[: frames * hop].reshape(frames, hop)).mean(axis=1)
    # Prefer the middle of a long pause: smooth over 3 frames, ties go to the nominal cut.
    smooth = np.convolve(energy, np.ones(3) / 3, mode="same")
    centres = low + np.arange(frames) * hop + hop // 2
    best = np.lexsort((np.abs(centres - nominal), np.round(smooth, 8)))[0]
    return int(centres[best])


def plan_blocks(wav: wave.Wave_read, block_s: float) -> list[tuple[int, int]]:
    """``(start, stop)`` frame ranges covering the WAV; one range when it fits ``block_s``."""
    total, rate = wav.getnframes(), wav.getframerate()
    block = block_s * rate
    if block_s <= 0 or total <= block:
        return [(0, total)]
    count = math.ceil(total / block)
    search = round(min(CUT_SEARCH_S * rate, block / 4))
    cuts = [_quietest(wav, round(i * total / count), search) for i in range(1, count)]
    edges = [0, *cuts, total]
    return list(itertools.pairwise(edges))


def plan_spans(wav_path: Path, block_s: float) -> list[tuple[float, float]]:
    """``plan_blocks`` of a WAV file, in seconds."""
    with wave.open(str(wav_path), "rb") as wav:
        rate = wav.getframerate()
        return [(start / rate, stop / rate) for start, stop in plan_blocks(wav, block_s)]


@dataclass(frozen=True)
class BlockSpeaker:
    """A speaker label found in one block, with its centroid embedding and speech time."""

    block: int
    label: str
    centroid: Array | None
    speech_s: float


@dataclass
class _Cluster:
    members: list[int]
    blocks: set[int]
    speech_s: float
    total: Array | None = field(default=None)  # speech-weighted sum of unit centroids

    def direction(self) -> Array | None:
        if self.total is None:
            return None
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm > 0 else None


def _distance(a: _Cluster, b: _Cluster) -> float:
    """Cosine distance of the clusters' centroids; inf when either has none."""
    da, db = a.direction(), b.direction()
    if da is None or db is None:
        return math.inf
    return 1.0 - float(np.dot(da, db))


def _closest(clusters: list[_Cluster], cross_block_only: bool) -> tuple[float, int, int] | None:
    best: tuple[float, int, int] | None = None
    for i, a in enumerate(clusters):
        for j in range(i + 1, len(clusters)):
            b = clusters[j]
            if cross_block_only and a.blocks & b.blocks:
                continue
            d = _distance(a, b)
            if not cross_block_only and math.isinf(d):
                d = 2.0 + 1.0 / (1.0 + a.speech_s + b.speech_s)  # last resort: any pair
            if best is None or d < best[0]:
                best = (d, i, j)
    return best


def link_speakers(
    speakers: list[BlockSpeaker],
    *,
    threshold: float,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> dict[tuple[int, str], str]:
    """Map each ``(block, label)`` to a global ``SPEAKER_nn`` label (see the module docs)."""
    clusters: list[_Cluster] = []
    for index, speaker in enumerate(speakers):
        total = None
        if speaker.centroid is not None:
            vector = np.asarray(speaker.centroid, dtype=np.float64)
            norm = float(np.linalg.norm(vector))
            if norm > 0 and np.all(np.isfinite(vector)):
                total = vector / norm * max(speaker.speech_s, 1e-3)
        clusters.append(_Cluster([index], {speaker.block}, speaker.speech_s, total))
    low = max(1, min_speakers or 1)
    high = max_speakers or len(clusters)
    while len(clusters) > low:
        forced = len(clusters) > high
        best = _closest(clusters, cross_block_only=True)
        if forced and (best is None or math.isinf(best[0])):
            best = _closest(clusters, cross_block_only=False)
        if best is None or (not forced and best[0] > threshold):
            break
        _, i, j = best
        a, b = clusters[i], clusters.pop(j)
        a.members += b.members
        a.blocks |= b.blocks
        a.speech_s += b.speech_s
        if a.total is None or b.total is None:
            a.total = a.total if b.total is None else b.total
        else:
            a.total = a.total + b.total
    # Number global speakers in order of first appearance (block, then label order).
    clusters.sort(key=lambda c: min(c.members))
    return {
        (speakers[m].block, speakers[m].label): f"SPEAKER_{k:02d}"
        for k, cluster in enumerate(clusters)
        for m in cluster.members
    }


def join_at_boundaries(
    turns: list[Any], boundaries: list[float], tolerance: float = 0.05
) -> list[Any]:
    """Sort turns; join a speaker's two turns that a block boundary cut in two.

    ``turns`` are objects with ``start``, ``end``, ``speaker`` and a dataclass-style
    ``_replace``-free constructor ``type(turn)(start, end, speaker)``.
    """
    out: list[Any] = []
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        at_cut = any(abs(turn.start - b) < tolerance for b in boundaries)
        match = None
        if at_cut:
            for k in range(len(out) - 1, max(-1, len(out) - 5), -1):
                prev = out[k]
                if prev.speaker == turn.speaker and abs(prev.end - turn.start) < 2 * tolerance:
                    match = k
                    break
        if match is None:
            out.append(turn)
        else:
            prev = out[match]
            out[match] = type(prev)(prev.start, max(prev.end, turn.end), prev.speaker)
    return out


def link_blocks(
    blocks: Sequence[BlockDiarization],
    *,
    threshold: float,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> list[SpeakerTurn]:
    """The recording's speaker turns from its blocks' diarizations, in time order.

    Each block's labels are mapped to global speakers by ``link_speakers``; a speaker's
    turn that a block boundary cut in two is joined again. One block: its turns as they are.
    """
    ordered = sorted(blocks, key=lambda b: b.start_s)
    if len(ordered) == 1:
        return sorted(ordered[0].turns, key=lambda t: (t.start, t.end))
    speakers: list[BlockSpeaker] = []
    for index, block in enumerate(ordered):
        speech: dict[str, float] = {}
        for turn in block.turns:
            speech[turn.speaker] = speech.get(turn.speaker, 0.0) + turn.end - turn.start
        for label, seconds in speech.items():
            centroid = block.centroids.get(label)
            vector = None if centroid is None else np.asarray(centroid, dtype=np.float64)
            speakers.append(BlockSpeaker(index, label, vector, seconds))
    mapping = link_speakers(
        speakers, threshold=threshold, min_speakers=min_speakers, max_speakers=max_speakers
    )
    merged = [
        SpeakerTurn(t.start, t.end, mapping[index, t.speaker])
        for index, block in enumerate(ordered)
        for t in block.turns
    ]
    return join_at_boundaries(merged, [block.start_s for block in ordered[1:]])
