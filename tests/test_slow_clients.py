"""Slow and numerous clients against a real `botrequests serve` (issue 27, finding 6): a
request head that never completes, an idle connection, a body that trickles and an
oversized head are each closed or answered, and the service keeps answering others."""

import socket

import httpx

from tests.servers import served

# The bounds are small here so that the test is short; it waits for each closing up to
# CLOSED_WITHIN, far beyond them, so a busy machine does not fail it.
CLOSED_WITHIN = 60


def _open(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=CLOSED_WITHIN)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_serve_closes_slow_and_oversized_clients(monkeypatch):
    monkeypatch.setenv("HEADER_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("BODY_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("MAX_HEADER_BYTES", "4096")
    with served() as site:
        partial_head = [_open(site.base) for _ in range(10)]
        for sock in partial_head:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        idle = [_open(site.base) for _ in range(5)]
        trickle = [_open(site.base) for _ in range(5)]
        for sock in trickle:
            sock.sendall(
                b"POST /bot-requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"bot"'
            )
        huge = _open(site.base)
        huge.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 8000)
        # The others are served meanwhile.
        assert httpx.get(f"{site.base}/healthz").status_code == 200
        for sock in partial_head + idle:
            assert _answer(sock) == b""  # closed, nothing sent
        for sock in trickle:
            answer = _answer(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"request body not received within 1 s" in answer
        assert _answer(huge).startswith(b"HTTP/1.1 431")
        for sock in [*partial_head, *idle, *trickle, huge]:
            sock.close()
        assert httpx.get(f"{site.base}/healthz").status_code == 200
        # A whole request with a large body in one write is not a large head.
        big = {"bot": "0" * 24, "success": True, "response": {"text": "x" * 20000}}
        assert httpx.post(f"{site.base}/bot-requests", json=big).status_code == 422
