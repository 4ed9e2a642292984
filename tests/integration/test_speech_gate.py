"""The voice-activity gate in front of both engines, on real weights (tiny.en, base) and
real silence: silence gives no words, speech between silences keeps its words and its
times, progress counts the skipped silence, the language is heard in the speech."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from processing_service.runtime.config import ModelSettings
from processing_service.transcribe.faster import CTranslate2Transcriber
from processing_service.transcribe.stitching import ChunkTranscript
from processing_service.transcribe.whisper import Transcriber, WhisperTranscriber
from tests.support.models import MODEL_CACHE_DIR, provision
from tests.support.speech import MEETING_SENTENCES, duration_s, speak
from tests.support.wer import word_error_rate

pytestmark = [
    pytest.mark.models,
    pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"),
]

TEXT = " ".join(MEETING_SENTENCES[:2])
#: Silence before and after the speech: more than a whisper window before it.
LEAD_S = 40.0
TAIL_S = 30.0
#: Word error against the transcript of the speech alone (no silence around it).
MAX_DIFFERENCE = 0.1
ENGINES = ("openai-whisper", "ctranslate2")


def _transcriber(engine: str, model: str = "tiny.en", **changes: Any) -> Transcriber:
    settings = ModelSettings(MODEL_CACHE_DIR, model, torch_threads=2, engine=engine, **changes)
    if engine == "ctranslate2":
        provision("processing_service.transcribe.weights", "--model", model, "--ctranslate2")
        return CTranslate2Transcriber(settings)
    provision("processing_service.transcribe.weights", "--model", model)
    return WhisperTranscriber(settings)


def _padded(speech: Path, out: Path, lead_s: float, tail_s: float) -> Path:
    """`speech` as 16 kHz mono with digital silence before and after it (sox)."""
    subprocess.run(
        ["sox", str(speech), "-r", "16000", "-c", "1", str(out), "pad", str(lead_s), str(tail_s)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def silence(folder: Path) -> Path:
    """A minute of digital silence: tiny.en without the gate wrote "you" into it."""
    out = folder / "silence.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(out), "trim", "0", "60"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


@pytest.fixture(scope="module")
def speech(folder: Path) -> Path:
    return speak(TEXT, folder / "speech.wav")


@pytest.fixture(scope="module")
def between_silences(folder: Path, speech: Path) -> Path:
    return _padded(speech, folder / "between.wav", LEAD_S, TAIL_S)


def _words(result: ChunkTranscript) -> list[Any]:
    return [w for s in result.segments for w in s.words]


@pytest.mark.parametrize("engine", ENGINES)
def test_silence_gives_no_words(engine: str, silence: Path) -> None:
    result = _transcriber(engine)(silence, None, 0.0)
    assert result.segments == []
    assert result.language == "en"  # an English-only model: never detected


@pytest.mark.parametrize("engine", ENGINES)
def test_speech_between_silences_keeps_its_words_and_times(
    engine: str, speech: Path, between_silences: Path
) -> None:
    transcribe = _transcriber(engine)
    alone = " ".join(s.text for s in transcribe(speech, None, 0.0).segments)
    result = transcribe(between_silences, None, 100.0)
    text = " ".join(s.text for s in result.segments)
    assert word_error_rate(alone, text) <= MAX_DIFFERENCE, (alone, text)
    words = _words(result)
    # Times are the file's (shifted by the offset), not the clipped speech's.
    first, last = 100.0 + LEAD_S, 100.0 + LEAD_S + duration_s(speech)
    assert all(first - 0.5 <= w.start <= w.end <= last + 0.5 for w in words), words
    assert words[0].start < first + 1.0


def test_progress_counts_the_silence_it_skipped(between_silences: Path) -> None:
    seen: list[float] = []
    _transcriber("openai-whisper")(between_silences, None, 0.0, watch=seen.append)
    assert seen == sorted(seen)
    # Past the speech, which starts 40 s in: the silence before it counts as decoded.
    assert seen[-1] >= duration_s(between_silences) - TAIL_S - 1.0, seen


def test_the_language_is_heard_in_the_speech_not_the_silence_before_it(folder: Path) -> None:
    # whisper alone listens to the first 30 s, here silence, which base hears as English.
    german = speak(
        "Wir treffen uns morgen um zehn Uhr im großen Saal, um das Budget zu besprechen.",
        folder / "german.wav",
        voice="de",
    )
    padded = _padded(german, folder / "german-padded.wav", LEAD_S, 5.0)
    result = _transcriber("openai-whisper", "base")(padded, None, 0.0)
    assert result.language == "de", result
