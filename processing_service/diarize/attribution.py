"""Merging a diarization into a transcript: who said each word, segment and turn.

Pure functions: diarization turns (with whatever labels the pipeline used) and whisper
segments in, speaker-attributed segments, a speaker summary and relabelled turns out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contracts import Segment, Speaker, SpeakerTurn, Word

#: A word in a pause between turns takes the nearest turn's speaker within this distance.
NEAREST_TURN_S = 1.0


@dataclass(frozen=True)
class Attribution:
    segments: list[Segment]
    speakers: list[Speaker]
    turns: list[SpeakerTurn]


def relabel(turns: Iterable[SpeakerTurn]) -> list[SpeakerTurn]:
    """Sort turns by time and name speakers SPEAKER_00, SPEAKER_01, ... by first appearance."""
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    names: dict[str, str] = {}
    for turn in ordered:
        names.setdefault(turn.speaker, f"SPEAKER_{len(names):02d}")
    return [SpeakerTurn(t.start, t.end, names[t.speaker]) for t in ordered if t.end > t.start]


def _overlap(a_start: float, a_end: float, b: SpeakerTurn) -> float:
    return max(0.0, min(a_end, b.end) - max(a_start, b.start))


def _speaker_of_spans(
    spans: Sequence[tuple[float, float]], turns: Sequence[SpeakerTurn]
) -> list[str | None]:
    """For each (start, end) span, sorted by start: the speaker overlapping it most.

    A sweep over turns sorted by start keeps only the turns that can still overlap.
    """
    result: list[str | None] = []
    active: list[SpeakerTurn] = []
    j = 0
    for start, end in spans:
        while j < len(turns) and turns[j].start < end:
            active.append(turns[j])
            j += 1
        active = [t for t in active if t.end > start]
        talk: dict[str, float] = {}
        for turn in active:
            talk[turn.speaker] = talk.get(turn.speaker, 0.0) + _overlap(start, end, turn)
        best = max(talk.items(), key=lambda kv: kv[1], default=None)
        result.append(best[0] if best and best[1] > 0 else None)
    return result


def _nearest(start: float, end: float, turns: Sequence[SpeakerTurn]) -> str | None:
    best, distance = None, NEAREST_TURN_S
    for turn in turns:
        gap = max(turn.start - end, start - turn.end)
        if gap <= distance:
            best, distance = turn.speaker, gap
    return best


def _fill_gaps(labels: list[str | None]) -> list[str | None]:
    """Words no turn covers take their neighbour's speaker (previous, else next)."""
    filled = list(labels)
    for i in range(1, len(filled)):
        if filled[i] is None:
            filled[i] = filled[i - 1]
    for i in range(len(filled) - 2, -1, -1):
        if filled[i] is None:
            filled[i] = filled[i + 1]
    return filled


def _split(segment: Segment, words: list[Word]) -> list[Segment]:
    runs: list[list[Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    if len(runs) == 1:
        return [Segment(segment.start, segment.end, segment.text, words[0].speaker, words)]
    return [
        Segment(
            run[0].start, run[-1].end, "".join(w.word for w in run).strip(), run[0].speaker, run
        )
        for run in runs
    ]


def summarize(turns: Sequence[SpeakerTurn]) -> list[Speaker]:
    """Talk time and number of turns per speaker; consecutive turns of one speaker are one."""
    talk: dict[str, float] = {}
    count: dict[str, int] = {}
    previous = None
    for turn in turns:
        talk[turn.speaker] = talk.get(turn.speaker, 0.0) + (turn.end - turn.start)
        if turn.speaker != previous:
            count[turn.speaker] = count.get(turn.speaker, 0) + 1
        previous = turn.speaker
    return [Speaker(label, round(talk[label], 3), count[label]) for label in sorted(talk)]


def attribute(segments: Sequence[Segment], raw_turns: Iterable[SpeakerTurn]) -> Attribution:
    """Give every word the speaker whose turn overlaps it most, splitting segments at changes."""
    turns = relabel(raw_turns)
    by_start = sorted(turns, key=lambda t: t.start)
    words = [w for s in segments for w in s.words]
    order = sorted(range(len(words)), key=lambda i: words[i].start)
    found = _speaker_of_spans([(words[i].start, words[i].end) for i in order], by_start)
    labels: list[str | None] = [None] * len(words)
    for i, label in zip(order, found, strict=True):
        labels[i] = label or _nearest(words[i].start, words[i].end, by_start)

    out: list[Segment] = []
    k = 0
    for segment in segments:
        count = len(segment.words)
        if count == 0:
            label = _speaker_of_spans([(segment.start, segment.end)], by_start)[0]
            out.append(Segment(segment.start, segment.end, segment.text, label, []))
            continue
        mine = _fill_gaps(labels[k : k + count])
        k += count
        tagged = [
            Word(w.start, w.end, w.word, w.probability, speaker)
            for w, speaker in zip(segment.words, mine, strict=True)
        ]
        out.extend(_split(segment, tagged))
    return Attribution(segments=out, speakers=summarize(turns), turns=turns)
