"""Background priority for worker processes: they yield the CPU and the disk to the API.

On a shared host the ingest API must keep answering while the workers are busy: worker
processes raise their niceness (CPU) and move to the idle I/O class, so that an upload's
fsync is not queued behind a worker writing chunks (the block layer's mq-deadline, bfq
and kyber schedulers serve the idle class only when no other I/O waits). Threads and
child processes (torch's threads, ffmpeg) inherit both.

Niceness alone is not enough where the kernel groups processes by session for the CPU
scheduler (autogroup, on by default in most distributions): each session then gets an
equal share whatever its processes' niceness, so workers started in a session of their
own took 60% of the CPU beside a busy API at nice 19 (make bench-ingest). The supervisor
therefore leads a session of its own and lowers that session's group (`own_cpu_group`).
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

#: The calling process's scheduling autogroup (sched(7)); writable to set its niceness.
AUTOGROUP = Path("/proc/self/autogroup")
#: ioprio_set(2): its system call number per machine, and its arguments.
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "arm64": 30}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13


def lower_priority(nice: int, *, io_idle: bool) -> bool:
    """Add `nice` to this process's niceness and, with `io_idle`, move it to the idle
    I/O class. False when the I/O class could not be set (another machine, or a kernel
    that refuses it): the CPU niceness still holds."""
    if nice:
        os.nice(nice)
    if not io_idle:
        return True
    number = _SYS_IOPRIO_SET.get(platform.machine())
    if number is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    value = _IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT
    return int(libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, value)) == 0


def own_cpu_group(nice: int) -> bool:
    """Lead a session of its own (unless this process leads a process group already, as
    a shell's foreground job does) and give its scheduling autogroup niceness `nice`, so
    that this process and its children yield the CPU to other sessions. False where the
    kernel has no autogroups or this process cannot lead a session."""
    if not AUTOGROUP.exists():
        return False
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except OSError:
            return False  # in a shell's group: lowering it would lower the shell's jobs
    try:
        AUTOGROUP.write_text(f"{nice}\n")
    except OSError:
        return False
    return True
