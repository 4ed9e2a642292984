"""Transcribing audio files with openai-whisper: the transcribe stage's model adapter.

The model loads lazily, once per worker process (after Dramatiq forks), and is shared
by the process's threads.
"""

from __future__ import annotations

import importlib
import threading
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from contracts import Segment, Word
from processing_service.runtime.config import ModelSettings
from processing_service.runtime.errors import UploadMissing
from processing_service.transcribe.speech import Decoded, Speech, find_speech
from processing_service.transcribe.stitching import ChunkTranscript

_models: dict[str, Any] = {}
_lock = threading.Lock()
#: The watch of the transcription running on this thread (see `_WindowProgress`).
_running = threading.local()
#: whisper counts progress in mel frames: 100 per second of audio.
_FRAMES_PER_SECOND = 100

#: Called with the seconds of a file's audio decoded so far; raising stops the decoding.
Watch = Callable[[float], None]
#: Tokens of whisper's prompt (half its text context) kept for the transcript so far when
#: a job's own prompt is long: without them each window forgets the one before.
_CONTEXT_TOKENS = 48


class _WindowProgress:
    """Stands in for `tqdm.tqdm` inside `whisper.transcribe`, whose progress bar is the one
    hook openai-whisper gives into its decoding loop: it is updated after every 30 s
    window. Each update goes to the watch of the thread's running transcription."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._watch: Watch | None = getattr(_running, "watch", None)
        self._frames = 0

    def __enter__(self) -> _WindowProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, frames: int) -> None:
        self._frames += frames
        if self._watch is not None:
            self._watch(self._frames / _FRAMES_PER_SECOND)


def _hook_progress() -> None:
    # The module, not the `whisper.transcribe` function that the package exports.
    module = importlib.import_module("whisper.transcribe")
    vars(module)["tqdm"] = types.SimpleNamespace(tqdm=_WindowProgress)


class Transcriber(Protocol):
    """Transcribes one file; times in the result are shifted by `offset_s`."""

    #: The model's name, as the job's warnings mention it.
    name: str

    def __call__(
        self,
        path: Path,
        language: str | None,
        offset_s: float,
        *,
        watch: Watch | None = None,
        vocabulary: Sequence[str] = (),
        prompt: str | None = None,
    ) -> ChunkTranscript:
        """The file's transcript; `language` None detects it (multilingual models).

        `watch` gets the seconds of the file decoded so far, after each window; an
        exception it raises stops the transcription. `vocabulary` and `prompt` are the
        job's: terms to spell as given, and text that leads into the recording.
        """
        ...


def initial_prompt(prompt: str | None, vocabulary: Sequence[str]) -> str | None:
    """Whisper's prompt for a job: its own prompt, then `Glossary: a, b, c.`

    Whisper reads the prompt as the transcript of what came before, so terms listed in
    it come out spelled as listed. The glossary goes last because a prompt too long for
    the model is cut from the front.
    """
    parts = []
    if prompt and prompt.strip():
        text = prompt.strip()
        parts.append(text if text[-1] in ".!?" else f"{text}.")
    if vocabulary:
        parts.append(f"Glossary: {', '.join(vocabulary)}.")
    return " ".join(parts) or None


def fit_prompt(
    text: str,
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    text_ctx: int,
) -> str:
    """`text` cut from the front to leave room in whisper's prompt (half its `text_ctx`
    tokens) for `_CONTEXT_TOKENS` of the text before; `encode` and `decode` are the
    model's tokenizer's."""
    room = text_ctx // 2 - 1 - _CONTEXT_TOKENS
    tokens = encode(" " + text)
    return text if len(tokens) <= room else str(decode(tokens[-room:])).strip()


def _fitted_prompt(model: Any, text: str) -> str:
    """`text` cut from the front to leave room in whisper's prompt for the text before."""
    from whisper.tokenizer import get_tokenizer  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415

    tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages)
    return fit_prompt(text, tokenizer.encode, tokenizer.decode, model.dims.n_text_ctx)


class _EncoderReuse:
    """Stands in for a whisper model's `encoder.forward`, keeping each thread's last
    encoding: `model.transcribe` encodes a 30 s window to decode it, again for each
    temperature fallback, and once more to align its words (word timestamps), always from
    the same mel tensor. The encoder is a large part of a window's cost: on a 3-minute
    generated meeting (tiny.en, 2 threads) RTF 0.080-0.095 with the reuse against
    0.100-0.120 without. The words and times are the same on the test recordings
    (tests/integration/test_whisper_encoder_reuse.py); whisper's own alignment pass
    encodes without scaled-dot-product attention, so on a long recording the numerically
    different encoding it would have used can move a window boundary by a word.

    The cached mel is held, so no new tensor can take its memory while it is cached; its
    version counter tells an in-place change apart.
    """

    def __init__(self, forward: Callable[[Any], Any]) -> None:
        self._forward = forward
        self._last = threading.local()
        #: Encodings computed, and served from the cache (for tests and benchmarks).
        self.computed = 0
        self.reused = 0

    def __call__(self, mel: Any) -> Any:
        last = getattr(self._last, "entry", None)
        if last is not None:
            cached_mel, version, encoded = last
            if (
                cached_mel.data_ptr() == mel.data_ptr()
                and cached_mel.shape == mel.shape
                and cached_mel.stride() == mel.stride()
                and cached_mel.dtype == mel.dtype
                and mel._version == version
            ):
                self.reused += 1
                return encoded
        encoded = self._forward(mel)
        self.computed += 1
        self._last.entry = (mel, mel._version, encoded)
        return encoded


