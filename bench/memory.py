"""Memory of a process tree (a daemon and its parser workers), read from /proc on Linux."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path


def descendants(root: int) -> list[int]:
    """Every process below `root` (children, grandchildren…)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(stat[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def status_kb(pid: int, field: str) -> int:
    """A memory field of /proc/PID/status in kB (VmRSS now, VmHWM the peak); 0 if gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/status").read_text().split(f"{field}:")[1].split()[0])
    return 0


class TreeMemory:
    """Samples the peak RSS of a process and its descendants in a background thread."""

    def __init__(self, root: int, every: float = 0.05):
        self.root, self.every = root, every
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def sample(self) -> None:
        """Record the current peak of every process in the tree."""
        for pid in [self.root, *descendants(self.root)]:
            self.peaks[pid] = max(self.peaks.get(pid, 0), status_kb(pid, "VmHWM"))

    def now_kb(self) -> int:
        """The tree's RSS right now, in kB."""
        return sum(status_kb(pid, "VmRSS") for pid in [self.root, *descendants(self.root)])

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
