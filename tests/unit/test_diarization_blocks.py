"""Block planning and cross-block speaker linking for long recordings (no models needed)."""

from __future__ import annotations

import io
import wave

import pytest

np = pytest.importorskip("numpy")

from contracts import SpeakerTurn  # noqa: E402
from processing_service.diarize.blocks import (  # noqa: E402
    BlockSpeaker,
    join_at_boundaries,
    link_speakers,
    plan_blocks,
    read_block,
)

RATE = 16000


def _unit(angle_deg: float) -> object:
    """A 2-D unit vector; cosine distance between two is 1 - cos(angle difference)."""
    a = np.radians(angle_deg)
    return np.array([np.cos(a), np.sin(a)])


def _wav(samples: object) -> wave.Wave_read:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    buffer.seek(0)
    return wave.open(buffer, "rb")


def test_speakers_are_linked_across_blocks_by_centroid() -> None:
    speakers = [
        BlockSpeaker(0, "SPEAKER_00", _unit(0), 100.0),
        BlockSpeaker(0, "SPEAKER_01", _unit(90), 80.0),
        BlockSpeaker(1, "SPEAKER_00", _unit(88), 60.0),  # block 1 found them in another order
        BlockSpeaker(1, "SPEAKER_01", _unit(3), 50.0),
        BlockSpeaker(2, "SPEAKER_00", _unit(180), 40.0),  # a newcomer
    ]
    mapping = link_speakers(speakers, threshold=0.3)
    assert mapping[0, "SPEAKER_00"] == mapping[1, "SPEAKER_01"] == "SPEAKER_00"
    assert mapping[0, "SPEAKER_01"] == mapping[1, "SPEAKER_00"] == "SPEAKER_01"
    assert mapping[2, "SPEAKER_00"] == "SPEAKER_02"


def test_two_speakers_of_one_block_stay_apart_unless_a_hint_forces_it() -> None:
    # Very similar centroids, but pyannote told them apart within block 0.
    speakers = [BlockSpeaker(0, "A", _unit(0), 10.0), BlockSpeaker(0, "B", _unit(5), 10.0)]
    assert len(set(link_speakers(speakers, threshold=0.5).values())) == 2
    assert len(set(link_speakers(speakers, threshold=0.5, max_speakers=1).values())) == 1


def test_hints_bound_the_number_of_global_speakers() -> None:
    speakers = [
        BlockSpeaker(block, "S", _unit(angle), 10.0)
        for block, angle in enumerate((0, 2, 60, 62, 150, 152))
    ]
    assert len(set(link_speakers(speakers, threshold=0.05).values())) == 3
    # num_speakers=2 (min = max = 2): merging goes on past the threshold, and stops at 2.
    forced = link_speakers(speakers, threshold=0.05, min_speakers=2, max_speakers=2)
    assert len(set(forced.values())) == 2
    # min_speakers stops merging early even when everything is within the threshold.
    assert len(set(link_speakers(speakers, threshold=2.0, min_speakers=4).values())) == 4
    assert len(set(link_speakers(speakers, threshold=2.0).values())) == 1


def test_a_speaker_without_centroid_is_kept_unless_forced() -> None:
    speakers = [
        BlockSpeaker(0, "A", _unit(0), 10.0),
        BlockSpeaker(1, "A", None, 1.0),
        BlockSpeaker(1, "B", _unit(1), 10.0),
    ]
    mapping = link_speakers(speakers, threshold=0.3)
    assert mapping[0, "A"] == mapping[1, "B"] != mapping[1, "A"]
    assert len(set(link_speakers(speakers, threshold=0.3, max_speakers=1).values())) == 1


def test_short_audio_is_one_block() -> None:
    wav = _wav(np.zeros(5 * RATE))
    assert plan_blocks(wav, block_s=10.0) == [(0, 5 * RATE)]
    assert plan_blocks(wav, block_s=0) == [(0, 5 * RATE)]


def test_blocks_are_cut_in_a_pause_near_the_nominal_boundary() -> None:
    # 40 s of noise-like "speech" with a 1 s pause at 18.5-19.5 s; nominal cut at 20 s.
    rng = np.random.default_rng(0)
    audio = rng.integers(-8000, 8000, 40 * RATE)
    audio[int(18.5 * RATE) : int(19.5 * RATE)] = 0
    blocks = plan_blocks(_wav(audio), block_s=20.0)
    assert len(blocks) == 2
    assert blocks[0][0] == 0
    assert blocks[-1][1] == 40 * RATE
    assert blocks[0][1] == blocks[1][0]
    assert 18.5 * RATE < blocks[0][1] < 19.5 * RATE


def test_read_block_scales_and_downmixes() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.array([16384, 0, -32768, -32768], dtype="<i2").tobytes())
    buffer.seek(0)
    with wave.open(buffer, "rb") as wav:
        block = read_block(wav, 0, 2)
    assert block.shape == (1, 2)
    assert block.dtype == np.float32
    assert block.tolist() == [[0.25, -1.0]]


def test_turns_cut_by_a_block_boundary_are_joined() -> None:
    turns = [
        SpeakerTurn(5.0, 9.0, "S1"),
        SpeakerTurn(0.0, 4.0, "S0"),
        SpeakerTurn(10.0, 12.0, "S1"),  # cut at 12.0 s
        SpeakerTurn(12.0, 13.5, "S1"),
        SpeakerTurn(12.0, 12.5, "S0"),  # overlapping speaker, also starts at the cut
    ]
    joined = join_at_boundaries(turns, [12.0])
    assert joined == [
        SpeakerTurn(0.0, 4.0, "S0"),
        SpeakerTurn(5.0, 9.0, "S1"),
        SpeakerTurn(10.0, 13.5, "S1"),
        SpeakerTurn(12.0, 12.5, "S0"),
    ]
    # Away from a boundary, a speaker's consecutive turns are left as pyannote gave them.
    assert join_at_boundaries(turns[:3], [12.0]) == sorted(turns[:3], key=lambda t: t.start)
