"""Users' alert templates: Jinja2's sandbox, in a worker process bounded in time, memory and
output.

`RENDERER.render(text, format, variables)` returns the rendered text or raises
`TemplateError` (`overran` when a bound was hit). Why a separate process: see `_Renderer`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import resource
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from monitor.errors import TemplateError

Format = Literal["markdown", "html", "text"]
# One render of a user's template: its deadline, the most it may write, and the memory it may
# take beyond what the worker holds when idle.
TEMPLATE_SECONDS = 2.0
TEMPLATE_OUTPUT = 100_000
TEMPLATE_MEMORY = 256 * 2**20
_START_SECONDS = 60.0  # a cold start imports Python, Jinja2 and this module on a loaded machine


@functools.cache
def _environment(fmt: Format) -> SandboxedEnvironment:
    """Jinja2's sandbox for `fmt` (html escapes every field on output)."""
    return SandboxedEnvironment(autoescape=fmt == "html", undefined=jinja2.StrictUndefined,
                                keep_trailing_newline=False)


@functools.lru_cache(maxsize=128)
def _compiled(text: str, fmt: Format) -> jinja2.Template:
    """A template compiled once per worker."""
    return _environment(fmt).from_string(text)


def _render_bounded(text: str, fmt: Format, variables: dict[str, Any]) -> str:
    """Render in the worker, stopping as soon as the output passes TEMPLATE_OUTPUT."""
    pieces, size = [], 0
    for piece in _compiled(text, fmt).generate(variables):
        size += len(piece)
        if size > TEMPLATE_OUTPUT:
            raise TemplateError(f"wrote more than {TEMPLATE_OUTPUT:,} characters", overran=True)
        pieces.append(piece)
    return "".join(pieces)


def _limit_memory(extra: int) -> None:
    """Cap this process's address space at what it maps now plus `extra` (where /proc is)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            mapped = int(statm.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, mapped + extra))
    except (OSError, ValueError, IndexError):
        pass  # no /proc, or a sandbox refuses: the daemon's deadline still holds


def _limit_cpu(seconds: float) -> None:
    """Let this process use `seconds` more CPU time, then be killed (SIGXCPU): a backstop that
    ends a runaway render should the daemon be gone and not kill the worker itself."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    with contextlib.suppress(OSError, ValueError):  # a sandbox may refuse: a backstop only
        resource.setrlimit(resource.RLIMIT_CPU,
                           (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def serve(requests: Connection, replies: Connection, memory: int) -> None:
    """The worker's loop: render each (text, format, fields) request until the daemon closes
    the pipe; reply ("ok", output), ("error", why) or ("overran", why)."""
    _limit_memory(memory)
    replies.send("ready")
    while True:
        try:
            text, fmt, variables = requests.recv()
        except (EOFError, OSError):
            return
        _limit_cpu(10 * TEMPLATE_SECONDS)
        try:
            reply = ("ok", _render_bounded(text, fmt, variables))
        except TemplateError as error:
            reply = ("overran", str(error))
        except MemoryError:
            reply = ("overran", f"needed more than {memory // 2**20} MiB")
        except Exception as error:  # a user's template can raise anything
            reply = ("error", f"{error.__class__.__name__}: {error}")
        try:
            replies.send(reply)
        except OSError:
            return


# The worker is a fresh interpreter given the daemon's import path, rather than a
# multiprocessing child: fork is unsafe in a process with threads, spawn and forkserver re-run
# the daemon's main module (and the parser pool owns the forkserver's preload).
_BOOT = """\
import sys
from multiprocessing.connection import Connection
requests = Connection(int(sys.argv[1]), writable=False)
replies = Connection(int(sys.argv[2]), readable=False)
sys.path[:] = requests.recv()
from monitor.delivery.templates import serve
serve(requests, replies, int(sys.argv[3]))
"""


class _Worker:
    """The process that renders users' templates, and the pipes to it."""

    def __init__(self) -> None:
        theirs_in, ours_out = os.pipe()
        ours_in, theirs_out = os.pipe()
        self.requests = Connection(ours_out, readable=False)
        self.replies = Connection(ours_in, writable=False)
        try:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and code)
                [sys.executable, "-I", "-c", _BOOT, str(theirs_in), str(theirs_out),
                 str(TEMPLATE_MEMORY)], pass_fds=(theirs_in, theirs_out),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        except OSError:
            self.requests.close()
            self.replies.close()
            raise
        finally:
            os.close(theirs_in)
            os.close(theirs_out)

    def started(self) -> bool:
        """Whether the worker said it is ready (it imports Jinja2 and this module first)."""
        try:
            self.requests.send(sys.path)
            return bool(self.replies.poll(_START_SECONDS)) and self.replies.recv() == "ready"
        except (EOFError, OSError):
            return False

    def call(self, request: tuple[str, Format, dict[str, Any]]) -> tuple[str, str] | None:
        """The worker's reply, or None when it did not give one within TEMPLATE_SECONDS."""
        try:
            self.requests.send(request)
            if not self.replies.poll(TEMPLATE_SECONDS):
                return None
            reply: tuple[str, str] = self.replies.recv()
        except (EOFError, OSError):
            return None
        return reply

    def stop(self) -> None:
        """End the worker (overrun, dead, not started, or the daemon is exiting)."""
        self.process.kill()
        self.process.wait(timeout=5)
        self.requests.close()
        self.replies.close()


class _Renderer:
    """Renders users' templates in one worker process, one render at a time.

    Why a process: a deadline checked inside the daemon (a trace function in the rendering
    thread) cannot stop one long C-level step (`'x' * 10**9`, `title|center(10**9)`, the join
    of a buffer a nested loop filled), nothing caps one thread's memory, and the operators,
    filters and methods that can blow up are too many to intercept one by one. A process under
    RLIMIT_AS, killed at its deadline and replaced, bounds time and memory for any template.
    It costs one idle process (~25 MB), started when a template first renders (never without
    a template), and a pipe round trip per render (~0.1 ms).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: _Worker | None = None

    def render(self, text: str, fmt: Format, variables: dict[str, Any]) -> str:
        """`text` rendered with `variables`; TemplateError if it fails or overruns."""
        with self._lock:
            status, value = self._call((text, fmt, variables))
            if status == "overran":
                self.close()  # a new worker gives back what this one grew
        if status != "ok":
            raise TemplateError(value, overran=status == "overran")
        return value

    def _call(self, request: tuple[str, Format, dict[str, Any]]) -> tuple[str, str]:
        worker = self._worker or self._start()
        reply = worker.call(request)
        if reply is None:
            died = worker.process.poll() is not None
            self.close()
            raise TemplateError("the template worker died" if died else
                                f"took longer than {TEMPLATE_SECONDS:g}s", overran=True)
        return reply

    def _start(self) -> _Worker:
        try:
            worker = _Worker()
        except OSError as error:
            raise TemplateError(f"cannot start the template worker: {error}") from None
        if not worker.started():
            worker.stop()
            raise TemplateError("the template worker did not start")
        self._worker = worker
        return worker

    def close(self) -> None:
        """Stop the worker, if one runs (the next render starts another)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None


RENDERER = _Renderer()
atexit.register(RENDERER.close)
