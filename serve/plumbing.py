"""HTTP plumbing around the routes: JSON errors, request body limits, a catch-all for the unexpected, and the
uvicorn server with bounded request headers (size and time) and a bounded number of connections."""
import json
import logging

from fastapi.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

INTERNAL_ERROR = "internal server error; the details are in the server's log"
MAX_HEADER_BYTES = 32 * 1024  # request line + headers; more is answered 431 (and the connection closed)
HEADER_TIMEOUT = 10.0         # seconds a connection has to send a complete request line + headers
MAX_CONNECTIONS = 128         # open connections (and running requests); more are answered 503

log = logging.getLogger("app")


class ApiError(Exception):
    """Something wrong with the request: answered `status` with {"error": message}."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def error_response(status, message, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def megabytes(n):
    return f"{n / 1024 / 1024:.1f} MB" if n >= 100 * 1024 else f"{n} bytes"


class RequestLimits:
    """ASGI middleware: refuse request headers over `max_header_bytes` (431) and a body over `max_bytes` (batch:
    `max_batch_bytes`) with a 413, and keep the request bodies held at once under `memory` bytes (503, try
    again, beyond).

    The server (BoundedHeaders) bounds the bytes of headers still arriving; headers that arrive whole in one
    read are measured here. A declared Content-Length is checked (and reserved) before
    anything is read; a chunked body is counted as it arrives, so an endless upload is cut off at the limit
    instead of filling memory or disk.
    """

    def __init__(self, app, max_bytes, max_batch_bytes, memory, max_header_bytes=MAX_HEADER_BYTES):
        self.app, self.max_bytes, self.max_batch_bytes, self.memory = app, max_bytes, max_batch_bytes, memory
        self.max_header_bytes = max_header_bytes
        self.held = 0  # bytes of the bodies of the requests in progress (one event loop: no lock needed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header_bytes = len(scope.get("raw_path") or b"") + sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if header_bytes > self.max_header_bytes:
            return await error_response(431, f"the request headers are over the limit of "
                                             f"{megabytes(self.max_header_bytes)}")(scope, receive, send)
        limit = self.max_batch_bytes if scope["path"].rstrip("/").endswith("/batch") else self.max_bytes
        too_large = f"the request body is over the limit of {megabytes(limit)} (set by MAX_IMAGE_BYTES)"
        busy = "the server is busy with other uploads; try again in a moment"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await error_response(400, "bad Content-Length header")(scope, receive, send)
        declared = None if declared is None else int(declared)
        if declared is not None and declared > limit:
            return await error_response(413, too_large)(scope, receive, send)
        held = declared or 0
        if self.held + held > self.memory:
            return await error_response(503, busy, {"Retry-After": "1"})(scope, receive, send)
        self.held += held
        received = 0

        async def limited_receive():
            nonlocal received, held
            message = await receive()
            size = len(message.get("body", b""))
            received += size
            if received > limit:
                raise ApiError(413, too_large)  # inside the route: answered by the ApiError handler
            if declared is None:  # chunked: reserved as it arrives
                if self.held + size > self.memory:
                    raise ApiError(503, busy)
                self.held += size
                held += size
            return message

        try:
            await self.app(scope, limited_receive, send)
        finally:
            self.held -= held


class CatchErrors:
    """ASGI middleware: an unexpected exception is logged with its traceback and answered 500, no internals."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started or scope["type"] != "http":
                raise  # half an answer is out: only the server can close the connection
            await error_response(500, INTERNAL_ERROR)(scope, receive, send)


class BoundedHeaders(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size bound for each request's line and headers.

    uvicorn has neither for httptools: its keep-alive timer restarts with every byte received, so a client that
    sends its headers a byte at a time (or nothing at all after connecting) would hold its connection forever,
    and httptools buffers a header of any length. (Its h11 protocol bounds the bytes buffered of incomplete
    headers, h11_max_incomplete_event_size, but costs a quarter more CPU per request.) Here, as h11 does, the
    bytes received while a request's headers are incomplete may not pass `max_header_bytes` (answered 431, the
    connection closed), and the headers must be in within `header_timeout` seconds of the connection opening or
    of the previous response (the connection is closed). Headers that arrive complete in one read are measured
    by RequestLimits.
    """

    header_timeout = HEADER_TIMEOUT
    max_header_bytes = MAX_HEADER_BYTES

    def connection_made(self, transport):
        self.deadline, self.waiting, self.header_bytes = None, True, 0
        super().connection_made(transport)
        self._arm()

    def data_received(self, data):
        if self.waiting:
            self.header_bytes += len(data)
        super().data_received(data)
        if self.waiting and self.header_bytes > self.max_header_bytes and not self.transport.is_closing():
            message = json.dumps({"error": f"the request headers are over the limit of {self.max_header_bytes} "
                                           f"bytes"}).encode()
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json"
                                 b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(message), message))
            self.transport.close()

    def on_headers_complete(self):
        self.waiting, self.header_bytes = False, 0
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self):
        self.waiting = True  # the next request's headers may follow on this connection
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete and not self.transport.is_closing():
            self._arm()  # answered before the body was in (a 413): the deadline starts now

    def on_response_complete(self):
        super().on_response_complete()
        if self.waiting and not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)

    def _arm(self):
        self._disarm()
        self.deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self):
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expire(self):
        self.deadline = None
        answering = self.cycle is not None and not self.cycle.response_complete
        if self.waiting and not answering and not self.transport.is_closing():
            log.info("closed a connection from %s: no complete request headers within %g s",
                     "%s:%d" % self.client if self.client else "?", self.header_timeout)
            self.transport.close()


def server_config(app, host, port, header_timeout=HEADER_TIMEOUT, max_header_bytes=MAX_HEADER_BYTES,
                  max_connections=MAX_CONNECTIONS):
    """The uvicorn.Config that serves `app` with bounded request headers (BoundedHeaders); more than
    `max_connections` connections or requests at once are answered 503."""
    import uvicorn

    protocol = type("BoundedHeaders", (BoundedHeaders,), {"header_timeout": header_timeout,
                                                           "max_header_bytes": max_header_bytes})
    return uvicorn.Config(app, host=host, port=port, http=protocol, limit_concurrency=max_connections,
                          access_log=False, log_level="info")
