"""Running the services as real processes for tests, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.isolation import IsolatedEnv, free_port

# IsolatedEnv and free_port live in tests.support.isolation; many tests import them here.
__all__ = [
    "REPO_ROOT",
    "IngestServer",
    "IsolatedEnv",
    "ServiceProcess",
    "Worker",
    "free_port",
    "wait_healthy",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """A service started with `python -m <module>`; its stderr goes to a log file."""

    def __init__(
        self, module: str, env: dict[str, str], log_path: Path, *args: str, cwd: Path = REPO_ROOT
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        # A session of its own, so that a test can kill the whole process tree at once.
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_hard(self) -> None:
        """SIGKILL every process of the service at once, as a crash or OOM kill would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the tree
        self._log.close()


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether `url`/healthz answered 200 within `timeout_s`; False at once if the
    process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


class IngestServer(ServiceProcess):
    """`python -m ingest_service serve` on a free port, once it answers /healthz."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        cwd: Path = REPO_ROOT,
        healthy_within_s: float = 30,
    ) -> None:
        self.port = free_port()
        env = {**env, "INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(self.port)}
        super().__init__("ingest_service", env, log_path, "serve", cwd=cwd)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_healthy(healthy_within_s)

    def _wait_healthy(self, timeout_s: float = 30) -> None:
        if wait_healthy(self.url, self.process, timeout_s):
            return
        if self.process.poll() is not None:
            raise RuntimeError(f"ingest exited with {self.process.returncode}:\n{self.log_text()}")
        self.stop()
        raise RuntimeError(f"ingest did not become healthy:\n{self.log_text()}")

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


class Worker(ServiceProcess):
    """The processing service's worker pools (`python -m processing_service`)."""

    def __init__(self, env: dict[str, str], log_path: Path, pool: str = "all", *args: str) -> None:
        # Free metrics ports, so that test workers never collide with each other or with
        # a `make run` on the same machine.
        self.metrics_ports = {
            pool: int(env.get(f"{pool.upper()}_METRICS_PORT") or free_port())
            for pool in ("light", "heavy")
        }
        env = {
            **env,
            "LIGHT_METRICS_PORT": str(self.metrics_ports["light"]),
            "HEAVY_METRICS_PORT": str(self.metrics_ports["heavy"]),
        }
        super().__init__("processing_service", env, log_path, "--pool", pool, *args)

    def metrics(self, pool: str) -> str:
        """The pool's Prometheus exposition text."""
        return httpx.get(f"http://127.0.0.1:{self.metrics_ports[pool]}/metrics", timeout=10).text
