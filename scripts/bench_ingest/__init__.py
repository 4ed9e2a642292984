"""Benchmark of the ingest API: upload throughput, latency and memory -> a JSON results file.

`make bench-ingest` runs this (`python -m scripts.bench_ingest`). It sets up its own world
and tears it down again: a fresh Postgres database (`audio_bench_<hex>`) and RabbitMQ
vhost (`audio-bench-<hex>`), a temporary storage directory, and the servers as
subprocesses on free loopback ports. A measured run is `wrk` (one thread, N keep-alive
connections, a Lua script) sending multipart `POST /v1/jobs` of a real WAV file (64 KiB
and 1 MiB: RIFF/WAVE header + 16-bit PCM) for a fixed time after a short warm-up; every
answer other than 202 counts as an error. Meanwhile the server's RSS is sampled and the
CPU time of every process on the machine is accounted (server, Postgres, RabbitMQ, Redis,
wrk, the rest); afterwards the relay's outbox lag and drain are read from Postgres.
Stored uploads are kept until the end (see `make_room` for why).

Each comparison (`compare`) alternates its two sides round by round and reports medians:

1. this API against the baseline (`baseline_app`: FastAPI + Celery + Redis, in its own
   `.venv-baseline`), with the same process count, at each size;
2. the API alone against the API while the stack's workers process the uploads (paused
   with SIGSTOP for the "alone" rounds);
3. one API process against one per CPU; 4. fsync on against off;
5. a 1 GiB WAV (header + sparse zeros) streamed as a raw `audio/wav` body with
   `sendfile` while the server's RSS is sampled: the answer must be 202 with the file's
   sha256.

Everything (plus the machine, the git commit and the targets of issue 14, met or not)
goes to `--out` (JSON), and a table to stdout. `--profile` also records a py-spy profile
of the API under each load, in extra runs (py-spy must be installed:
`.venv/bin/pip install py-spy`; use it with `--processes 1`).

Modules: `__main__` the command line and the order of the runs; `bodies` the WAV and
multipart bodies; `load` wrk and the raw upload; `runs` the server and the measured runs;
`compare` the alternating comparisons and the baseline's server; `cpu` CPU accounting;
`relay` the outbox relay's progress; `profile` py-spy summaries; `report` the results'
context, the targets and the table. The isolated database and vhost, the RSS
sampler and the server process come from tests/support, shared with the tests.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
