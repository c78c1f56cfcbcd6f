"""A feed server for benchmarks: N generated feeds over HTTP/1.1 keep-alive, with latency.

    python -m bench.server --port 8765 --feeds 1000 --entries 50 --latency 0.05

GET /feed/I.xml serves feed I (ETag support switchable); POST /control?etag=0|1&change=F
changes a share F of the feeds (new entries) and switches validators on or off. Runs in its own
process so it does not share the measured process's GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
from urllib.parse import parse_qs, urlsplit

from bench.feeds import feed_body


class FeedSite:
    """The state of the served feeds: one version number per feed."""

    def __init__(self, feeds: int, entries: int, latency: float):
        self.entries, self.latency, self.etag = entries, latency, True
        self.versions = [0] * feeds
        self.cache: dict[int, bytes] = {}
        self.rng = random.Random(3)

    def body(self, index: int) -> bytes:
        if index not in self.cache:
            self.cache[index] = feed_body(index, self.versions[index], self.entries)
        return self.cache[index]

    def change(self, share: float) -> None:
        for index in self.rng.sample(range(len(self.versions)), int(len(self.versions) * share)):
            self.versions[index] += 1
            self.cache.pop(index, None)


def _response(status: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: keep-alive"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _answer(site: FeedSite, method: str, target: str, headers: dict[str, str]) -> bytes:
    url = urlsplit(target)
    if method == "POST" and url.path == "/control":
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        site.etag = query.get("etag", "1" if site.etag else "0") == "1"
        site.change(float(query.get("change", "0")))
        return _response("200 OK", b"ok", {})
    if not url.path.startswith("/feed/"):
        return _response("404 Not Found", b"", {})
    await asyncio.sleep(site.latency)
    index = int(url.path.removeprefix("/feed/").removesuffix(".xml"))
    body = site.body(index)
    tag = '"' + hashlib.md5(body).hexdigest() + '"'
    if site.etag and headers.get("if-none-match") == tag:
        return _response("304 Not Modified", b"", {"ETag": tag})
    extra = {"Content-Type": "application/rss+xml; charset=utf-8"}
    if site.etag:
        extra["ETag"] = tag
    return _response("200 OK", body, extra)


async def _serve_client(site: FeedSite, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            lines = request.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            if int(headers.get("content-length", "0")):
                await reader.readexactly(int(headers["content-length"]))
            writer.write(await _answer(site, method, target, headers))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


HOSTS = [f"127.0.0.{n}" for n in range(1, 21)]  # 20 loopback "hosts", as feeds have many


async def serve(port: int, site: FeedSite) -> None:
    """Serve until killed, on 20 loopback addresses."""
    server = await asyncio.start_server(lambda r, w: _serve_client(site, r, w), HOSTS,
                                        port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Command line of the benchmark feed server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(serve(args.port, FeedSite(args.feeds, args.entries, args.latency)))


if __name__ == "__main__":
    main()
