"""The heavy pool's thread layout: a thread per stage, the CPUs shared out among them."""

from __future__ import annotations

import os

import pytest

from contracts import Stage
from processing_service.__main__ import pool_command, pool_spec, torch_threads_per_task
from processing_service.runtime.config import Settings


@pytest.fixture(autouse=True)
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.delenv("TORCH_THREADS", raising=False)


def _threads(command: list[str]) -> int:
    return int(command[command.index("--threads") + 1])


def test_torch_threads_share_the_cpus_among_the_tasks() -> None:
    assert torch_threads_per_task(1, 1) == 4
    assert torch_threads_per_task(1, 2) == 2
    assert torch_threads_per_task(2, 2) == 1
    assert torch_threads_per_task(8, 2) == 1


def test_a_heavy_process_runs_a_thread_per_stage_it_consumes() -> None:
    settings = Settings.from_env({"HEAVY_PROCESSES": "2"})
    heavy = pool_spec("heavy", settings, None, None, None)
    assert heavy.processes == 2
    assert _threads(heavy.command) == 2  # transcribe and diarize side by side
    assert heavy.env["TORCH_THREADS"] == "1"  # 4 CPUs, 2 processes x 2 threads
    only = pool_spec("heavy", settings, 1, None, (Stage.TRANSCRIBE,))
    assert (_threads(only.command), only.env["TORCH_THREADS"]) == (1, "4")
    assert "TORCH_THREADS" not in pool_spec("light", settings, None, None, None).env
    assert _threads(pool_command("light", settings, None)) == 4


def test_explicit_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_THREADS", "3")
    settings = Settings.from_env({"TORCH_THREADS": "3", "HEAVY_THREADS": "1"})
    heavy = pool_spec("heavy", settings, 2, None, None)
    assert (_threads(heavy.command), heavy.env["TORCH_THREADS"]) == (1, "3")
