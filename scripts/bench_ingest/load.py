"""Load generation: wrk with a Lua script for the multipart runs, a raw sendfile upload."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.bench_ingest import KIB
from scripts.bench_ingest.bodies import BOUNDARY

RESULT_MARKER = "BENCH_RESULT "


#: The wrk script: multipart POST of a prepared body, every non-202 answer counted.
WRK_LUA = r"""
-- Written by scripts/bench_ingest.py: POST the prepared multipart body, count non-202.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE")

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   non202 = 0
   last_bad_status = 0
end

function response(status, headers, body)
   if status ~= 202 then
      non202 = non202 + 1
      last_bad_status = status
   end
end

function done(summary, latency, requests)
   local bad, bad_status = 0, 0
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("non202")
      local s = thread:get("last_bad_status")
      if s ~= 0 then bad_status = s end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes_read": %d, "non_202": %d,'
      .. ' "last_bad_status": %d, "connect_errors": %d, "read_errors": %d,'
      .. ' "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d,'
      .. ' "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, bad, bad_status, e.connect,
      e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean))
end
"""


def ensure_wrk() -> str:
    """The path of `wrk`; installs the Debian package when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(
            "bench-ingest needs the load generator wrk: install it (Debian: apt-get install wrk)"
        )
    print("installing wrk (apt-get install wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


@dataclass
class LoadSpec:
    """One wrk run: which body, how long, how many connections."""

    label: str
    file_bytes: int
    body_path: Path
    duration_s: int
    warmup_s: int
    connections: int
    threads: int


def run_wrk(wrk: str, lua: Path, url: str, spec: LoadSpec, duration_s: int) -> dict[str, Any]:
    """Run wrk once; return what the Lua `done` hook printed."""
    env = {
        **os.environ,
        "BENCH_BODY": str(spec.body_path),
        "BENCH_CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
    }
    command = [
        wrk,
        f"--threads={spec.threads}",
        f"--connections={spec.connections}",
        f"--duration={duration_s}s",
        "--timeout=60s",
        f"--script={lua}",
        f"{url}/v1/jobs",
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=duration_s + 120
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
            return result
    raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def stream_raw_upload(port: int, path: Path, size: int) -> dict[str, Any]:
    """POST `path` as a raw audio/wav body with sendfile; parse the answer."""
    head = (
        "POST /v1/jobs?filename=big.wav HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: audio/wav\r\n"
        f"Content-Length: {size}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(head)
        with path.open("rb") as f:
            sock.sendfile(f)
        sent = time.monotonic()
        received = bytearray()
        while data := sock.recv(64 * KIB):
            received += data
    finished = time.monotonic()
    header_blob, _, body = bytes(received).partition(b"\r\n\r\n")
    status = int(header_blob.split(b" ", 2)[1])
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {"raw": body[:500].decode(errors="replace")}
    return {
        "status": status,
        "body": parsed,
        "send_s": sent - started,
        "total_s": finished - started,
    }
