"""Keeps each pool's worker processes running: a dead process is replaced, not fatal.

`python -m processing_service` runs one `Supervisor` for the pools it was asked for.
Each pool has a fixed number of slots, each slot one `processing_service.worker_process`.
A process that exits while the supervisor is not stopping (the kernel's OOM killer, a
crash) is logged, counted, and started again after a back-off that doubles with every
death of that slot in the last `window_s`; a slot that dies more than `max_deaths` times
in that window is given up: logged as critical, shown by the metrics and by the pool's
`/healthz` (503). The other slots, the other pool and the API keep running throughout;
nothing in hand is lost, since messages are acknowledged only when done.

Each pool's metrics port serves `/metrics` (Dramatiq's and the stages' metrics from the
pool's multiprocess directory, plus the supervisor's own) and `/healthz`.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from processing_service.runtime.config import RestartPolicy

log = structlog.get_logger("processing.supervisor")

#: How often the supervisor looks at its processes.
POLL_S = 0.2


@dataclass(frozen=True)
class PoolSpec:
    """One pool: how many processes, the command line and environment of each."""

    name: str
    processes: int
    command: list[str]
    env: dict[str, str]
    metrics_dir: Path
    metrics_host: str
    metrics_port: int


@dataclass
class Slot:
    """One process position of a pool and its history."""

    pool: PoolSpec
    index: int
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    ready: bool = False
    started_at: float = 0.0
    restart_at: float | None = None
    given_up: bool = False
    deaths: collections.deque[float] = field(default_factory=collections.deque)
    total_deaths: int = 0
    total_restarts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def describe_exit(returncode: int) -> str:
    """`exit code 1` or `killed by SIGKILL`."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    """Starts every slot, replaces dead processes, stops them all on request."""

    def __init__(
        self,
        pools: list[PoolSpec],
        policy: RestartPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pools = pools
        self.policy = policy
        self.clock = clock
        self.slots = [Slot(pool, i) for pool in pools for i in range(pool.processes)]
        self._stopping = threading.Event()
        self._lock = threading.RLock()  # also taken by stop() in a signal handler
        self._servers: list[ThreadingHTTPServer] = []

    # -- processes ---------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        env = {**slot.pool.env, "WORKER_READY_FD": str(write_fd)}
        try:
            slot.proc = subprocess.Popen(  # noqa: S603 - our own argv
                slot.pool.command, env=env, pass_fds=(write_fd,)
            )
        finally:
            os.close(write_fd)
        slot.ready_fd, slot.ready, slot.started_at, slot.restart_at = (
            read_fd,
            False,
            self.clock(),
            None,
        )
        log.info("worker process started", pool=slot.pool.name, slot=slot.index, pid=slot.proc.pid)

    def _close_ready_pipe(self, slot: Slot) -> None:
        if slot.ready_fd is not None:
            os.close(slot.ready_fd)
            slot.ready_fd = None

    def _check_ready(self, slot: Slot) -> None:
        if slot.ready or slot.ready_fd is None:
            return
        try:
            data = os.read(slot.ready_fd, 1)
        except BlockingIOError:
            return
        if data:
            slot.ready = True
            log.info("worker process ready", pool=slot.pool.name, slot=slot.index)
        self._close_ready_pipe(slot)

    def _on_exit(self, slot: Slot, now: float) -> None:
        assert slot.proc is not None
        returncode = slot.proc.returncode
        pid = slot.proc.pid
        slot.proc = None
        slot.ready = False
        self._close_ready_pipe(slot)
        mark_process_dead(pid, str(slot.pool.metrics_dir))  # type: ignore[no-untyped-call]
        if self._stopping.is_set():
            return
        slot.total_deaths += 1
        slot.deaths.append(now)
        while slot.deaths and now - slot.deaths[0] > self.policy.window_s:
            slot.deaths.popleft()
        recent = len(slot.deaths)
        fields: dict[str, Any] = {
            "pool": slot.pool.name,
            "slot": slot.index,
            "pid": pid,
            "exit": describe_exit(returncode),
            "lived_s": round(now - slot.started_at, 1),
            "deaths_in_window": recent,
        }
        if self.policy.gives_up(recent):
            slot.given_up = True
            log.critical(
                "worker process keeps dying; its slot is given up (restart the pool once the"
                " cause is fixed)",
                window_s=self.policy.window_s,
                **fields,
            )
            return
        delay = self.policy.delay_s(recent)
        slot.restart_at = now + delay
        log.error("worker process died; starting a new one", restart_in_s=delay, **fields)

    def step(self) -> None:
        """Look at every slot once: readiness, deaths, due restarts."""
        now = self.clock()
        with self._lock:
            for slot in self.slots:
                if slot.proc is not None:
                    self._check_ready(slot)
                    if slot.proc.poll() is not None:
                        self._on_exit(slot, now)
                if (
                    slot.proc is None
                    and slot.restart_at is not None
                    and now >= slot.restart_at
                    and not self._stopping.is_set()
                ):
                    slot.total_restarts += 1
                    self._spawn(slot)

    def run(self) -> int:
        """Start everything, then supervise until stopped and every process has exited."""
        self._serve()
        with self._lock:
            for slot in self.slots:
                self._spawn(slot)
        while not self._stopping.is_set() or any(s.proc is not None for s in self.slots):
            self.step()
            time.sleep(POLL_S)
        self.close()
        return 0

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop restarting; pass `signum` on (a second stop escalates to SIGKILL)."""
        escalate = self._stopping.is_set()
        self._stopping.set()
        with self._lock:
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.send_signal(signal.SIGKILL if escalate else signum)

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for pool in self.pools:
            shutil.rmtree(pool.metrics_dir, ignore_errors=True)

    # -- health and metrics ------------------------------------------------------------

    def health(self, pool: str) -> dict[str, Any]:
        """The pool's processes as `/healthz` reports them."""
        with self._lock:
            slots = [s for s in self.slots if s.pool.name == pool]
            return {
                "pool": pool,
                "status": "failed" if any(s.given_up for s in slots) else "ok",
                "desired": len(slots),
                "running": sum(s.running for s in slots),
                "ready": sum(s.running and s.ready for s in slots),
                "deaths": sum(s.total_deaths for s in slots),
                "restarts": sum(s.total_restarts for s in slots),
                "given_up": sum(s.given_up for s in slots),
            }

    def _serve(self) -> None:
        for pool in self.pools:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(pool.metrics_dir))  # type: ignore[no-untyped-call]
            registry.register(_PoolCollector(self, pool.name))
            server = ThreadingHTTPServer(
                (pool.metrics_host, pool.metrics_port), _handler(self, pool.name, registry)
            )
            server.daemon_threads = True
            threading.Thread(
                target=server.serve_forever, name=f"metrics-{pool.name}", daemon=True
            ).start()
            self._servers.append(server)


