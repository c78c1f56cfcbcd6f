"""Fetching against a real local server: validators, errors, and every limit holding."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib

import pytest

from monitor.config import PollConfig
from monitor.models import FetchResult, FetchStatus
from monitor.sources.fetcher import Fetcher, parse_retry_after
from tests.support.servers import FeedServer, answer, redirect_loop, trickle

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


def fetch(url: str, **poll: object) -> FetchResult:
    async def go() -> FetchResult:
        fetcher = Fetcher(PollConfig.model_validate({"timeout": 5, **poll}))
        try:
            return await fetcher.fetch(url)
        finally:
            await fetcher.close()
    return asyncio.run(go())


def test_conditional_get_turns_into_not_modified(feed_server: FeedServer) -> None:
    """The ETag of the first answer is sent back, and a 304 comes back as NOT_MODIFIED."""
    url = feed_server.serve("/f.xml", FEED, etag='"v1"')

    async def go() -> tuple[FetchResult, FetchResult]:
        fetcher = Fetcher(PollConfig())
        first = await fetcher.fetch(url)
        second = await fetcher.fetch(url, etag=first.etag)
        await fetcher.close()
        return first, second

    first, second = asyncio.run(go())
    assert first.status is FetchStatus.OK
    assert first.body == FEED
    assert first.etag == '"v1"'
    assert second.status is FetchStatus.NOT_MODIFIED
    assert feed_server.requests[-1][1].get("If-None-Match") == '"v1"'
    assert feed_server.requests[-1][1]["User-Agent"].startswith("monitor/")


def _raw_deflate(body: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


GZIP_BOMB = answer(200, gzip.compress(b"\0" * 50_000_000, compresslevel=9),
                   Content_Encoding="gzip")
STACKED = answer(200, gzip.compress(gzip.compress(FEED)), Content_Encoding="gzip, gzip")
RAW_DEFLATE = answer(200, _raw_deflate(FEED), Content_Encoding="deflate")


def test_gzip_bomb_is_cut_at_the_size_cap(feed_server: FeedServer) -> None:
    """50 MB of zeros in 50 KB of gzip is refused once decompression passes max_body."""
    result = fetch(feed_server.serve("/bomb", b"", handler=GZIP_BOMB), max_body="1MB")
    assert result.status is FetchStatus.ERROR
    assert "body larger than 1000000 bytes" in (result.error or "")


def test_plain_body_over_the_cap_is_refused(feed_server: FeedServer) -> None:
    """A body larger than max_body is refused without reading all of it."""
    result = fetch(feed_server.serve("/big", b"x" * 3_000_000), max_body="1MB")
    assert result.status is FetchStatus.ERROR
    assert "body larger" in (result.error or "")


def test_stacked_encodings_are_refused(feed_server: FeedServer) -> None:
    """`Content-Encoding: gzip, gzip` is refused with a clear reason."""
    result = fetch(feed_server.serve("/stacked", b"", handler=STACKED))
    assert result.status is FetchStatus.ERROR
    assert "unsupported Content-Encoding 'gzip, gzip'" in (result.error or "")


def test_raw_deflate_is_decoded(feed_server: FeedServer) -> None:
    """A deflate body without the zlib header still decodes."""
    result = fetch(feed_server.serve("/deflate", b"", handler=RAW_DEFLATE))
    assert result.status is FetchStatus.OK
    assert result.body == FEED


def test_trickling_server_hits_the_total_deadline(feed_server: FeedServer) -> None:
    """A server sending a byte every 100 ms is cut off by the total deadline."""
    started = time.monotonic()
    result = fetch(feed_server.serve("/trickle", b"", handler=trickle(0.1, 100)), timeout=1)
    assert result.status is FetchStatus.ERROR
    assert "no complete answer within 1s" in (result.error or "")
    assert time.monotonic() - started < 8  # a safety net for the test itself, not a benchmark


def test_redirect_loop_is_an_error(feed_server: FeedServer) -> None:
    """A redirect loop stops at max_redirects with a clear reason."""
    result = fetch(feed_server.serve("/loop", b"", handler=redirect_loop), max_redirects=3)
    assert result.status is FetchStatus.ERROR
    assert "too many redirects" in (result.error or "")


@pytest.mark.parametrize(("status", "headers", "retry"), [
    (404, {}, None), (500, {}, None), (429, {"Retry-After": "120"}, 120.0),
    (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
])
def test_http_errors_carry_status_and_retry_after(
        feed_server: FeedServer, status: int, headers: dict[str, str],
        retry: float | None) -> None:
    """HTTP errors become ERROR results naming the status; 429/503 carry Retry-After."""
    result = fetch(feed_server.serve("/e", b"no", status=status, headers=headers))
    assert result.status is FetchStatus.ERROR
    assert result.http_status == status
    assert (result.error or "").startswith(f"HTTP {status}")
    assert result.retry_after == retry


def test_connection_refused_is_an_error() -> None:
    """A closed port is an ERROR result saying it cannot connect."""
    result = fetch("http://127.0.0.1:9/feed.xml")
    assert result.status is FetchStatus.ERROR
    assert (result.error or "").startswith("cannot connect")


def test_retry_after_parsing() -> None:
    """Retry-After in seconds or as a date; garbage gives None."""
    assert parse_retry_after("30") == 30
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
