"""Fetching: one shared httpx client, conditional GET, and hard limits on time and size.

httpx's read timeout applies to each read, so a server trickling a byte a second never trips it:
every request also runs under a total deadline. httpx decompresses without an output limit, so we
read the raw stream and decompress it ourselves, counting bytes against `max_body`; only gzip and
deflate are offered, and stacked or unknown encodings are refused.

Failures never raise: they come back as a `FetchResult` with status ERROR and a one-line reason.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from monitor import __version__
from monitor.config import PollConfig
from monitor.errors import BodyTooLarge
from monitor.models import FetchResult, FetchStatus

USER_AGENT = f"monitor/{__version__} (news monitoring daemon; RSS/Atom)"
_ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9,"
           " text/xml;q=0.9, application/feed+json;q=0.8, */*;q=0.5")


class _Decoder:
    """Bounded decoding of one Content-Encoding."""

    def __init__(self, encoding: str, limit: int):
        self.limit, self.size = limit, 0
        self.zlib: Any = None
        if encoding in ("gzip", "x-gzip"):
            self.zlib = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self.zlib = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        self.encoding = encoding

    def feed(self, chunk: bytes) -> bytes:
        if self.zlib is None:
            return self._count(chunk)
        try:
            out = self._inflate(chunk)
        except zlib.error:
            if self.encoding != "deflate" or self.size:
                raise
            # Some servers send raw deflate without the zlib header.
            self.zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._inflate(chunk)
        return out

    def _inflate(self, chunk: bytes) -> bytes:
        pieces = []
        data = chunk
        while data:
            piece = self.zlib.decompress(data, self.limit - self.size + 1)
            pieces.append(self._count(piece))
            data = self.zlib.unconsumed_tail
        return b"".join(pieces)

    def _count(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.limit:
            raise BodyTooLarge
        return data


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error(url: str, reason: str, started: float, **extra: Any) -> FetchResult:
    return FetchResult(url=url, status=FetchStatus.ERROR, error=reason,
                       elapsed=time.monotonic() - started, **extra)


def _describe(error: Exception) -> str:
    reasons: list[tuple[type[Exception], str]] = [
        (httpx.ConnectTimeout, "connection timed out"),
        (httpx.ReadTimeout, "read timed out"),
        (httpx.TooManyRedirects, "too many redirects"),
        (httpx.ConnectError, "cannot connect"),
        (httpx.RemoteProtocolError, "broken HTTP response"),
        (httpx.UnsupportedProtocol, "unsupported URL"),
        (httpx.InvalidURL, "invalid URL"),
        (httpx.DecodingError, "cannot decode body"),
    ]
    for kind, reason in reasons:
        if isinstance(error, kind):
            detail = str(error).splitlines()[0] if str(error) else ""
            return f"{reason}: {detail}" if detail and detail != reason else reason
    return f"{error.__class__.__name__}: {error}"


class Fetcher:
    """Fetches feeds through one `httpx.AsyncClient` with global and per-host limits."""

    def __init__(self, poll: PollConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.poll = poll
        timeout = httpx.Timeout(poll.timeout, connect=poll.connect_timeout)
        limits = httpx.Limits(max_connections=poll.concurrency,
                              max_keepalive_connections=poll.concurrency)
        self.client = httpx.AsyncClient(
            timeout=timeout, limits=limits, follow_redirects=True,
            max_redirects=poll.max_redirects, transport=transport,
            headers={"User-Agent": poll.user_agent or USER_AGENT, "Accept": _ACCEPT,
                     "Accept-Encoding": "gzip, deflate"},
        )
        self._all = asyncio.Semaphore(poll.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def close(self) -> None:
        """Close every connection."""
        await self.client.aclose()

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        host = (urlsplit(url).hostname or "").lower()
        return self._hosts.setdefault(host, asyncio.Semaphore(self.poll.per_host))

    async def fetch(self, url: str, etag: str | None = None,
                    last_modified: str | None = None) -> FetchResult:
        """GET `url` (conditionally when validators are given), within every limit."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        started = time.monotonic()
        async with self._all, self._host_limit(url):
            try:
                async with asyncio.timeout(self.poll.timeout):
                    return await self._get(url, headers, started)
            except TimeoutError:
                return _error(url, f"no complete answer within {self.poll.timeout:g}s", started)
            except httpx.HTTPError as error:
                return _error(url, _describe(error), started)
            except httpx.InvalidURL as error:  # not an HTTPError: e.g. a redirect to data:
                return _error(url, f"invalid URL (in a redirect?): {error}", started)
            except (OSError, ValueError) as error:
                return _error(url, f"{error.__class__.__name__}: {error}", started)

    async def _get(self, url: str, headers: Mapping[str, str], started: float) -> FetchResult:
        async with self.client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            headers = {k.lower(): v for k, v in response.headers.items()}
            if status == 304:
                return FetchResult(url=url, status=FetchStatus.NOT_MODIFIED, http_status=status,
                                   headers=headers, elapsed=time.monotonic() - started,
                                   etag=headers.get("etag") or None,
                                   last_modified=headers.get("last-modified"))
            if status >= 400:
                retry = parse_retry_after(headers.get("retry-after")) \
                    if status in (429, 503) else None
                return _error(url, f"HTTP {status} {response.reason_phrase}".strip(), started,
                              retry_after=retry, http_status=status, headers=headers)
            encoding = headers.get("content-encoding", "").strip().lower()
            try:
                decoder = _Decoder(encoding, self.poll.max_body)
                chunks = [decoder.feed(chunk) async for chunk in response.aiter_raw()]
            except BodyTooLarge:
                return _error(url, f"body larger than {self.poll.max_body} bytes", started,
                              http_status=status)
            except (ValueError, zlib.error) as error:
                return _error(url, f"cannot decode body: {error}", started, http_status=status)
            return FetchResult(
                url=url, status=FetchStatus.OK, body=b"".join(chunks), http_status=status,
                headers=headers, etag=headers.get("etag") or None,
                last_modified=headers.get("last-modified") or None,
                elapsed=time.monotonic() - started,
            )