def reuse_encodings(model: Any) -> _EncoderReuse:
    """Make `model` encode each window once (see `_EncoderReuse`); idempotent."""
    current = model.encoder.forward
    if isinstance(current, _EncoderReuse):
        return current
    reuse = _EncoderReuse(current)
    model.encoder.forward = reuse
    return reuse


def resolve_model(spec: str, cache_dir: Path) -> str:
    """A checkpoint path if `spec` is a file or a cached model name, else the name itself."""
    if Path(spec).is_file():
        return spec
    cached = cache_dir / "whisper" / f"{spec}.pt"
    return str(cached) if cached.is_file() else spec


def get_model(spec: str, cache_dir: Path, torch_threads: int) -> Any:
    """The process's whisper model for `spec`, loaded on first use."""
    with _lock:
        if spec not in _models:
            import torch  # noqa: PLC0415 - the speech stack loads only in workers that need it

            from processing_service.transcribe.weights import load_whisper_checkpoint  # noqa: PLC0415

            if torch_threads:
                torch.set_num_threads(torch_threads)
            model = load_whisper_checkpoint(
                resolve_model(spec, cache_dir), download_root=str(cache_dir / "whisper")
            )
            reuse_encodings(model)
            _models[spec] = model
        return _models[spec]


def is_multilingual(model: Any) -> bool:
    return bool(model.is_multilingual)


def transcribe_file(
    model: Any,
    path: Path,
    language: str | None,
    offset_s: float,
    watch: Watch | None = None,
    *,
    prompt: str | None = None,
    beam_size: int = 1,
    vad_threshold: float | None = None,
) -> ChunkTranscript:
    """Transcribe one audio file; times in the result are shifted by `offset_s`.

    `prompt` (see `initial_prompt`) leads into every 30 s window, not only the first, so
    that a glossary still holds ten minutes into a chunk. With a `vad_threshold`, only
    the speech the voice-activity gate finds is decoded (`transcribe.speech`).
    """
    import whisper  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415

    if not path.exists():  # else the reason would be ffmpeg's whole banner
        raise UploadMissing(f"the chunk {path.name} is not in storage")
    audio = whisper.load_audio(str(path))
    if not is_multilingual(model):
        language = "en"
    speech = find_speech(audio, vad_threshold)
    if not speech.spans:
        return ChunkTranscript(language=language, segments=[])
    _hook_progress()
    _running.watch = None if watch is None else on_the_files_clock(watch, speech)
    try:
        result = model.transcribe(
            speech.audio,
            language=language,
            word_timestamps=True,
            fp16=False,
            verbose=None,
            initial_prompt=None if prompt is None else _fitted_prompt(model, prompt),
            carry_initial_prompt=prompt is not None,
            **({"beam_size": beam_size, "best_of": beam_size} if beam_size > 1 else {}),
        )
    finally:
        _running.watch = None
    decoded: list[Decoded] = [
        (
            seg["start"],
            seg["end"],
            seg["text"],
            [(w["start"], w["end"], w["word"], w["probability"]) for w in seg.get("words", [])],
        )
        for seg in result["segments"]
    ]
    return ChunkTranscript(
        language=result.get("language"), segments=shifted_segments(offset_s, decoded, speech)
    )


def on_the_files_clock(watch: Watch, speech: Speech) -> Watch:
    """`watch` fed with the file's time for the joined speech's: the silence the gate
    skipped counts as decoded."""
    return lambda decoded_s: watch(speech.position(decoded_s, end=True))


def shifted_segments(offset_s: float, decoded: Sequence[Decoded], speech: Speech) -> list[Segment]:
    """Segments decoded from `speech` as the file's segments, shifted by `offset_s`."""
    restored = speech.restore(decoded)
    return [
        shifted_segment(offset_s, (start, end, text), words) for start, end, text, words in restored
    ]


def shifted_segment(
    offset_s: float,
    segment: tuple[float, float, str],
    words: Sequence[tuple[float, float, str, float]],
) -> Segment:
    """A decoded segment (start, end, text) and its words (start, end, word, probability),
    times shifted by `offset_s`, rounded to milliseconds."""
    start, end, text = segment
    return Segment(
        start=round(offset_s + float(start), 3),
        end=round(offset_s + float(end), 3),
        text=str(text).strip(),
        words=[
            Word(
                start=round(offset_s + float(w_start), 3),
                end=round(offset_s + float(w_end), 3),
                word=str(word),
                probability=round(float(probability), 4),
            )
            for w_start, w_end, word, probability in words
        ],
    )


class WhisperTranscriber:
    """openai-whisper as configured by `ModelSettings`, loaded on first use.

    A subclass runs the same weights on another engine: its own `_model` and `_decode`.
    """

    def __init__(self, models: ModelSettings) -> None:
        self._models = models
        self.name = models.whisper_model

    def _model(self) -> Any:
        m = self._models
        return get_model(m.whisper_model, m.cache_dir, m.torch_threads)

    def _decode(self, model: Any, path: Path, *args: Any, prompt: str | None) -> ChunkTranscript:
        """`transcribe_file(model, path, language, offset_s, watch)` with the settings'."""
        m = self._models
        return transcribe_file(
            model, path, *args, prompt=prompt, beam_size=m.beam_size, vad_threshold=m.gate
        )

    def __call__(
        self,
        path: Path,
        language: str | None,
        offset_s: float,
        *,
        watch: Watch | None = None,
        vocabulary: Sequence[str] = (),
        prompt: str | None = None,
    ) -> ChunkTranscript:
        prompt = initial_prompt(prompt, vocabulary)
        return self._decode(self._model(), path, language, offset_s, watch, prompt=prompt)
