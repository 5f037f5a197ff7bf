"""The search path's HTTP client against small real servers on loopback: kept-alive
connections, a connection the server closed, chunked bodies, error answers, no server."""

from __future__ import annotations

import asyncio
import socket

import msgspec
import pytest

from canal.platform.http.errors import CanalError
from canal.platform.search.http import MeiliHttp, SearchHttpError
from canal.platform.search.indexes import LISTINGS
from canal.platform.search.services import SearchService


class _Server:
    """Answers each request with the next canned reply; counts connections and requests."""

    def __init__(self, replies: list[tuple[int, bytes, dict[str, str]]], close_after: int = 0):
        self.replies = replies
        self.close_after = close_after  # close each connection after this many answers
        self.connections = 0
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                self.bodies.append(await reader.readexactly(length))
                if not self.replies:  # nothing left to say: hang up without answering
                    break
                status, body, headers = self.replies.pop(0)
                extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                if "Transfer-Encoding" not in headers:
                    extra += f"Content-Length: {len(body)}\r\n"
                writer.write(f"HTTP/1.1 {status} X\r\n{extra}\r\n".encode() + body)
                await writer.drain()
                answered += 1
                if self.close_after and answered >= self.close_after:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()


async def _serve(server: _Server) -> tuple[asyncio.base_events.Server, str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    return listener, f"http://127.0.0.1:{port}"


async def test_kept_alive_and_a_connection_closed_by_the_server():
    body = msgspec.json.encode({"hits": [], "totalHits": 0})
    server = _Server([(200, body, {})] * 3, close_after=1)
    listener, url = await _serve(server)
    async with listener:
        client = MeiliHttp(url, "key")
        for _ in range(3):
            assert (await client.search("idx", {"q": "税"}))["totalHits"] == 0
            await asyncio.sleep(0.01)  # the server's close arrives before the next request
    assert server.connections == 3  # each closed connection was replaced, no error surfaced
    assert msgspec.json.decode(server.bodies[0]) == {"q": "税"}

    server = _Server([(200, body, {})] * 3)
    listener, url = await _serve(server)
    async with listener:
        client = MeiliHttp(url, "key")
        for _ in range(3):
            await client.search("idx", {"q": "x"})
        await client.close()
    assert server.connections == 1  # one kept-alive connection for all three


async def test_a_retry_that_also_fails_is_a_connection_error():
    """The kept-alive connection is stale and the fresh one hangs up too: callers must get a
    ConnectionError (search unavailable, 503), and neither socket may stay open."""
    body = msgspec.json.encode({"hits": [], "totalHits": 0})
    server = _Server([(200, body, {})], close_after=1)
    listener, url = await _serve(server)
    async with listener:
        client = MeiliHttp(url, "key")
        await client.search("idx", {"q": "税"})
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectionError):
            await client.search("idx", {"q": "税"})
        assert client._idle == []
    assert server.connections == 2


async def test_chunked_bodies_and_error_answers():
    payload = msgspec.json.encode({"hits": [{"id": "甲"}], "totalHits": 1})
    chunked = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (payload[:7], payload[7:])
    )
    error = msgspec.json.encode({"code": "invalid_search_filter", "message": "bad"})
    server = _Server(
        [(200, chunked + b"0\r\n\r\n", {"Transfer-Encoding": "chunked"}), (400, error, {})]
    )
    listener, url = await _serve(server)
    async with listener:
        client = MeiliHttp(url, "key")
        assert (await client.search("idx", {}))["hits"] == [{"id": "甲"}]
        with pytest.raises(SearchHttpError) as raised:
            await client.search("idx", {})
    assert raised.value.status == 400 and raised.value.code == "invalid_search_filter"


async def test_no_server_answers_search_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    service = SearchService(f"http://127.0.0.1:{port}", "key", indexes=[LISTINGS])
    with pytest.raises(CanalError) as raised:
        await service.search(LISTINGS.kind, "税", caller=None)
    assert raised.value.code == "search_unavailable" and raised.value.status == 503
