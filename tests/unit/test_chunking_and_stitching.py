from __future__ import annotations

import itertools

import pytest

from contracts import Segment, Word
from processing_service.split.planning import plan_chunks
from processing_service.transcribe.stitching import ChunkTranscript, TimedChunk, full_text, stitch


def test_short_audio_is_one_chunk() -> None:
    assert [(c.start_s, c.end_s) for c in plan_chunks(1799.0, 1800, 600, 4)] == [(0.0, 1799.0)]


def test_long_audio_is_cut_into_equal_overlapping_chunks() -> None:
    chunks = plan_chunks(3601.0, 1800, 600, 4)
    assert len(chunks) == 7
    assert chunks[0].start_s == 0.0
    assert chunks[-1].end_s == 3601.0
    for a, b in itertools.pairwise(chunks):
        assert a.end_s - b.start_s == pytest.approx(4.0, abs=0.01)  # overlap
        assert b.end_s - b.start_s <= 600 + 4 + 0.01
    assert [c.index for c in chunks] == list(range(7))


def _words(*spec: tuple[str, float]) -> list[Word]:
    return [Word(start=t, end=t + 0.3, word=f" {w}", probability=0.9) for w, t in spec]


def _segment(*spec: tuple[str, float]) -> Segment:
    words = _words(*spec)
    return Segment(
        words[0].start, words[-1].end, "".join(w.word for w in words).strip(), words=words
    )


def test_stitching_keeps_each_overlapped_word_once() -> None:
    # Chunk 0 covers 0-12 s, chunk 1 covers 10-20 s: both heard "delta echo" around 10-12 s.
    first = ChunkTranscript(
        "en",
        [
            _segment(("alpha", 1.0), ("bravo", 5.0), ("charlie", 9.0)),
            _segment(("delta", 10.2), ("echo", 11.5)),
        ],
    )
    second = ChunkTranscript(
        "en",
        [_segment(("delta", 10.25), ("echo", 11.45), ("foxtrot", 14.0)), _segment(("golf", 18.0))],
    )
    language, segments = stitch([TimedChunk(10.0, 20.0, second), TimedChunk(0.0, 12.0, first)])
    assert language == "en"
    assert full_text(segments) == "alpha bravo charlie delta echo foxtrot golf"
    starts = [w.start for s in segments for w in s.words]
    assert starts == sorted(starts)
    # The cut is at 11 s: "delta" (mid 10.35) comes from chunk 0, "echo" from chunk 1.
    assert segments[1].text == "delta"
    assert segments[2].text == "echo foxtrot"


def test_stitching_a_single_chunk_changes_nothing() -> None:
    transcript = ChunkTranscript("de", [_segment(("hallo", 0.5), ("welt", 1.0))])
    language, segments = stitch([TimedChunk(0.0, 2.0, transcript)])
    assert (language, segments) == ("de", transcript.segments)
