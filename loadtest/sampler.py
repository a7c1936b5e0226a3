"""Every ``interval`` seconds, the RSS (and its anonymous and file-backed parts), open file
descriptors and start time of every gunicorn worker and of the webhook worker (``psutil``, and
``/proc`` for the parts of the RSS and for sockets, counted apart from files and pipes)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import psutil

from loadtest.checks import Sample

Processes = Callable[[], list[tuple[str, int]]]  # the (role, pid) pairs to sample now


def gunicorn_workers(master_pid: int) -> list[tuple[str, int]]:
    """The worker processes of a gunicorn master, now."""
    try:
        children = psutil.Process(master_pid).children(recursive=False)
    except psutil.Error:
        return []
    return [("gunicorn-worker", child.pid) for child in children]


def sockets_of(pid: int) -> int:
    """How many of a process's descriptors are sockets (Linux ``/proc``; 0 elsewhere)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    count = 0
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def resident_parts(pid: int) -> tuple[float, float]:
    """A process's resident memory split in MB: anonymous (heap) and file-backed (mapped
    files, such as SQLite's memory-mapped database), from ``/proc/<pid>/status`` (Linux)."""
    parts = {"RssAnon:": 0.0, "RssFile:": 0.0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:  # "RssAnon:\t   23832 kB"
                fields = line.split()
                if len(fields) >= 2 and fields[0] in parts:
                    parts[fields[0]] = int(fields[1]) / 1024  # kB
    except (OSError, ValueError):
        pass
    return round(parts["RssAnon:"], 2), round(parts["RssFile:"], 2)


def measure(role: str, pid: int) -> Sample | None:
    """One sample of one process, or None if it is gone."""
    try:
        process = psutil.Process(pid)
        rss = process.memory_info().rss / (1024 * 1024)
        fds = process.num_fds()
        started = process.create_time()
    except psutil.Error:
        return None
    anon, mapped = resident_parts(pid)
    return Sample(
        time.time(), role, pid, round(rss, 2), fds, sockets_of(pid), anon, mapped, started
    )


class ProcessSampler(threading.Thread):
    """Samples ``processes()`` now and then every ``interval`` seconds until ``stop()``."""

    def __init__(self, processes: Processes, interval: float = 10.0) -> None:
        super().__init__(name="process-sampler", daemon=True)
        self.processes = processes
        self.interval = interval
        self.samples: list[Sample] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def sample_now(self) -> None:
        """Take one round of samples at once."""
        taken = [measure(role, pid) for role, pid in self.processes()]
        with self._lock:
            self.samples += [sample for sample in taken if sample is not None]

    def run(self) -> None:
        while True:
            self.sample_now()
            if self._halt.wait(self.interval):
                return

    def stop(self) -> list[Sample]:
        """Stop, take a last round, and return every sample."""
        self._halt.set()
        if self.is_alive():
            self.join(self.interval + 5)
        self.sample_now()
        with self._lock:
            return list(self.samples)
