"""Each 30 s window is encoded once: the word-timestamp pass (and any temperature
fallback) reuses the decoding's encoding, with the same words and times as without."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("whisper")

from processing_service.transcribe.weights import load_whisper_checkpoint
from processing_service.transcribe.whisper import (
    _EncoderReuse,
    resolve_model,
    reuse_encodings,
    transcribe_file,
)
from tests.support.models import MODEL_CACHE_DIR, provision
from tests.support.speech import speak, two_windows

pytestmark = [
    pytest.mark.models,
    pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"),
]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_windows(tmp_path_factory.mktemp("speech"))


def fresh_model() -> object:
    provision("processing_service.transcribe.weights", "--model", "tiny.en")  # when missing
    return load_whisper_checkpoint(resolve_model("tiny.en", MODEL_CACHE_DIR))


class Counting:
    """An encoder forward that counts its calls."""

    def __init__(self, forward: object) -> None:
        self.forward = forward
        self.calls = 0

    def __call__(self, mel: object) -> object:
        self.calls += 1
        return self.forward(mel)  # type: ignore[operator]


def test_each_window_is_encoded_once_with_the_same_words_and_times(speech: Path) -> None:
    import torch  # noqa: PLC0415

    torch.set_num_threads(2)
    plain = fresh_model()
    counted = Counting(plain.encoder.forward)  # type: ignore[attr-defined]
    plain.encoder.forward = counted  # type: ignore[attr-defined]
    torch.manual_seed(0)  # a temperature fallback samples: the same draws for both
    expected = transcribe_file(plain, speech, "en", 0.0)

    reusing = fresh_model()
    reuse = reuse_encodings(reusing)
    assert reuse_encodings(reusing) is reuse  # once only
    assert isinstance(reusing.encoder.forward, _EncoderReuse)  # type: ignore[attr-defined]
    torch.manual_seed(0)
    got = transcribe_file(reusing, speech, "en", 0.0)

    assert got == expected
    assert sum(len(s.words) for s in got.segments) > 20
    # Without reuse every window is encoded at least twice (decode, then align words).
    windows = reuse.computed
    assert windows >= 2
    assert counted.calls >= 2 * windows
    assert reuse.reused >= windows


def test_the_beam_size_setting_reaches_whisper(tmp_path: Path) -> None:
    from processing_service.runtime.config import ModelSettings  # noqa: PLC0415
    from processing_service.transcribe.whisper import WhisperTranscriber, get_model  # noqa: PLC0415

    settings = ModelSettings(MODEL_CACHE_DIR, "tiny.en", torch_threads=2, beam_size=5)
    model = get_model(settings.whisper_model, settings.cache_dir, settings.torch_threads)
    asked: list[tuple[int | None, int | None]] = []
    decode = model.decode

    def recording(mel: object, options: object) -> object:
        asked.append((options.beam_size, options.best_of))  # type: ignore[attr-defined]
        return decode(mel, options)

    model.decode = recording
    try:
        clip = speak("The budget review starts at ten tomorrow.", tmp_path / "clip.wav")
        result = WhisperTranscriber(settings)(clip, "en", 0.0)
    finally:
        del model.decode  # the class's own again
    assert "budget" in " ".join(s.text for s in result.segments).lower()
    assert asked
    # Beam search at temperature 0; a fallback samples best_of candidates instead.
    assert all(beam == 5 or (beam is None and best_of == 5) for beam, best_of in asked)
    assert asked[0][0] == 5  # the first try of a window is at temperature 0
