"""One worker process: `python -m processing_service.worker_process --queues ... --threads N`.

Started and restarted by the supervisor (`python -m processing_service`), never by hand.
It does what a Dramatiq command-line worker process does, without the command line's
rule that one dead process stops the rest: boot the declared broker, consume the given
queues, and on SIGTERM (or SIGHUP) finish or give back the messages in hand and exit.
SIGINT is ignored: a Ctrl-C reaches the supervisor, which stops its processes in order.
A second SIGTERM exits at once; late acks return unfinished messages to their queues.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

import dramatiq
from dramatiq import Worker

from processing_service.runtime.priority import lower_priority
from processing_service.worker import setup

#: Environment variable naming the pipe the process writes one byte to once it consumes.
READY_FD_ENV = "WORKER_READY_FD"
#: How long a stopping process waits for its messages in hand (Dramatiq's own default).
SHUTDOWN_TIMEOUT_MS = 600_000


def _signal_ready() -> None:
    raw = os.environ.pop(READY_FD_ENV, None)
    if raw is None:
        return
    fd = int(raw)
    try:
        os.write(fd, b"r")
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processing_service.worker_process")
    parser.add_argument("--queues", nargs="+", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nice", type=int, default=0, help="CPU niceness added at start")
    parser.add_argument("--io-idle", action="store_true", help="run in the idle I/O class")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(1)
        stop.set()

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    if not lower_priority(args.nice, io_idle=args.io_idle):
        print("worker: could not move to the idle I/O class", file=sys.stderr)

    setup()
    broker = dramatiq.get_broker()
    broker.emit_after("process_boot")
    worker = Worker(broker, queues=set(args.queues), worker_threads=args.threads)
    worker.start()
    _signal_ready()
    while not stop.wait(1):
        pass
    worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
    broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
