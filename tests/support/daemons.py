"""A `monitor run` daemon in a subprocess with its HTTP endpoint on a free loopback port."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.project import wait_for, write_config
from tests.support.servers import Sink


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class RunningDaemon:
    """A `monitor run` subprocess serving HTTP at `base`."""

    base: str
    pid: int


@contextlib.contextmanager
def http_daemon(tmp_path: Path, feeds: list[dict[str, Any]], sink: Sink,
                alerts: int = 1) -> Iterator[RunningDaemon]:
    """`monitor run` with http.listen on a free loopback port, once `alerts` alerts arrived;
    it must stop cleanly (exit 0) on SIGTERM at the end."""
    base = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, feeds, [{"url": sink.url}],
                          http={"listen": base.removeprefix("http://")})
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run"],
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert wait_for(lambda: len(sink.received) >= alerts), (tmp_path / "daemon.log").read_text()
        yield RunningDaemon(base, daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
        log.close()
