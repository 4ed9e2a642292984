"""A job's vocabulary teaches the real tiny.en model a name it cannot know.

"Quorvexa" is invented. Spoken by espeak-ng 1.51 (en-us) in the sentence below, tiny.en
wrote "Warmaker" without the vocabulary and "Quorvexa" with it, alone or among four
other invented names after a prompt (greedy decoding: the same on every run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("whisper")
from whisper.tokenizer import get_tokenizer  # type: ignore[import-untyped,unused-ignore]

from processing_service.runtime.config import ModelSettings
from processing_service.transcribe.stitching import ChunkTranscript
from processing_service.transcribe.whisper import (
    WhisperTranscriber,
    _fitted_prompt,
    initial_prompt,
)
from tests.support.models import MODEL_CACHE_DIR, provision
from tests.support.speech import speak

pytestmark = [
    pytest.mark.models,
    # whisper's tokenizer leaves its vocabulary file open (closed at garbage collection).
    pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"),
]

TERM = "Quorvexa"
SENTENCE = f"Please send the report to {TERM} before Friday."


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speak(SENTENCE, tmp_path_factory.mktemp("speech") / "term.wav")


@pytest.fixture(scope="module")
def transcriber() -> WhisperTranscriber:
    provision("processing_service.transcribe.weights", "--model", "tiny.en")  # when missing
    return WhisperTranscriber(ModelSettings(MODEL_CACHE_DIR, "tiny.en", torch_threads=2))


def _text(result: ChunkTranscript) -> str:
    return " ".join(segment.text for segment in result.segments)


def test_the_vocabulary_makes_whisper_spell_an_invented_name(
    speech: Path, transcriber: WhisperTranscriber
) -> None:
    without = _text(transcriber(speech, "en", 0.0))
    taught = transcriber(speech, "en", 0.0, vocabulary=[TERM])
    assert "send the report to" in without.lower()  # the sentence itself is heard
    assert TERM.lower() not in without.lower(), without
    assert TERM in _text(taught), _text(taught)
    assert "send the report to" in _text(taught).lower()
    assert "Glossary" not in _text(taught)  # the prompt is context, not transcript
    words = [w for s in taught.segments for w in s.words]
    assert any(TERM in w.word for w in words)
    assert all(0 <= w.start <= w.end for w in words)


def test_the_term_holds_among_others_and_after_a_prompt(
    speech: Path, transcriber: WhisperTranscriber
) -> None:
    vocabulary = ["Brixomar", "Zyntrelle", TERM, "Kelvaro", "Drumtaff"]
    result = transcriber(
        speech, "en", 0.0, vocabulary=vocabulary, prompt="The weekly call about the launch"
    )
    assert TERM in _text(result), _text(result)


def test_a_prompt_longer_than_whisper_holds_is_cut_from_the_front(
    speech: Path, transcriber: WhisperTranscriber
) -> None:
    # 100 terms behind a 1000-character prompt: several times what whisper's prompt
    # holds. Cut from the front, it keeps the glossary's end and room for the text
    # before each window; the transcription runs as usual.
    vocabulary = [f"Project {i:02d} alpha beta gamma delta epsilon" for i in range(99)] + [TERM]
    text = initial_prompt("A weekly call. " * 66, vocabulary)
    assert text is not None
    model = transcriber._model()
    fitted = _fitted_prompt(model, text)
    tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages)
    assert len(tokenizer.encode(" " + fitted)) <= model.dims.n_text_ctx // 2 - 1 - 48
    assert fitted.endswith(f", {TERM}.")
    assert len(fitted) < len(text) / 4
    result = transcriber(speech, "en", 0.0, vocabulary=vocabulary, prompt="A weekly call. " * 66)
    assert "send the report to" in _text(result).lower()
