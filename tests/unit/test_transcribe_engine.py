"""TRANSCRIBE_ENGINE picks the transcriber; the ctranslate2 engine finds its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from processing_service.runtime.config import ConfigError, Settings
from processing_service.transcribe.engine import make_transcriber
from processing_service.transcribe.faster import (
    CTranslate2Transcriber,
    cpu_threads,
    resolve_model_dir,
)
from processing_service.transcribe.whisper import WhisperTranscriber
from processing_service.worker import Models


def test_the_engine_setting_picks_the_transcriber() -> None:
    default = Settings.from_env({})
    assert type(make_transcriber(default.models)) is WhisperTranscriber
    chosen = Settings.from_env({"TRANSCRIBE_ENGINE": "ctranslate2", "WHISPER_MODEL": "base"})
    transcriber = make_transcriber(chosen.models)
    assert isinstance(transcriber, CTranslate2Transcriber)
    assert transcriber.name == "base"  # as the job's warnings name the model
    # The workers' models follow the setting.
    assert isinstance(Models.real(chosen).transcriber, CTranslate2Transcriber)
    assert type(Models.real(default).transcriber) is WhisperTranscriber


def test_the_model_directory_is_the_given_one_or_the_provisioned_one(tmp_path: Path) -> None:
    provisioned = tmp_path / "ctranslate2" / "tiny.en"
    provisioned.mkdir(parents=True)
    assert resolve_model_dir("tiny.en", tmp_path) == str(provisioned)
    assert resolve_model_dir(str(provisioned), Path("elsewhere")) == str(provisioned)
    # Not provisioned: faster-whisper's own name, which it downloads.
    assert resolve_model_dir("small", tmp_path) == "small"
    checkpoint = tmp_path / "tiny.en.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(ConfigError, match="model directory"):
        resolve_model_dir(str(checkpoint), tmp_path)


def test_threads_follow_torch_threads_else_the_cpus() -> None:
    assert cpu_threads(3) == 3
    assert cpu_threads(0) >= 1