class _PoolCollector(Collector):
    """The supervisor's view of one pool, read at scrape time."""

    def __init__(self, supervisor: Supervisor, pool: str) -> None:
        self.supervisor = supervisor
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        health = self.supervisor.health(self.pool)
        for name, doc, key in (
            ("worker_pool_processes", "Worker processes of the pool running now", "running"),
            ("worker_pool_processes_desired", "Worker processes the pool should run", "desired"),
            ("worker_pool_given_up", "Process slots given up after dying in a loop", "given_up"),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=["pool"])
            gauge.add_metric([self.pool], health[key])
            yield gauge
        for name, doc, key in (
            ("worker_process_deaths", "Worker processes that exited unexpectedly", "deaths"),
            (
                "worker_process_restarts",
                "Worker processes started to replace dead ones",
                "restarts",
            ),
        ):
            counter = CounterMetricFamily(name, doc, labels=["pool"])
            counter.add_metric([self.pool], health[key])
            yield counter


def _handler(
    supervisor: Supervisor, pool: str, registry: CollectorRegistry
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/healthz":
                health = supervisor.health(pool)
                body = json.dumps(health).encode()
                status, media_type = (200 if health["status"] == "ok" else 503), "application/json"
            elif self.path.split("?")[0] == "/metrics":
                body, status, media_type = generate_latest(registry), 200, CONTENT_TYPE_LATEST
            else:
                body, status, media_type = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
