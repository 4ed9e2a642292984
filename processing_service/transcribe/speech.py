"""Where a chunk holds speech: the voice-activity gate in front of the decoder.

Whisper decodes every 30 s window it is given. On a window without speech it may still
write text, and it tries its whole temperature fallback first: a chunk of ten minutes
of digital silence came out of tiny.en as 32 segments of "you" after three minutes of
decoding, and a 6-hour recording with long breaks took hours. Silero VAD (the ONNX
model faster-whisper ships, run by onnxruntime on one thread, no download) finds the
speech first. Both engines then decode the speech alone, cut out and joined (`Speech`),
as faster-whisper's own `vad_filter` does, and the times they give are put back on the
file's clock: a word keeps its place, and a segment whose words fall in two stretches of
speech is cut in two, so that no segment spans the silence between them.

The options are faster-whisper's defaults, which its users run on all kinds of audio:
speech above probability 0.5, a pause shorter than 2 s stays inside the speech around
it, and each stretch of speech is padded by 0.4 s each side so that no word is clipped.
TRANSCRIBE_VAD=false turns the gate off; a lower TRANSCRIBE_VAD_THRESHOLD keeps more of
faint, far-field speech (and of the noise around it).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Whisper's sampling rate: the audio the gate reads is the decoder's.
SAMPLE_RATE = 16_000
#: Silero's speech probability above which a frame is speech (TRANSCRIBE_VAD_THRESHOLD).
THRESHOLD = 0.5
#: A pause at least this long ends a stretch of speech.
MIN_SILENCE_MS = 2000
#: Kept on each side of a stretch of speech.
SPEECH_PAD_MS = 400

#: A decoded word: start, end (seconds), the word, its probability.
DecodedWord = tuple[float, float, str, float]
#: A decoded segment: start, end, text, and its words.
Decoded = tuple[float, float, str, list[DecodedWord]]


@dataclass(frozen=True)
class Speech:
    """The stretches of a file that hold speech (`spans`, in samples, in order and
    apart), and their audio joined (`audio`): what the engines decode."""

    spans: list[tuple[int, int]]
    audio: Any

    @functools.cached_property
    def joined_starts(self) -> list[int]:
        """Where each span starts in the joined audio, in samples."""
        starts, at = [], 0
        for start, end in self.spans:
            starts.append(at)
            at += end - start
        return starts

    def position(self, t: float, *, end: bool = False) -> float:
        """The file's time for time `t` (seconds) of the joined audio. A time where two
        spans meet is the start of the later one, or with `end` the end of the earlier."""
        starts = self.joined_starts
        sample = t * SAMPLE_RATE
        found = bisect.bisect_left(starts, sample) if end else bisect.bisect_right(starts, sample)
        i = min(max(found - 1, 0), len(self.spans) - 1)
        return (self.spans[i][0] + sample - starts[i]) / SAMPLE_RATE

    def _span_of(self, t: float) -> int:
        return max(bisect.bisect_right(self.joined_starts, t * SAMPLE_RATE) - 1, 0)

    def restore(self, segments: Sequence[Decoded]) -> list[Decoded]:
        """`segments` timed on the joined audio, timed on the file's clock; a segment is
        cut where its words pass from one span to the next."""
        restored: list[Decoded] = []
        for start, end, text, words in segments:
            if not words:
                restored.append((self.position(start), self.position(end, end=True), text, []))
                continue
            pieces: dict[int, list[DecodedWord]] = {}
            for w_start, w_end, word, probability in words:
                mapped = (self.position(w_start), self.position(w_end, end=True), word, probability)
                pieces.setdefault(self._span_of(w_start), []).append(mapped)
            if len(pieces) == 1:
                only = next(iter(pieces.values()))
                restored.append((self.position(start), self.position(end, end=True), text, only))
                continue
            for piece in pieces.values():
                restored.append((piece[0][0], piece[-1][1], "".join(w[2] for w in piece), piece))
        return restored


def vad_options(threshold: float = THRESHOLD) -> Any:
    """faster-whisper's `VadOptions` with the gate's settings."""
    from faster_whisper.vad import VadOptions  # noqa: PLC0415 - speech stack, workers only

    return VadOptions(
        threshold=threshold, min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS
    )


def find_speech(audio: Any, threshold: float | None = THRESHOLD) -> Speech:
    """The speech in `audio` (float samples at 16 kHz); no spans when there is none.
    Without a `threshold` (the gate off) all of `audio` counts as speech, one span."""
    import numpy as np  # noqa: PLC0415
    from faster_whisper.vad import get_speech_timestamps  # noqa: PLC0415

    if threshold is None:
        return Speech([(0, len(audio))], audio)
    if len(audio) == 0:
        return Speech([], audio)
    stamps = get_speech_timestamps(audio, vad_options(threshold), sampling_rate=SAMPLE_RATE)
    spans = [(int(s["start"]), int(s["end"])) for s in stamps]
    joined = np.concatenate([audio[a:b] for a, b in spans]) if spans else audio[:0]
    return Speech(spans, joined)
