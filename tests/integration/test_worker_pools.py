"""`python -m processing_service --pool ... --stages ...` consumes exactly those queues."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from contracts.routing import STAGE_QUEUES
from tests.support.memory import tree_pids
from tests.support.servers import REPO_ROOT, IsolatedEnv, Worker


def consumers(env: IsolatedEnv) -> dict[str, int]:
    """Consumers per stage queue of the test's vhost, as RabbitMQ counts them."""
    vhost = unquote(urlsplit(env.amqp_url).path[1:])
    command = ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers"]
    listed = subprocess.run(
        [*command, "name", "consumers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    counts = dict(line.split("\t") for line in listed if "\t" in line)
    return {queue: int(counts.get(queue, 0)) for queue in STAGE_QUEUES.values()}


def test_a_pool_limited_to_some_stages_consumes_only_their_queues(
    isolated_env: IsolatedEnv, tmp_path: Path
) -> None:
    worker = Worker(isolated_env.environ(), tmp_path / "worker.log", "light", "--stages", "notify")
    try:
        deadline = time.monotonic() + 60
        while consumers(isolated_env)["notify"] == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        seen = consumers(isolated_env)
    finally:
        worker.stop()
    assert seen["notify"] >= 1, (seen, worker.log_text()[-2000:])
    assert seen["split"] == seen["analyze"] == 0, seen
    assert seen["transcribe"] == seen["diarize"] == 0, seen


def worker_processes(worker: Worker) -> list[int]:
    return [
        pid
        for pid in tree_pids(worker.process.pid)
        if b"processing_service.worker_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def io_class(pid: int) -> str:
    shown = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True, check=True)
    return shown.stdout.split(":")[0].strip()


def test_worker_processes_yield_the_cpu_and_the_disk(
    isolated_env: IsolatedEnv, tmp_path: Path
) -> None:
    worker = Worker(isolated_env.environ(), tmp_path / "worker.log", "light")
    try:
        deadline = time.monotonic() + 60
        # Consuming: past their start-up, where the priorities are set.
        while consumers(isolated_env)["split"] == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        pids = worker_processes(worker)
        assert pids, worker.log_text()[-2000:]
        # The supervisor keeps its own priority; the processes doing the work drop theirs.
        assert niceness(worker.process.pid) == niceness(os.getpid())
        assert {niceness(pid) for pid in pids} == {19}
        assert {io_class(pid) for pid in pids} == {"idle"}
        # And their session's scheduling group yields to other sessions' (the API's).
        for pid in [worker.process.pid, *pids]:
            assert Path(f"/proc/{pid}/autogroup").read_text().split()[-1] == "19"
    finally:
        worker.stop()


def test_stages_outside_the_pool_are_refused_before_anything_starts() -> None:
    for args, expected in (
        (["--pool", "heavy", "--stages", "split"], "not in the heavy pool (transcribe, diarize)"),
        (["--pool", "all", "--stages", "notify"], "--stages needs --pool light or --pool heavy"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "processing_service", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done
        assert expected in done.stderr
