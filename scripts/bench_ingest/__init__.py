"""Benchmark of the ingest API: upload throughput, latency and memory -> a JSON results file.

`make bench-ingest` runs this (`python -m scripts.bench_ingest`). It sets up its own world
and tears it down again:

1. a fresh Postgres database (`audio_bench_<hex>`) and RabbitMQ vhost (`audio-bench-<hex>`),
   a temporary storage directory, and the ingest service as a subprocess
   (`python -m ingest_service serve`) on a free loopback port;
2. for each file size (64 KiB and 1 MiB real WAV files: RIFF/WAVE header + 16-bit PCM),
   `wrk` (one thread, N keep-alive connections, a Lua script) sends multipart
   `POST /v1/jobs` for a fixed time after a short warm-up; every answer other than 202
   counts as an error. Meanwhile the ingest process's RSS is sampled every 100 ms and
   the CPU time of every process on the machine is accounted (ingest, Postgres, RabbitMQ,
   wrk, the rest), so the results say what the two cores were spent on. After each run
   the outbox relay is given time to publish the backlog, and its publish rate recorded.
   Stored uploads are kept until the end (see `make_room` for why);
3. a 1 GiB WAV (header + sparse zeros) is streamed as a raw `audio/wav` body with
   `sendfile`, sampling the server's RSS every 100 ms, to show that memory stays flat;
   the answer must be 202 and its sha256 must match the file's;
4. steps 1-2 again with `INGEST_FSYNC_UPLOADS=false`, to put a number on fsync's cost;
5. everything (plus the machine and the git commit) goes to `--out` (JSON), and a table
   to stdout. `--profile` also records a py-spy profile of the server under each load, in
   extra runs (py-spy must be installed: `.venv/bin/pip install py-spy`).

Modules: `__main__` the command line and the order of the runs; `bodies` the WAV and
multipart bodies; `load` wrk and the raw upload; `runs` the server and the measured runs;
`cpu` CPU accounting; `relay` the outbox relay's progress; `profile` py-spy summaries;
`report` the results' context and the table. The isolated database and vhost, the RSS
sampler and the server process come from tests/support, shared with the tests.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
