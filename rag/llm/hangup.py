"""Ending a model request from another thread at once, even while it waits for the server's
first byte.

A request blocked on the server (a model on CPU reads its prompt for seconds before the first
token) sits in a socket read that closing the stream's iterator cannot reach: Python runs a
generator's `close` only between two of its events, and the HTTP client's `close` leaves a
read in another thread blocked. Shutting the socket down ends that read at once, and the server
sees the connection close.

So whoever may stop an answer (the app's Stop, Compare's lanes) makes a `Hangup` and hands it to
`ChatBackend.chat`. An adapter given one sends that request on an HTTP connection of its own
(a client made for it, closed after it) whose new sockets are reported here by httpcore's
`trace` extension, set by `watch_request`, an httpx request event hook. `hang_up()` then shuts
them down. Without a `Hangup`, requests share the adapter's pooled connections as before.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping
from typing import Any

# httpcore's trace events that carry a new connection's network stream (`return_value`); TLS
# wraps the TCP socket in a new one, which is what must be shut down then.
_CONNECTED = ("connection.connect_tcp.complete", "connection.start_tls.complete")
STOPPED = "The answer was stopped before it was finished."  # `AnswerStoppedError`'s sentence


class Hangup:
    """A one-way switch that ends the requests it watches. Thread-safe: `hang_up` is meant to
    be called from a thread other than the one blocked in the request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._hung_up = False

    @property
    def hung_up(self) -> bool:
        with self._lock:
            return self._hung_up

    def hang_up(self) -> None:
        """Shut down every connection of the watched requests, and any they open later."""
        with self._lock:
            self._hung_up = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut_down(sock)

    def watch_request(self, request: Any) -> None:
        """An httpx (or httpx2) `request` event hook: the request reports the connections it
        opens to this `Hangup`."""
        request.extensions["trace"] = self._trace

    def _trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event not in _CONNECTED or info.get("return_value") is None:
            return
        sock = info["return_value"].get_extra_info("socket")
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            hung_up = self._hung_up
        if hung_up:  # hung up while this connection was being made
            _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its request
        sock.shutdown(socket.SHUT_RDWR)
