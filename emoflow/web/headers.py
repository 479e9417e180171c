"""Response headers every page gets, and HEAD for every GET route."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What the templates load: app.css, page.css and app.js from this server, <audio>/<video>/<img> from
# /artifacts; nothing inline (no <script> or <style> blocks, style attributes or on* handlers).
PAGE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "media-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
}


class PageHeaders:
    """Adds PAGE_HEADERS to every HTML response that does not set them itself (/docs has its own
    policy; artifacts are never text/html-with-our-policy: they carry a sandbox policy of their own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").startswith("text/html"):
                    for key, value in PAGE_HEADERS.items():
                        headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadFallback:
    """HEAD on any GET route: GET's status and headers, no body (RFC 9110 9.3.2).

    FastAPI routes answer only the methods they declare, so a HEAD the app refuses with 405 is run
    again as GET with its body dropped. Routes that declare HEAD themselves (artifacts, static files)
    answer it directly and never read what they do not send.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        first_status: int | None = None
        held: list[Message] = []  # what comes before the status (a test client's debug message)

        async def unless_refused(message: Message) -> None:
            nonlocal first_status
            if message["type"] == "http.response.start":
                first_status = message["status"]
                if first_status != 405:
                    for early in held:
                        await send(early)
                    await send(message)
            elif first_status is None:
                held.append(message)
            elif first_status != 405:
                await send(message)

        await self.app(scope, receive, unless_refused)
        if first_status != 405:
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif message["type"] == "http.response.pathsend":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:  # the start (Content-Length stays GET's, as HEAD's must) and any extension's message
                await send(message)

        await self.app(dict(scope, method="GET"), receive, headers_only)
