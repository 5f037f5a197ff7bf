"""A small asyncio HTTP/1.1 client for the one call on the request path: a search.

The ``meilisearch`` client is synchronous (``requests``): each search hopped to a worker thread,
built a ``requests`` session call and parsed JSON with the standard library — about as much CPU
as the rest of the request together, on the two cores the portal shares with Meilisearch. This
client keeps a few connections open per event loop, writes the request in one go, and encodes
and decodes with msgspec (docs/decisions/0004). Everything else (indexing, settings, keys) still
goes through the ``meilisearch`` client.

A search is read-only, so a request on a kept-alive connection the server has meanwhile closed
is sent again once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec

MAX_IDLE = 32
MAX_BODY = 64 * 1024 * 1024

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class SearchHttpError(Exception):
    """Meilisearch answered with an error status (its JSON error in ``body`` when it sent one)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        code = body.get("code") if isinstance(body, dict) else None
        self.code = str(code) if code else ""
        super().__init__(f"Meilisearch answered {status}: {body!r}")


class _Stale(ConnectionError):
    """The server closed a kept-alive connection before answering (a ConnectionError, so a
    failed retry reaches callers as "search unavailable", not a 500)."""


class MeiliHttp:
    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        self._base = parts.path.rstrip("/")
        host_header = parts.netloc.rsplit("@", 1)[-1]
        self._head = (
            f"Host: {host_header}\r\nAuthorization: Bearer {api_key}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
            "User-Agent: canal\r\n"
        ).encode("latin-1")
        self._timeout = timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def search(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.post(f"/indexes/{quote(uid, safe='')}/search", body)
        if not isinstance(answer, dict):
            raise SearchHttpError(200, answer)
        return answer

    async def post(self, path: str, body: Any) -> Any:
        payload = _encoder.encode(body)
        request = (
            f"POST {self._base}{path} HTTP/1.1\r\n".encode("latin-1")
            + self._head
            + f"Content-Length: {len(payload)}\r\n\r\n".encode("latin-1")
            + payload
        )
        async with asyncio.timeout(self._timeout):
            connection, reused = await self._connection()
            try:
                status, data, keep = await self._exchange(connection, request)
            except ConnectionError as error:  # _Stale included
                self._discard(connection)
                if not reused:
                    raise ConnectionError(f"Meilisearch closed the connection: {error}") from None
                connection = await self._open()
                try:
                    status, data, keep = await self._exchange(connection, request)
                except BaseException:
                    self._discard(connection)  # the fresh one too: no socket left open
                    raise
            except BaseException:
                self._discard(connection)
                raise
        if keep and len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        else:
            self._discard(connection)
        decoded = _decoder.decode(data) if data else None
        if status >= 300:
            raise SearchHttpError(status, decoded)
        return decoded

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    # --- connections --------------------------------------------------------------------

    async def _connection(self) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Streams belong to the loop that opened them (tests, the CLI and the worker each
            # run their own); another loop's connections are dropped, not shared.
            self._idle = []
            self._loop = loop
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return (reader, writer), True
            writer.close()
        return await self._open(), False

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = ssl.create_default_context() if self._tls else None
        return await asyncio.open_connection(self._host, self._port, ssl=context, limit=MAX_BODY)

    @staticmethod
    def _discard(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        connection[1].close()

    # --- one exchange -------------------------------------------------------------------

    @staticmethod
    async def _exchange(
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
    ) -> tuple[int, bytes, bool]:
        reader, writer = connection
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise _Stale() from None
            raise ConnectionError("incomplete response head") from None
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers from Meilisearch
                    break
                chunks.append(await reader.readexactly(size + 2))
            data = b"".join(c[:-2] for c in chunks)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_BODY:
                raise ConnectionError("response too large")
            data = await reader.readexactly(length)
        else:
            data = await reader.read(MAX_BODY)
            keep = False
        return status, data, keep
