"""This process among the instances that share one database: its name, and whether another
process on this host is still alive (to free what a dead one held)."""

from __future__ import annotations

import os
import socket

HOST = socket.gethostname()
OWNER = f"{HOST}:{os.getpid()}"  # names this process on leases, claims and heartbeats


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (under any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True
