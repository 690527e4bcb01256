"""HTTP plumbing around the routes: JSON errors, request body limits, a catch-all for the unexpected, the
same-origin guard and security headers of the labelling page, and the uvicorn server with bounded request
headers (size and time) and a bounded number of connections."""
import ipaddress
import json
import logging
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
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


# --- the labelling page's origin --------------------------------------------------------------------------

LOOPBACK = ("127.0.0.1", "localhost", "::1")  # names a server started on any of them also answers to
WILDCARD = ("0.0.0.0", "::", "")             # "every interface": then any IP address names it too
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _host_port(netloc, default_port):
    """(host, port) of "host[:port]" (host lowercased, IPv6 brackets removed), or None if it is not one."""
    if not netloc or "@" in netloc or any(c in netloc for c in " /\\?#"):
        return None
    try:
        parts = urlsplit("//" + netloc)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), default_port if port is None else port


class Origin:
    """The host and port the server was started on (create_app: config.HOST and config.PORT; server_config: what
    uvicorn is given), and whether a Host header, Origin or Referer names this server.

    A server on 127.0.0.1, localhost or ::1 answers to the three; one on another name or address to it (and the
    three: a request from this machine); one on every interface (0.0.0.0, ::) to any IP address besides. Never to
    another DNS name: a site whose name is made to resolve to this address (DNS rebinding) sends its own name."""

    def __init__(self, host, port):
        self.set(host, port)

    def set(self, host, port):
        self.host, self.port = str(host).strip("[]").lower(), int(port)

    def where(self):
        """The names it answers to, for messages."""
        names = [self.host] if self.host not in WILDCARD + LOOPBACK else []
        names += ["127.0.0.1", "localhost", "[::1]"]
        port = "" if self.port == 0 else f":{self.port}"
        return ", ".join(f"{n}{port}" for n in names) + (" or any IP address" if self.host in WILDCARD else "")

    def names(self, netloc, default_port=80):
        """Whether "host[:port]" (a Host header, or an Origin's or Referer's) names this server."""
        found = _host_port(netloc, default_port)
        if found is None:
            return False
        host, port = found
        if self.port and port != self.port:
            return False
        if host in LOOPBACK or host == self.host:
            return True
        if self.host in WILDCARD:
            try:
                ipaddress.ip_address(host)
                return True
            except ValueError:
                return False
        return False

    def own_url(self, url):
        """Whether a URL (an Origin or Referer header) is on this server: http or https, a name of this server."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https"):
            return False  # "null" (a sandboxed frame, a file: page), data:, ...
        return self.names(parts.netloc, 443 if parts.scheme == "https" else 80)


class SameOrigin:
    """ASGI middleware for the paths `pages` (exact) and those under `api` (prefixes): a request whose Host header
    does not name this server (`origin`) is answered 403, which stops DNS rebinding; an API request from another
    site (an Origin or Referer header of another origin, Sec-Fetch-Site cross-site or same-site) is answered 403.
    Every answer on those paths carries SECURITY_HEADERS (no framing, scripts, styles and images from this
    server only, no sniffing, no referrer, never cached). Page loads by a link from elsewhere are fine: the page
    itself holds nothing another site can read."""

    def __init__(self, app, origin, pages=(), api=()):
        self.app, self.origin, self.pages, self.api = app, origin, tuple(pages), tuple(api)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        is_api = path.startswith(self.api) if self.api else False
        if not (is_api or path in self.pages):
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        refused = self.refusal(Headers(scope=scope), is_api)
        if refused:
            log.warning("refused %s %s: %s", scope.get("method"), path, refused)
            return await error_response(403, refused)(scope, receive, with_headers)
        await self.app(scope, receive, with_headers)

    def refusal(self, headers, is_api):
        """Why the request is refused, or None."""
        host = headers.get("host", "")
        if not self.origin.names(host):
            return (f"the Host header {host!r} is not a name of this server ({self.origin.where()}): the labelling "
                    f"page answers only to the names it was started on, so that no other site can reach it through "
                    f"its own name (DNS rebinding); open it at one of those, or start the server with --host=NAME")
        if not is_api:
            return None
        for key in ("origin", "referer"):
            value = headers.get(key)
            if value is not None and not self.origin.own_url(value):
                return (f"a request from {value!r} ({key.capitalize()} header): the labelling API takes requests only "
                        f"from its own page")
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"a {site} request (Sec-Fetch-Site): the labelling API takes requests only from its own page"
        return None


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
    `max_connections` connections or requests at once are answered 503. An app with an Origin in app.state.origin
    (create_app's) learns the host and port it is served on: the Host headers its labelling page answers to."""
    import uvicorn

    origin = getattr(getattr(app, "state", None), "origin", None)
    if isinstance(origin, Origin):
        origin.set(host, port)

    protocol = type("BoundedHeaders", (BoundedHeaders,), {"header_timeout": header_timeout,
                                                           "max_header_bytes": max_header_bytes})
    return uvicorn.Config(app, host=host, port=port, http=protocol, limit_concurrency=max_connections,
                          access_log=False, log_level="info")
