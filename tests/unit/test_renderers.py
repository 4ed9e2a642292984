from __future__ import annotations

from contracts import ResultDocument, Segment
from ingest_service.renderers import render_srt, render_txt, render_vtt

DOC = ResultDocument(
    id="j",
    status="completed",
    language="en",
    duration_s=3723.5,
    text="Hello there. General --> Kenobi.",
    segments=[
        Segment(0.0, 1.5, "Hello there.", speaker="SPEAKER_00"),
        Segment(1.5, 1.6, "   "),
        Segment(3721.25, 3723.5, "General --> Kenobi."),
    ],
)


def test_srt() -> None:
    assert render_srt(DOC) == (
        "1\n00:00:00,000 --> 00:00:01,500\n[SPEAKER_00] Hello there.\n\n"
        "2\n01:02:01,250 --> 01:02:03,500\nGeneral --> Kenobi.\n"
    )


def test_vtt_escapes_arrows_and_names_voices() -> None:
    assert render_vtt(DOC) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n<v SPEAKER_00>Hello there.\n\n"
        "01:02:01.250 --> 01:02:03.500\nGeneral -> Kenobi.\n"
    )


def test_txt() -> None:
    assert render_txt(DOC) == "SPEAKER_00: Hello there.\nGeneral --> Kenobi.\n"
