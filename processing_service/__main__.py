"""`python -m processing_service [--pool all|light|heavy] [--stages ...]`: run worker pools.

A supervisor (`processing_service.supervisor`) runs each pool's processes and replaces
any that dies, so one killed process is never an outage.

The light pool (split, analyze, notify) runs several threads; the heavy pool (transcribe,
diarize) runs one model per process and prefetches one message at a time, so a busy
worker does not hoard messages that another could take. `all` runs both pools.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from contracts import Stage
from contracts.routing import STAGE_QUEUES
from infra.logs import configure_logging
from infra.postgres import migrate
from processing_service.runtime.config import Settings, get_settings
from processing_service.runtime.priority import own_cpu_group
from processing_service.supervisor import PoolSpec, Supervisor

POOLS: dict[str, tuple[Stage, ...]] = {
    "light": (Stage.SPLIT, Stage.ANALYZE, Stage.NOTIFY),
    "heavy": (Stage.TRANSCRIBE, Stage.DIARIZE),
}


def pool_command(
    pool: str,
    settings: Settings,
    threads: int | None,
    stages: tuple[Stage, ...] | None = None,
) -> list[str]:
    """The command line of one worker process of `pool`, consuming `stages` (default: all)."""
    p = settings.pools
    return [
        sys.executable,
        "-m",
        "processing_service.worker_process",
        "--threads",
        str(worker_threads(pool, settings, threads, stages)),
        "--nice",
        str(p.nice),
        *(["--io-idle"] if p.io_idle else []),
        "--queues",
        *(STAGE_QUEUES[stage] for stage in (stages or POOLS[pool])),
    ]


def worker_threads(
    pool: str, settings: Settings, threads: int | None, stages: tuple[Stage, ...] | None
) -> int:
    """Dramatiq threads per process of `pool`. A heavy process runs, by default
    (HEAVY_THREADS 0), one thread per stage it consumes: it holds one prefetched message
    per stage's queue, so with a single thread a diarization it took would wait behind a
    transcription while another heavy process stood idle."""
    p = settings.pools
    if threads:
        return threads
    if pool != "heavy":
        return p.light_threads
    return p.heavy_threads or len(stages or POOLS["heavy"])


def torch_threads_per_task(processes: int, threads: int) -> int:
    """TORCH_THREADS for heavy processes when it is left at 0: the CPUs this process may
    use, shared out among `processes` x `threads` tasks that may run at once, so that two
    stages on two cores run one thread each instead of four threads fighting over two."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, processes * threads))


def pool_spec(
    pool: str,
    settings: Settings,
    processes: int | None,
    threads: int | None,
    stages: tuple[Stage, ...] | None,
) -> PoolSpec:
    """One pool as the supervisor runs it: its processes share a metrics directory."""
    p = settings.pools
    heavy = pool == "heavy"
    count = processes or (p.heavy_processes if heavy else p.light_processes)
    env = dict(os.environ)
    if heavy:
        env["dramatiq_queue_prefetch"] = "1"
        if not settings.models.torch_threads:
            tasks = worker_threads(pool, settings, threads, stages)
            env["TORCH_THREADS"] = str(torch_threads_per_task(count, tasks))
    metrics_dir = Path(tempfile.mkdtemp(prefix=f"audio-worker-metrics-{pool}-"))
    env.update(
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        prometheus_multiproc_dir=str(metrics_dir),
        dramatiq_prom_db=str(metrics_dir),
    )
    return PoolSpec(
        name=pool,
        processes=count,
        command=pool_command(pool, settings, threads, stages),
        env=env,
        metrics_dir=metrics_dir,
        metrics_host=p.metrics_host,
        metrics_port=p.heavy_metrics_port if heavy else p.light_metrics_port,
    )


def parse_stages(pool: str, raw: str | None) -> tuple[Stage, ...] | None:
    """``--stages`` as stages of ``pool``; a clear error names what the pool can run."""
    if not raw:
        return None
    if pool == "all":
        raise ValueError("--stages needs --pool light or --pool heavy")
    allowed = {stage.value: stage for stage in POOLS[pool]}
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise ValueError(
            f"--stages: {', '.join(unknown) or raw!r} not in the {pool} pool ({', '.join(allowed)})"
        )
    return tuple(allowed[name] for name in dict.fromkeys(names))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m processing_service")
    parser.add_argument("--pool", choices=["all", "light", "heavy"], default="all")
    parser.add_argument("--processes", type=int, help="worker processes per pool")
    parser.add_argument("--threads", type=int, help="threads per worker process")
    parser.add_argument(
        "--stages",
        help="comma-separated stages of the pool to consume (default: all of them), e.g."
        " --pool heavy --stages diarize: one process per heavy stage, so a diarize message"
        " never waits behind a long transcription",
    )
    args = parser.parse_args()
    try:
        stages = parse_stages(args.pool, args.stages)
    except ValueError as exc:
        parser.error(str(exc))
    settings = get_settings()
    if settings.pools.nice:
        own_cpu_group(settings.pools.nice)
    asyncio.run(migrate(settings.database_url))

    names = list(POOLS) if args.pool == "all" else [args.pool]
    configure_logging(settings.log_level, settings.log_format)
    supervisor = Supervisor(
        [pool_spec(name, settings, args.processes, args.threads, stages) for name in names],
        settings.pools.restarts,
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        # Worker processes ignore SIGINT (a Ctrl-C reaches the whole process group);
        # each stop is passed on as SIGTERM, a second one as SIGKILL.
        supervisor.stop(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
