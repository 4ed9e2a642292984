"""Rendering a result document as plain text, SRT or WebVTT captions."""

from __future__ import annotations

from collections.abc import Callable

from contracts import ResultDocument, Segment


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(doc: ResultDocument) -> list[Segment]:
    return [s for s in doc.segments if s.text.strip()]


def render_txt(doc: ResultDocument) -> str:
    """One line per segment, prefixed with the speaker when known."""
    lines = [f"{s.speaker}: {s.text}" if s.speaker else s.text for s in _cues(doc)]
    return "\n".join(lines) + "\n" if lines else ""


def render_srt(doc: ResultDocument) -> str:
    blocks = []
    for number, s in enumerate(_cues(doc), start=1):
        text = f"[{s.speaker}] {s.text}" if s.speaker else s.text
        blocks.append(f"{number}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{text}\n")
    return "\n".join(blocks)


def render_vtt(doc: ResultDocument) -> str:
    blocks = ["WEBVTT\n"]
    for s in _cues(doc):
        text = s.text.replace("-->", "->")
        if s.speaker:
            text = f"<v {s.speaker}>{text}"
        blocks.append(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{text}\n")
    return "\n".join(blocks)


def render_rttm(doc: ResultDocument) -> str:
    """The diarization as NIST RTTM: one SPEAKER line per turn."""
    return "".join(
        f"SPEAKER {doc.id} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
        for t in doc.turns
    )


#: format name → (renderer, media type)
RENDERERS: dict[str, tuple[Callable[[ResultDocument], str], str]] = {
    "txt": (render_txt, "text/plain; charset=utf-8"),
    "srt": (render_srt, "application/x-subrip; charset=utf-8"),
    "vtt": (render_vtt, "text/vtt; charset=utf-8"),
    "rttm": (render_rttm, "text/plain; charset=utf-8"),
}
