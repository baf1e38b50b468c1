"""Jobs for the scheduler tests, named by dotted path like the real ones (apps/scheduler/registry.py)."""

import os
import threading
from pathlib import Path

CALLS: list[str] = []
_lock = threading.Lock()


def record() -> dict[str, int]:
    """Note one call: in memory (threads of this process) and, when SCHEDULER_TEST_LOG names a file, there
    (one line per call, for racing processes)."""
    with _lock:
        CALLS.append(threading.current_thread().name)
    log = os.environ.get("SCHEDULER_TEST_LOG")
    if log:
        with Path(log).open("a") as handle:
            handle.write(f"{os.getpid()}\n")
    return {"calls": 1}


def explode() -> dict[str, int]:
    raise RuntimeError("the job broke")
