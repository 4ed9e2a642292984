#!/usr/bin/env bash
# Run the ingest API and the worker pools in the foreground; Ctrl-C stops them all,
# and so does either one exiting.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait
}
trap stop INT TERM EXIT

$PY -m ingest_service serve &
pids+=($!)
$PY -m processing_service &
pids+=($!)
echo "run: ingest API on http://${INGEST_HOST:-127.0.0.1}:${INGEST_PORT:-8000}," \
    "workers with WHISPER_MODEL=${WHISPER_MODEL:-base} (Ctrl-C stops)" >&2
wait -n
