"""A fault-injecting HTTP proxy for the object-store tests (standard library only).

It listens on a free loopback port and forwards every request to an S3 endpoint (a moto
server), except those a :class:`Fault` picks: by method and/or a pattern of the path and/or of
a header, after letting the first ``after`` matching requests through, the next ``times``
ones (or all of them). A fault is one of

- ``"drop"``: close the connection without a response (the request never reaches the server);
- ``"truncate"``: forward the request, send the response's status, headers and half of its
  body, then close the connection (a GET cut off mid-body; a write that happened but whose
  answer is lost);
- ``"500"`` or ``"503"``: answer with that status and an S3 error document (``InternalError``,
  ``ServiceUnavailable``) without forwarding;
- ``"delay"``: wait ``seconds``, then forward (a slow store).

Examples
--------
>>> with FaultProxy("http://127.0.0.1:5000") as proxy:  # doctest: +SKIP
...     proxy.inject("503", method="GET", path=r"/data/x\\.zarr/c/", times=3)
...     proxy.inject("drop", method="PUT", after=2)  # every write after the first two
"""

from __future__ import annotations

import dataclasses
import http.client
import re
import socket
import socketserver
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

__all__ = ["ACTIONS", "Fault", "FaultProxy"]

ACTIONS = ("drop", "truncate", "500", "503", "delay")
_ERRORS = {
    "500": ("InternalError", "We encountered an internal error. Please try again."),
    "503": ("ServiceUnavailable", "Please reduce your request rate."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


@dataclasses.dataclass
class Fault:
    """What to do to which requests; ``hits`` counts the requests it was done to."""

    action: str
    method: str | None = None
    path: str | None = None  # a regular expression searched in the path (with its query)
    header: tuple[str, str] | None = None  # (name, regular expression searched in its value)
    times: int | None = None  # requests to fault; None: every matching one
    after: int = 0  # matching requests to let through first
    seconds: float = 0.0  # of "delay"
    seen: int = 0
    hits: int = 0

    def fires(self, method: str, path: str, headers) -> bool:
        """Whether this request is one to fault (counted; called under the proxy's lock)."""
        if self.method is not None and method != self.method:
            return False
        if self.path is not None and not re.search(self.path, path):
            return False
        if self.header is not None and not re.search(self.header[1], headers.get(self.header[0], "")):
            return False
        self.seen += 1
        if self.seen <= self.after or self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms wait for a delayed ACK
    timeout = 30  # an idle kept-alive connection ends after this

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        proxy: FaultProxy = self.server.proxy
        body = self._body()
        fault = proxy.choose(self.command, self.path, self.headers)
        action = fault.action if fault else None
        if action == "drop":
            self._cut()
            return
        if action in _ERRORS:
            code, message = _ERRORS[action]
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<Resource>{self.path}</Resource><RequestId>faultproxy</RequestId></Error>"
            ).encode()
            self._reply(int(action), [("Content-Type", "application/xml")], xml)
            return
        if action == "delay":
            time.sleep(fault.seconds)
        status, headers, data = proxy.forward(self.command, self.path, self.headers, body)
        if action == "truncate":
            self._reply(status, headers, data, send=len(data) // 2)
            self._cut()
            return
        self._reply(status, headers, data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    def _reply(self, status: int, headers: list, data: bytes, send: int | None = None) -> None:
        self.send_response_only(status)
        length = str(len(data))
        for name, value in headers:
            if name.lower() == "content-length":
                length = value if self.command == "HEAD" else length  # a HEAD's length is the object's
            elif name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data if send is None else data[:send])
        self.wfile.flush()

    def _cut(self) -> None:
        """Close the connection now, whatever was sent."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False  # clients keep connections open: do not wait for them at close
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:  # a client that gave up on a delayed answer
        pass


class FaultProxy:
    """A proxy on ``127.0.0.1`` in front of ``upstream`` (``http://HOST:PORT``), serving
    from :meth:`start` to :meth:`stop` (or as a context manager); ``url`` is its endpoint.

    ``requests`` lists ``(method, path, action or None)`` of every request received."""

    def __init__(self, upstream: str):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port or 80)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self.url = ""

    def start(self) -> FaultProxy:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(
        self,
        action: str,
        *,
        method: str | None = None,
        path: str | None = None,
        header: tuple[str, str] | None = None,
        times: int | None = None,
        after: int = 0,
        seconds: float = 0.0,
    ) -> Fault:
        """Fault the matching requests from now on (the first fault that fires wins)."""
        if action not in ACTIONS:
            raise ValueError(f"expected an action among {ACTIONS}, got {action!r}")
        fault = Fault(action, method, path, header, times, after, seconds)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """No more faults, and a new log of requests."""
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def choose(self, method: str, path: str, headers) -> Fault | None:
        with self._lock:
            fault = next((f for f in self.faults if f.fires(method, path, headers)), None)
            self.requests.append((method, path, fault.action if fault else None))
        return fault

    def forward(self, method: str, path: str, headers, body: bytes) -> tuple[int, list, bytes]:
        """Send the request on unchanged (its Host too: the signature covers it); the
        response's status, headers and whole body."""
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() not in ("content-length", "expect"):
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()
