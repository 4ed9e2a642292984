"""The processing workers' settings, read from an environment mapping."""

from __future__ import annotations

import pytest

from contracts import Stage
from processing_service.runtime.config import MAX_HELD_MS, ConfigError, Settings


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.diarization.segmentation_step == 0.33
    assert settings.diarization.block_s == 1800.0
    assert settings.diarization.max_duration_s == 10 * 3600
    assert all(p.time_limit_ms <= MAX_HELD_MS for p in settings.policies.values())
    assert settings.models.beam_size == 1  # greedy, as whisper decodes by default
    assert (settings.models.engine, settings.models.compute_type) == ("openai-whisper", "float32")
    assert (settings.pools.nice, settings.pools.io_idle) == (19, True)
    assert settings.models.gate == 0.5  # the voice-activity gate is on


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "DIARIZATION_SEGMENTATION_STEP": "0.1",
            "DIARIZATION_BLOCK_S": "0",
            "DIARIZATION_MAX_DURATION_S": "0",
            "DIARIZE_TIME_LIMIT_S": "1200",
            "DIARIZE_MAX_RETRIES": "0",
            "HF_TOKEN": "hf_secret",
            "TRANSCRIBE_BEAM_SIZE": "5",
            "TRANSCRIBE_ENGINE": "CTranslate2",
            "TRANSCRIBE_COMPUTE_TYPE": "INT8",
            "WORKER_NICE": "5",
            "WORKER_IO_IDLE": "false",
            "TRANSCRIBE_VAD_THRESHOLD": "0.3",
        }
    )
    assert settings.models.gate == 0.3
    assert Settings.from_env({"TRANSCRIBE_VAD": "off"}).models.gate is None
    assert settings.models.beam_size == 5
    assert (settings.models.engine, settings.models.compute_type) == ("ctranslate2", "int8")
    assert (settings.pools.nice, settings.pools.io_idle) == (5, False)
    assert settings.diarization.segmentation_step == 0.1
    assert settings.diarization.block_s == 0.0  # never split
    assert settings.diarization.max_duration_s == 0.0  # no limit
    assert settings.policies[Stage.DIARIZE].time_limit_ms == 1_200_000
    assert settings.policies[Stage.DIARIZE].max_retries == 0
    assert "hf_secret" not in repr(settings)


@pytest.mark.parametrize(
    "env",
    [
        {"DIARIZATION_SEGMENTATION_STEP": "0"},
        {"DIARIZATION_SEGMENTATION_STEP": "1.5"},
        {"DIARIZATION_SEGMENTATION_STEP": "half"},
        {"DIARIZATION_BLOCK_S": "30"},
        {"DIARIZATION_BLOCK_S": "-1"},
        {"DIARIZATION_MAX_DURATION_S": "-5"},
        {"DIARIZE_TIME_LIMIT_S": "3600"},
        {"CHUNK_OVERLAP_S": "400"},
        {"TORCH_THREADS": "1.5"},
        {"TRANSCRIBE_BEAM_SIZE": "0"},
        {"TRANSCRIBE_ENGINE": "faster"},
        {"TRANSCRIBE_COMPUTE_TYPE": "int4"},
        {"WHISPER_MODEL": "/models/tiny.en.pt", "TRANSCRIBE_ENGINE": "ctranslate2"},
        {"WORKER_IO_IDLE": "sometimes"},
        {"TRANSCRIBE_VAD": "maybe"},
        {"TRANSCRIBE_VAD_THRESHOLD": "0"},
        {"TRANSCRIBE_VAD_THRESHOLD": "1"},
    ],
)
def test_bad_values_are_named(env: dict[str, str]) -> None:
    name = next(iter(env))
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)
