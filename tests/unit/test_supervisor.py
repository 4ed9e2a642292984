"""The worker supervisor with stand-in processes: replaced when killed, given up in a loop."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from processing_service.runtime.config import RestartPolicy
from processing_service.supervisor import PoolSpec, Supervisor
from tests.support.servers import free_port

#: A worker that says it is ready, then waits to be stopped.
STEADY = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "os.write(int(os.environ['WORKER_READY_FD']), b'r')\n"
    "time.sleep(600)\n"
)
#: A worker that dies at boot, every time.
CRASHING = "raise SystemExit(3)"


def pool(name: str, script: str, processes: int, tmp_path: Path) -> PoolSpec:
    metrics_dir = tmp_path / name
    metrics_dir.mkdir()
    return PoolSpec(
        name=name,
        processes=processes,
        command=[sys.executable, "-c", script],
        env=dict(os.environ),
        metrics_dir=metrics_dir,
        metrics_host="127.0.0.1",
        metrics_port=free_port(),
    )


@pytest.fixture
def supervise() -> Iterator[Callable[..., Supervisor]]:
    started: list[tuple[Supervisor, threading.Thread]] = []

    def start(pools: list[PoolSpec], policy: RestartPolicy) -> Supervisor:
        supervisor = Supervisor(pools, policy)
        thread = threading.Thread(target=supervisor.run, daemon=True)
        thread.start()
        started.append((supervisor, thread))
        return supervisor

    yield start
    for supervisor, thread in started:
        supervisor.stop()
        thread.join(timeout=20)
        assert not thread.is_alive()


def wait_until(check: Callable[[], bool], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def pids(supervisor: Supervisor, name: str) -> list[int | None]:
    return [s.proc.pid if s.proc else None for s in supervisor.slots if s.pool.name == name]


def test_a_killed_process_is_replaced_and_the_others_keep_running(
    supervise: Callable[..., Supervisor], tmp_path: Path
) -> None:
    heavy, light = pool("heavy", STEADY, 2, tmp_path), pool("light", STEADY, 1, tmp_path)
    supervisor = supervise([heavy, light], RestartPolicy(base_delay_s=0.1))
    wait_until(lambda: supervisor.health("heavy")["ready"] == 2)
    wait_until(lambda: supervisor.health("light")["ready"] == 1)
    before_heavy, before_light = pids(supervisor, "heavy"), pids(supervisor, "light")

    victim = before_heavy[0]
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(
        lambda: supervisor.health("heavy")["ready"] == 2 and victim not in pids(supervisor, "heavy")
    )
    assert time.monotonic() - killed_at < 5

    after = pids(supervisor, "heavy")
    assert after[1] == before_heavy[1], "the other process of the pool was left alone"
    assert pids(supervisor, "light") == before_light, "the other pool was left alone"
    health = supervisor.health("heavy")
    assert (health["deaths"], health["restarts"], health["status"]) == (1, 1, "ok")

    metrics = httpx.get(f"http://127.0.0.1:{heavy.metrics_port}/metrics").text
    assert 'worker_process_deaths_total{pool="heavy"} 1.0' in metrics
    assert 'worker_pool_processes{pool="heavy"} 2.0' in metrics
    assert httpx.get(f"http://127.0.0.1:{heavy.metrics_port}/healthz").status_code == 200


def test_a_process_that_dies_in_a_loop_is_given_up_loudly(
    supervise: Callable[..., Supervisor], tmp_path: Path
) -> None:
    crashing, steady = pool("heavy", CRASHING, 1, tmp_path), pool("light", STEADY, 1, tmp_path)
    policy = RestartPolicy(base_delay_s=0.05, max_delay_s=0.2, window_s=30, max_deaths=3)
    supervisor = supervise([crashing, steady], policy)
    wait_until(lambda: supervisor.health("heavy")["given_up"] == 1)

    health = supervisor.health("heavy")
    assert health["deaths"] == 4, "three restarts allowed, the fourth death gives up"
    assert health["restarts"] == 3
    time.sleep(0.5)
    assert supervisor.health("heavy")["deaths"] == 4, "no restart after giving up"
    response = httpx.get(f"http://127.0.0.1:{crashing.metrics_port}/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "failed"
    metrics = httpx.get(f"http://127.0.0.1:{crashing.metrics_port}/metrics").text
    assert 'worker_pool_given_up{pool="heavy"} 1.0' in metrics
    assert supervisor.health("light")["ready"] == 1, "the other pool keeps running"


def test_back_off_doubles_with_recent_deaths_up_to_its_ceiling() -> None:
    policy = RestartPolicy(base_delay_s=0.5, max_delay_s=4, window_s=60, max_deaths=5)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]
    assert not policy.gives_up(5)
    assert policy.gives_up(6)


def test_stopping_ends_every_process_without_restarts(tmp_path: Path) -> None:
    supervisor = Supervisor([pool("light", STEADY, 2, tmp_path)], RestartPolicy(base_delay_s=0.05))
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    wait_until(lambda: supervisor.health("light")["ready"] == 2)
    children = pids(supervisor, "light")
    supervisor.stop()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert supervisor.health("light")["restarts"] == 0
    for pid in children:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
