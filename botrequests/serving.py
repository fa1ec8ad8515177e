"""uvicorn's HTTP protocols with the bounds a public listener needs.

uvicorn closes a connection that stays idle after a response (`timeout_keep_alive`), but
not one that never finishes its request head: a client sending a header line now and then,
or nothing at all after connecting, holds its connection (and a file descriptor) forever,
and a thousand of them exhaust the process. Here a connection waiting for a request head
is closed when the head is not complete within HEADER_TIMEOUT_SECONDS, or answered 431
and closed when the head grows past MAX_HEADER_BYTES (httptools, uvicorn's default
parser, sets no bound of its own). The body's time is bounded by the guard middleware
(BODY_TIMEOUT_SECONDS), the number of connections by MAX_CONNECTIONS (uvicorn's
`limit_concurrency`: past it, 503).

The classes are module-level so that `--workers` processes can import them; they read
the settings of their own process (the environment is inherited).
"""

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from botrequests.config import settings

_REASON = b"request head over MAX_HEADER_BYTES"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_REASON), _REASON)
)


class _HeadBound:
    """Mixed in before a uvicorn protocol: bounds the time and bytes of a request head."""

    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._arm()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(
                settings.header_timeout_seconds, self._head_timed_out
            )

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting:
            self._arm()
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before:  # a request head was parsed: its body is the guard's
            self._disarm()
        elif waiting and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > settings.max_header_bytes:
                self._disarm()
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


class H11Bounded(_HeadBound, H11Protocol):
    """h11 (pure Python) with bounded request heads."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsBounded(_HeadBound, HttpToolsProtocol):
        """httptools (uvicorn's default where installed) with bounded request heads."""

    PROTOCOL: type = HttpToolsBounded
except ImportError:  # pragma: no cover (uvicorn[standard] installs httptools)
    PROTOCOL = H11Bounded


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the app starts: a port in use ends `serve` in
    one line before anything is printed or created (uvicorn binds after its lifespan)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_options() -> dict[str, Any]:
    """What `botrequests serve` passes to uvicorn for slow and numerous clients, and for
    forwarded headers (trusted only from FORWARDED_ALLOW_IPS)."""
    return {
        "http": PROTOCOL,
        "timeout_keep_alive": max(1, round(settings.keep_alive_seconds)),
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
    }
