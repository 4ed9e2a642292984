"""Transcribing audio files with faster-whisper (CTranslate2): the transcribe stage's
other model adapter, chosen by TRANSCRIBE_ENGINE=ctranslate2.

The same Whisper weights as the openai-whisper engine (the model directory `make models`
provisions holds the very `model.bin` the openai-whisper checkpoint is rebuilt from),
run by CTranslate2 without torch. The model loads lazily, once per worker process, and
is shared by the process's threads.

Two things faster-whisper does its own way:

* Its `initial_prompt` leads into the first window only and scrolls out with the text
  after it. Its `hotwords` lead into every window, as openai-whisper's
  `carry_initial_prompt` does, so the job's prompt goes there; `_CarriedPrompt` then keeps
  the prompt and the text before it within half the text context, as openai-whisper does
  (faster-whisper alone would add up to 223 tokens of text before on top, leaving the
  window little room to decode).
* `transcribe` returns a lazy generator: the decoding happens as it is iterated, one
  segment at a time, and the watch is called after each segment. A window that holds no
  speech yields nothing; with the voice-activity gate on (the default) silence is not
  decoded at all, and counts as done once the speech after it is.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

from processing_service.runtime.config import ConfigError
from processing_service.runtime.errors import UploadMissing
from processing_service.transcribe.speech import Decoded, find_speech
from processing_service.transcribe.stitching import ChunkTranscript
from processing_service.transcribe.whisper import (
    Watch,
    WhisperTranscriber,
    fit_prompt,
    on_the_files_clock,
    shifted_segments,
)

_models: dict[tuple[str, str, int], Any] = {}
_lock = threading.Lock()


@functools.cache
def _model_class() -> type[Any]:
    """faster-whisper's `WhisperModel` with the prompt carried as openai-whisper does."""
    from faster_whisper import WhisperModel  # noqa: PLC0415

    class _CarriedPrompt(WhisperModel):  # type: ignore[misc]
        def get_prompt(
            self,
            tokenizer: Any,
            previous_tokens: list[int],
            without_timestamps: bool = False,
            prefix: str | None = None,
            hotwords: str | None = None,
        ) -> list[int]:
            if hotwords and not prefix:  # the hotwords lead into the prompt then
                room = self.max_length // 2 - 1 - len(tokenizer.encode(" " + hotwords.strip()))
                previous_tokens = previous_tokens[max(len(previous_tokens) - room, 0) :]
            prompt: list[int] = super().get_prompt(
                tokenizer, previous_tokens, without_timestamps, prefix, hotwords
            )
            return prompt

    return _CarriedPrompt


def resolve_model_dir(spec: str, cache_dir: Path) -> str:
    """`spec` if it is a directory, else the model directory `make models` provisioned
    for the name (`<cache_dir>/ctranslate2/<spec>`), else the name itself, which
    faster-whisper downloads from the Hugging Face hub."""
    if Path(spec).is_dir():
        return spec
    if Path(spec).is_file():
        raise ConfigError(f"{spec} is a file; the ctranslate2 engine loads a model directory")
    cached = cache_dir / "ctranslate2" / spec
    return str(cached) if cached.is_dir() else spec


def cpu_threads(torch_threads: int) -> int:
    """TORCH_THREADS, or one thread per CPU this process may use (CTranslate2's own
    default, 4, would crowd a smaller machine)."""
    return torch_threads or len(os.sched_getaffinity(0))


def get_model(spec: str, cache_dir: Path, compute_type: str, threads: int) -> Any:
    """The process's faster-whisper model for `spec`, loaded on first use."""
    key = (spec, compute_type, threads)
    with _lock:
        if key not in _models:
            _models[key] = _model_class()(
                resolve_model_dir(spec, cache_dir),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads(threads),
            )
        return _models[key]


def _fitted_prompt(model: Any, text: str) -> str:
    tokenizer = model.hf_tokenizer  # a `tokenizers.Tokenizer`

    def encode(piece: str) -> list[int]:
        return list(tokenizer.encode(piece, add_special_tokens=False).ids)

    return fit_prompt(text, encode, tokenizer.decode, model.max_length)


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

    Decoded as the openai-whisper engine decodes (temperature fallback, word timestamps,
    `beam_size` hypotheses and as many samples at a fallback); `prompt` (see
    `initial_prompt`) leads into every 30 s window. `watch` gets the seconds of the file
    decoded after each segment; an exception it raises stops the decoding. With a
    `vad_threshold`, only the speech the voice-activity gate finds is decoded, as the
    other engine does (`transcribe.speech`; not faster-whisper's `vad_filter`, so that
    both engines hear the same speech and time it alike).
    """
    from faster_whisper import decode_audio  # noqa: PLC0415

    if not path.exists():  # else the reason would be PyAV's
        raise UploadMissing(f"the chunk {path.name} is not in storage")
    audio = decode_audio(str(path))
    if not model.model.is_multilingual:
        language = "en"
    speech = find_speech(audio, vad_threshold)
    if not speech.spans:
        return ChunkTranscript(language=language, segments=[])
    if watch is not None:
        watch = on_the_files_clock(watch, speech)
    segments, info = model.transcribe(
        speech.audio,
        language=language,
        beam_size=beam_size,
        best_of=beam_size,
        word_timestamps=True,
        hotwords=None if prompt is None else _fitted_prompt(model, prompt),
    )
    decoded: list[Decoded] = []
    reached = 0.0
    for seg in segments:  # each step decodes
        words = [(w.start, w.end, w.word, w.probability) for w in seg.words or ()]
        decoded.append((seg.start, seg.end, seg.text, words))
        reached = max(reached, float(seg.end))
        if watch is not None:
            watch(reached)
    if watch is not None:
        watch(info.duration)
    return ChunkTranscript(
        language=info.language, segments=shifted_segments(offset_s, decoded, speech)
    )


class CTranslate2Transcriber(WhisperTranscriber):
    """faster-whisper as configured by `ModelSettings`, loaded on first use."""

    def _model(self) -> Any:
        m = self._models
        return get_model(m.whisper_model, m.cache_dir, m.compute_type, m.torch_threads)

    def _decode(self, model: Any, path: Path, *args: Any, prompt: str | None) -> ChunkTranscript:
        m = self._models
        return transcribe_file(
            model, path, *args, prompt=prompt, beam_size=m.beam_size, vad_threshold=m.gate
        )
