from __future__ import annotations

from contracts import Segment, SpeakerTurn, Word
from processing_service.diarize.attribution import attribute, relabel, summarize


def seg(*words: tuple[str, float, float]) -> Segment:
    ws = [Word(start=s, end=e, word=f" {w}", probability=0.9) for w, s, e in words]
    return Segment(ws[0].start, ws[-1].end, "".join(w.word for w in ws).strip(), words=ws)


def test_labels_follow_first_appearance() -> None:
    turns = relabel([SpeakerTurn(5, 6, "B"), SpeakerTurn(0, 2, "Z"), SpeakerTurn(2, 4, "B")])
    assert [(t.start, t.speaker) for t in turns] == [
        (0, "SPEAKER_00"),
        (2, "SPEAKER_01"),
        (5, "SPEAKER_01"),
    ]


def test_a_segment_spanning_a_speaker_change_is_split_at_the_word() -> None:
    segments = [seg(("hello", 0.0, 0.4), ("there", 0.5, 0.9), ("hi", 1.2, 1.4), ("back", 1.5, 1.8))]
    turns = [SpeakerTurn(0.0, 1.0, "x"), SpeakerTurn(1.1, 2.0, "y")]
    result = attribute(segments, turns)
    assert [(s.speaker, s.text) for s in result.segments] == [
        ("SPEAKER_00", "hello there"),
        ("SPEAKER_01", "hi back"),
    ]
    assert result.segments[1].start == 1.2
    assert all(w.speaker == s.speaker for s in result.segments for w in s.words)


def test_each_word_takes_the_turn_it_overlaps_most() -> None:
    # "word" (1.0-1.6) overlaps x by 0.1 s and y by 0.5 s; overlapping turns are allowed.
    segments = [seg(("word", 1.0, 1.6))]
    turns = [SpeakerTurn(0.0, 1.1, "x"), SpeakerTurn(1.1, 3.0, "y"), SpeakerTurn(1.5, 1.55, "z")]
    assert attribute(segments, turns).segments[0].speaker == "SPEAKER_01"


def test_words_in_pauses_take_the_nearest_or_neighbouring_speaker() -> None:
    segments = [seg(("one", 0.0, 0.5), ("two", 2.6, 2.9), ("three", 9.0, 9.3))]
    turns = [SpeakerTurn(0.0, 0.6, "x"), SpeakerTurn(3.0, 4.0, "y")]
    result = attribute(segments, turns)
    # "two" is 0.1 s from y's turn; "three" is far from everything and keeps its neighbour.
    assert [(s.text, s.speaker) for s in result.segments] == [
        ("one", "SPEAKER_00"),
        ("two three", "SPEAKER_01"),
    ]


def test_speakers_summarise_talk_time_and_turns() -> None:
    turns = relabel(
        [
            SpeakerTurn(0, 2, "a"),
            SpeakerTurn(2, 3, "a"),
            SpeakerTurn(3, 5, "b"),
            SpeakerTurn(5, 6, "a"),
        ]
    )
    summary = {s.label: (s.talk_time_s, s.turns) for s in summarize(turns)}
    assert summary == {"SPEAKER_00": (4.0, 2), "SPEAKER_01": (2.0, 1)}


def test_no_turns_leaves_speakers_unknown() -> None:
    result = attribute([seg(("alone", 0.0, 1.0))], [])
    assert result.segments[0].speaker is None
    assert result.speakers == []
