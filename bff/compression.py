"""Response compression: brotli, else gzip, else none, as the client's Accept-Encoding allows.

One pure ASGI middleware (modelled on starlette's GZipMiddleware, which knows only gzip):
- the coding is chosen by Accept-Encoding q-values, preferring br over gzip at equal q;
  `identity;q=0` without an acceptable coding still gets identity (never a 406 for a body);
- bodies smaller than `minimum_size` (COMPRESSION_MIN_BYTES) go out as they are: below ~1 KiB
  the framing costs more than it saves;
- only compressible media types (JSON, text, JavaScript, SVG); a response that already has a
  Content-Encoding, a 304/204, and WebSocket traffic pass untouched;
- a streamed body is compressed as it streams (one compressor per response);
- `Vary: Accept-Encoding` is added, and an ETag is marked per coding (`"…-br"`): a strong
  validator must differ between representations (RFC 9110 8.8.3).
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMPRESSIBLE = ("application/json", "application/graphql-response+json", "text/", "application/javascript")
_PREFERENCE = {"br": 2, "gzip": 1}


class _Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _Gzip:
    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()


class _Brotli:
    def __init__(self, quality: int) -> None:
        self._b = brotli.Compressor(mode=brotli.MODE_TEXT, quality=quality)

    def compress(self, data: bytes) -> bytes:
        return self._b.process(data)

    def finish(self) -> bytes:
        return self._b.finish()


def choose_encoding(accept_encoding: str | None) -> str | None:
    """`br`, `gzip` or None (identity), from an Accept-Encoding header."""
    if not accept_encoding:
        return None
    q_of: dict[str, float] = {}
    for part in accept_encoding.split(","):
        fields = [f.strip() for f in part.split(";")]
        coding = fields[0].lower()
        q = 1.0
        for param in fields[1:]:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if coding:
            q_of[coding] = q
    best: tuple[float, int, str] | None = None
    for coding, rank in _PREFERENCE.items():
        q = q_of.get(coding, q_of.get("*", 0.0))
        if q > 0 and (best is None or (q, rank) > best[:2]):
            best = (q, rank, coding)
    return best[2] if best else None


def _compressible(headers: Headers) -> bool:
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    return media.startswith(COMPRESSIBLE) or media == "image/svg+xml"


class CompressionMiddleware:
    def __init__(
        self, app: ASGIApp, minimum_size: int = 1024, gzip_level: int = 6, brotli_quality: int = 4
    ) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.gzip_level = gzip_level
        # Quality 4 compresses about as well as gzip -6 at a similar speed; 11 is for static assets.
        self.brotli_quality = brotli_quality

    def _compressor(self, coding: str) -> _Compressor:
        return _Brotli(self.brotli_quality) if coding == "br" else _Gzip(self.gzip_level)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        coding = choose_encoding(Headers(scope=scope).get("accept-encoding"))
        if coding is None:
            await self.app(scope, receive, self._vary_only(send))
            return
        await self.app(scope, receive, _Responder(self, coding, send).send)

    @staticmethod
    def _vary_only(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=message.setdefault("headers", []))
                if _compressible(headers):
                    _add_vary(headers)
            await send(message)

        return wrapped


def _add_vary(headers: MutableHeaders) -> None:
    vary = headers.get("vary", "")
    if "accept-encoding" not in vary.lower():
        headers["vary"] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"


class _Responder:
    def __init__(self, middleware: CompressionMiddleware, coding: str, send: Send) -> None:
        self.middleware = middleware
        self.coding = coding
        self._send = send
        self.start: Message | None = None
        self.compressor: _Compressor | None = None
        self.passthrough = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            headers = Headers(raw=message.get("headers", []))
            status = message["status"]
            self.passthrough = (
                status < 200
                or status in (204, 206, 304)
                or "content-encoding" in headers
                or not _compressible(headers)
            )
            if self.passthrough:
                await self._send(message)
            return
        if kind != "http.response.body" or self.passthrough:
            await self._send(message)
            return
        assert self.start is not None
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.compressor is None:
            headers = MutableHeaders(raw=self.start.setdefault("headers", []))
            _add_vary(headers)
            if not more and len(body) < self.middleware.minimum_size:
                self.passthrough = True  # small and whole: not worth it
                await self._send(self.start)
                await self._send(message)
                return
            self.compressor = self.middleware._compressor(self.coding)
            headers["content-encoding"] = self.coding
            tag = headers.get("etag")
            if tag and tag.endswith('"'):
                headers["etag"] = f'{tag[:-1]}-{self.coding}"'
            if more:
                del headers["content-length"]  # streamed: the length is unknown until the end
                await self._send(self.start)
                await self._send({**message, "body": self.compressor.compress(body)})
                return
            data = self.compressor.compress(body) + self.compressor.finish()
            headers["content-length"] = str(len(data))
            await self._send(self.start)
            await self._send({"type": "http.response.body", "body": data, "more_body": False})
            return
        data = self.compressor.compress(body)
        if not more:
            data += self.compressor.finish()
        await self._send({"type": "http.response.body", "body": data, "more_body": more})
