"""The transcription engine a worker runs, as TRANSCRIBE_ENGINE chooses."""

from __future__ import annotations

from processing_service.runtime.config import ModelSettings
from processing_service.transcribe.faster import CTranslate2Transcriber
from processing_service.transcribe.whisper import Transcriber, WhisperTranscriber


def make_transcriber(models: ModelSettings) -> Transcriber:
    """openai-whisper, or faster-whisper (CTranslate2) for `engine` "ctranslate2"; both
    load their model on the first call."""
    if models.engine == "ctranslate2":
        return CTranslate2Transcriber(models)
    return WhisperTranscriber(models)
