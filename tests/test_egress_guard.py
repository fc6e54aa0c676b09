"""The egress guard lets loopback through and refuses (and records) everything else."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.egress_guard import (
    EgressBlockedError,
    EgressGuard,
    LookupBlockedError,
    is_loopback_host,
)

OUTSIDE = "203.0.113.1"  # TEST-NET-3: documentation only, never routed


@pytest.fixture
def inet_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    yield sock
    sock.close()


@pytest.fixture
def loopback_server() -> Iterator[tuple[str, int]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    yield server.getsockname()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", True),
        ("::", True),
        (OUTSIDE, False),
        ("10.0.0.5", False),
        ("192.168.1.1", False),
        ("2001:db8::1", False),
        ("::ffff:203.0.113.1", False),
        ("localhost", False),  # a name, not an address: the lookup decides
        ("example.com", False),
    ],
)
def test_is_loopback_host(host: str, local: bool) -> None:
    assert is_loopback_host(host) is local


def test_decide_allows_loopback_unix_and_local_names(inet_socket: socket.socket) -> None:
    guard = EgressGuard()
    assert guard.decide("socket.connect", (inet_socket, ("127.0.0.1", 6333))) is None
    assert guard.decide("socket.connect", (inet_socket, ("localhost", 6333))) is None
    assert guard.decide("socket.getaddrinfo", ("localhost", 11434, 0, 0, 0)) is None
    assert guard.decide("socket.getaddrinfo", (None, 80, 0, 0, 0)) is None
    assert guard.decide("socket.getaddrinfo", (b"127.0.0.1", 80, 0, 0, 0)) is None
    assert guard.decide("socket.gethostbyaddr", ("::1",)) is None
    assert guard.decide("socket.sendmsg", (inet_socket, None)) is None
    assert guard.decide("open", ("/etc/hosts", "r", 0)) is None
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert guard.decide("socket.connect", (unix, "/run/some.sock")) is None
    finally:
        unix.close()


def test_decide_refuses_outside_addresses_and_lookups(inet_socket: socket.socket) -> None:
    guard = EgressGuard()
    connect = guard.decide("socket.connect", (inet_socket, (OUTSIDE, 443)))
    assert connect is not None
    assert (connect.host, connect.port, connect.family) == (OUTSIDE, 443, "AF_INET")
    assert guard.decide("socket.connect", (inet_socket, ("example.com", 80))) is not None
    assert guard.decide("socket.sendto", (inet_socket, ("9.9.9.9", 53))) is not None
    lookup = guard.decide("socket.getaddrinfo", ("huggingface.co", 443, 0, 0, 0))
    assert lookup is not None and (lookup.host, lookup.port) == ("huggingface.co", 443)
    assert guard.decide("socket.gethostbyname", ("example.com",)) is not None
    assert guard.decide("socket.getnameinfo", ((OUTSIDE, 80),)) is not None
    # A name the guard was told to allow passes.
    assert (
        EgressGuard(allow_hosts=["qdrant"]).decide("socket.getaddrinfo", ("qdrant", 6333, 0, 0, 0))
        is None
    )
    assert guard.attempts == []  # deciding alone records nothing


def test_real_loopback_connect_passes(loopback_server: tuple[str, int]) -> None:
    with EgressGuard() as guard, socket.create_connection(loopback_server, timeout=5) as conn:
        assert conn.getpeername() == loopback_server
    assert guard.blocked == []
    guard.assert_no_egress()


def test_real_outside_connect_is_blocked_and_recorded(inet_socket: socket.socket) -> None:
    inet_socket.settimeout(0.05)
    with EgressGuard() as guard, pytest.raises(EgressBlockedError):
        inet_socket.connect((OUTSIDE, 9))
    assert [(a.event, a.host, a.port) for a in guard.blocked] == [("socket.connect", OUTSIDE, 9)]
    with pytest.raises(AssertionError, match=OUTSIDE):
        guard.assert_no_egress()


def test_real_lookup_is_blocked_before_any_dns_query() -> None:
    with EgressGuard() as guard, pytest.raises(LookupBlockedError):
        socket.getaddrinfo("example.com", 443)
    assert [a.event for a in guard.blocked] == ["socket.getaddrinfo"]
    # A blocked lookup looks like "no such name" to the code under test.
    assert isinstance(LookupBlockedError(), socket.gaierror)
    assert isinstance(EgressBlockedError(), ConnectionError)


def test_guard_switched_off_lets_calls_through(inet_socket: socket.socket) -> None:
    guard = EgressGuard()
    event = ("socket.connect", inet_socket, (OUTSIDE, 9))
    with guard, pytest.raises(EgressBlockedError):
        sys.audit(*event)  # the same hook a real connect goes through
    assert len(guard.blocked) == 1
    sys.audit(*event)  # off: the hook is still installed but lets it pass
    assert len(guard.blocked) == 1
    with guard, pytest.raises(EgressBlockedError):  # and it switches on again
        sys.audit(*event)
    assert len(guard.blocked) == 2
    guard.clear()
    assert guard.blocked == []


def test_guards_keep_their_own_records(inet_socket: socket.socket) -> None:
    first, second = EgressGuard(), EgressGuard()
    with first, pytest.raises(EgressBlockedError):
        sys.audit("socket.connect", inet_socket, (OUTSIDE, 1))
    with second, pytest.raises(EgressBlockedError):
        sys.audit("socket.connect", inet_socket, (OUTSIDE, 2))
    assert [a.port for a in first.blocked] == [1]
    assert [a.port for a in second.blocked] == [2]


def test_entering_an_active_guard_twice_is_an_error() -> None:
    guard = EgressGuard()
    with guard, pytest.raises(RuntimeError):
        guard.__enter__()
    assert guard.active is False
