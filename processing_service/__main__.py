"""`python -m processing_service [--pool all|light|heavy]`: run Dramatiq worker pools.

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
from processing_service.config import Settings, get_settings
from processing_service.database import apply_schema

POOLS: dict[str, tuple[Stage, ...]] = {
    "light": (Stage.SPLIT, Stage.ANALYZE, Stage.NOTIFY),
    "heavy": (Stage.TRANSCRIBE, Stage.DIARIZE),
}


def pool_command(
    pool: str, settings: Settings, processes: int | None, threads: int | None
) -> list[str]:
    heavy = pool == "heavy"
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "processing_service.actors",
        "--skip-logging",
        "--processes",
        str(processes or (settings.heavy_processes if heavy else settings.light_processes)),
        "--threads",
        str(threads or (settings.heavy_threads if heavy else settings.light_threads)),
        "--queues",
        *(STAGE_QUEUES[stage] for stage in POOLS[pool]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m processing_service")
    parser.add_argument("--pool", choices=["all", "light", "heavy"], default="all")
    parser.add_argument("--processes", type=int, help="worker processes per pool")
    parser.add_argument("--threads", type=int, help="threads per worker process")
    args = parser.parse_args()
    settings = get_settings()
    asyncio.run(apply_schema(settings.database_url))

    pools = list(POOLS) if args.pool == "all" else [args.pool]
    children = []
    for pool in pools:
        env = dict(os.environ)
        if pool == "heavy":
            env["dramatiq_queue_prefetch"] = "1"
        # Each pool's processes share one multiprocess metrics directory, served by
        # Dramatiq's exposition server on the pool's own port.
        metrics_dir = tempfile.mkdtemp(prefix=f"audio-worker-metrics-{pool}-")
        port = settings.heavy_metrics_port if pool == "heavy" else settings.light_metrics_port
        env.update(
            PROMETHEUS_MULTIPROC_DIR=metrics_dir,
            prometheus_multiproc_dir=metrics_dir,
            dramatiq_prom_db=metrics_dir,
            dramatiq_prom_host=settings.metrics_host,
            dramatiq_prom_port=str(port),
        )
        command = pool_command(pool, settings, args.processes, args.threads)
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
