"""`python -m processing_service [--pool all|light|heavy] [--stages ...]`: run worker pools.

The light pool (split, analyze, notify) runs several threads; the heavy pool (transcribe,
diarize) runs one model per process and prefetches one message at a time, so a busy
worker does not hoard messages that another could take. `all` runs both pools.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from types import FrameType

from contracts import Stage
from contracts.routing import STAGE_QUEUES
from infra.postgres import migrate
from processing_service.runtime.config import Settings, get_settings

POOLS: dict[str, tuple[Stage, ...]] = {
    "light": (Stage.SPLIT, Stage.ANALYZE, Stage.NOTIFY),
    "heavy": (Stage.TRANSCRIBE, Stage.DIARIZE),
}


def pool_command(
    pool: str,
    settings: Settings,
    processes: int | None,
    threads: int | None,
    stages: tuple[Stage, ...] | None = None,
) -> list[str]:
    """The dramatiq command line of one pool, consuming `stages` (default: all of the pool's)."""
    heavy = pool == "heavy"
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "processing_service.worker:setup",
        "--skip-logging",
        "--processes",
        str(
            processes
            or (settings.pools.heavy_processes if heavy else settings.pools.light_processes)
        ),
        "--threads",
        str(threads or (settings.pools.heavy_threads if heavy else settings.pools.light_threads)),
        "--queues",
        *(STAGE_QUEUES[stage] for stage in (stages or POOLS[pool])),
    ]


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
    asyncio.run(migrate(settings.database_url))

    pools = list(POOLS) if args.pool == "all" else [args.pool]
    children = []
    for pool in pools:
        env = dict(os.environ)
        if pool == "heavy":
            env["dramatiq_queue_prefetch"] = "1"
        # Each pool's processes share one multiprocess metrics directory, served by
        # Dramatiq's exposition server on the pool's own port.
        metrics_dir = tempfile.mkdtemp(prefix=f"audio-worker-metrics-{pool}-")
        p = settings.pools
        port = p.heavy_metrics_port if pool == "heavy" else p.light_metrics_port
        env.update(
            PROMETHEUS_MULTIPROC_DIR=metrics_dir,
            prometheus_multiproc_dir=metrics_dir,
            dramatiq_prom_db=metrics_dir,
            dramatiq_prom_host=settings.pools.metrics_host,
            dramatiq_prom_port=str(port),
        )
        command = pool_command(pool, settings, args.processes, args.threads, stages)
        children.append(subprocess.Popen(command, env=env))  # noqa: S603 - our own argv

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    # If one pool dies, stop the other too: a half-running worker set hides failures.
    codes = []
    while children:
        pid, status = os.wait()
        for child in list(children):
            if child.pid == pid:
                children.remove(child)
                codes.append(os.waitstatus_to_exitcode(status))
                for other in children:
                    other.terminate()
    return max(codes, default=0)


if __name__ == "__main__":
    sys.exit(main())
