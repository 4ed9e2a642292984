"""The result document of a job: transcript, speakers and meeting notes."""

from __future__ import annotations

import msgspec

from contracts.messages import SCHEMA_VERSION


class AudioFacts(msgspec.Struct, frozen=True):
    """What `split` learned about a job's audio (stored on the job, shown by the API)."""

    codec: str
    container: str
    sample_rate: int
    channels: int
    #: Exact length after normalizing to 16 kHz mono.
    duration_s: float
    #: How many chunks the transcription fanned out over.
    chunks: int = 1


class Word(msgspec.Struct, frozen=True):
    """One recognised word with absolute times in seconds."""

    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None


class Segment(msgspec.Struct, frozen=True):
    """A stretch of speech; `speaker` is null until diarization has run."""

    start: float
    end: float
    text: str
    speaker: str | None = None
    words: list[Word] = msgspec.field(default_factory=list)


class Speaker(msgspec.Struct, frozen=True):
    """A speaker found by diarization, labelled in order of first appearance."""

    label: str
    talk_time_s: float
    turns: int


class SpeakerTurn(msgspec.Struct, frozen=True):
    """A stretch of time in which diarization heard one speaker (turns may overlap)."""

    start: float
    end: float
    speaker: str


class ActionItem(msgspec.Struct, frozen=True):
    """A commitment found in the meeting."""

    text: str
    owner: str | None = None
    due: str | None = None
    segment_index: int | None = None


class Decision(msgspec.Struct, frozen=True):
    """A decision found in the meeting."""

    text: str
    segment_index: int | None = None


class Analysis(msgspec.Struct, frozen=True):
    """Meeting notes derived from the transcript."""

    summary: str
    action_items: list[ActionItem] = msgspec.field(default_factory=list)
    decisions: list[Decision] = msgspec.field(default_factory=list)
    keywords: list[str] = msgspec.field(default_factory=list)


class ResultDocument(msgspec.Struct, frozen=True):
    """What `GET /v1/jobs/{id}/result` returns."""

    id: str
    status: str
    language: str | None
    duration_s: float | None
    text: str
    segments: list[Segment] = msgspec.field(default_factory=list)
    speakers: list[Speaker] = msgspec.field(default_factory=list)
    analysis: Analysis | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    version: int = SCHEMA_VERSION
    #: The diarization as found (what `?format=rttm` renders); empty until diarized.
    turns: list[SpeakerTurn] = msgspec.field(default_factory=list)
