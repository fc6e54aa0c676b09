"""A guard that blocks and records every network connection leaving this machine.

Built on `sys.addaudithook`: CPython raises an audit event before each socket connect, send to
an address, and name lookup, and an exception raised by a hook aborts that call before any
packet is sent. Audit hooks cannot be removed, so one hook is installed per process (the first
time a guard is entered) and each `EgressGuard` switches itself on and off in it; what a guard
saw stays on that guard.

    guard = EgressGuard()
    with guard:
        run_ingest_and_chat()
    guard.assert_no_egress()

Allowed: loopback addresses (127.0.0.0/8, ::1, IPv4-mapped loopback), the unspecified address
(0.0.0.0 and ::, which the kernel sends to this machine), AF_UNIX sockets, and lookups of the
names in `allow_hosts` (localhost by default). Everything else, including a DNS lookup of any
other name (a lookup already is traffic), is recorded and refused: connects raise
`EgressBlockedError` (a ConnectionRefusedError), lookups raise `LookupBlockedError` (a
socket.gaierror), so code under test sees what an offline machine would give it.

Not covered: child processes (their own interpreter has no hook) and native code that opens
sockets without going through Python's socket module.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

# Events whose arguments carry an address (the socket is the first argument).
_ADDRESS_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
# Events whose first argument is a host name or address to look up.
_LOOKUP_EVENTS = frozenset(
    {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
)
_EVENTS = _ADDRESS_EVENTS | _LOOKUP_EVENTS


class EgressBlockedError(ConnectionRefusedError):
    """A connection to an address outside this machine, refused by an EgressGuard."""


class LookupBlockedError(socket.gaierror):
    """A name lookup that would leave this machine, refused by an EgressGuard."""


@dataclass(frozen=True)
class Attempt:
    """One refused attempt: the audit event and where it was going."""

    event: str
    host: str
    port: int | None
    family: str

    def __str__(self) -> str:
        where = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.event} to {where} ({self.family})"


def is_loopback_host(host: str) -> bool:
    """True for an IP literal that stays on this machine (loopback or unspecified)."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


class EgressGuard:
    """Refuses, while active, every connection and lookup that would leave this machine.

    Re-usable and re-entrant in the sense that entering it again after leaving starts a new
    active period; `attempts` keeps accumulating until `clear()`.
    """

    def __init__(self, allow_hosts: Iterable[str] = LOCAL_NAMES) -> None:
        self.allow_hosts = frozenset(name.lower().rstrip(".") for name in allow_hosts)
        self.attempts: list[Attempt] = []
        self.active = False
        self._lock = threading.Lock()

    # -- the decision, a pure function of the audit event --

    def decide(self, event: str, args: tuple[Any, ...]) -> Attempt | None:
        """The attempt to refuse for this audit event, or None when it stays on this machine."""
        if event in _ADDRESS_EVENTS:
            return self._decide_address(event, args[0], args[1])
        if event in _LOOKUP_EVENTS:
            return self._decide_lookup(event, args)
        return None

    def _decide_address(self, event: str, sock: Any, address: Any) -> Attempt | None:
        if address is None:  # sendmsg on an already connected socket: the connect was checked
            return None
        family = getattr(sock, "family", None)
        if family == socket.AF_UNIX or isinstance(address, str | bytes):
            return None  # a path (or abstract name) of a Unix socket
        if family not in (socket.AF_INET, socket.AF_INET6):
            name = getattr(family, "name", str(family))
            return Attempt(event, repr(address), None, name)
        host, port = _host(address[0]), int(address[1])
        if is_loopback_host(host) or host.lower().rstrip(".") in self.allow_hosts:
            return None
        return Attempt(event, host, port, family.name)

    def _decide_lookup(self, event: str, args: tuple[Any, ...]) -> Attempt | None:
        target = args[0]
        if event == "socket.getnameinfo":  # (sockaddr, flags)
            target = target[0] if isinstance(target, tuple) and target else target
        if target is None:
            return None  # getaddrinfo(None, port): the wildcard or loopback address
        host = _host(target)
        if host == "" or is_loopback_host(host) or host.lower().rstrip(".") in self.allow_hosts:
            return None
        port = args[1] if event == "socket.getaddrinfo" and isinstance(args[1], int) else None
        return Attempt(event, host, port, "lookup")

    # -- switching on and off --

    def check(self, event: str, args: tuple[Any, ...]) -> None:
        """Record and raise for a refused event (called by the process's one audit hook)."""
        attempt = self.decide(event, args)
        if attempt is None:
            return
        with self._lock:
            self.attempts.append(attempt)
        if event in _LOOKUP_EVENTS:
            raise LookupBlockedError(socket.EAI_NONAME, f"egress blocked: {attempt}")
        raise EgressBlockedError(f"egress blocked: {attempt}")

    def __enter__(self) -> EgressGuard:
        if self.active:
            raise RuntimeError("this EgressGuard is already active")
        _HOOK.install()
        self.active = True
        _HOOK.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _HOOK.remove(self)
        self.active = False

    @property
    def blocked(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    def clear(self) -> None:
        with self._lock:
            self.attempts.clear()

    def assert_no_egress(self) -> None:
        attempts = self.blocked
        if attempts:
            listed = "; ".join(str(a) for a in attempts)
            raise AssertionError(f"{len(attempts)} attempt(s) to leave this machine: {listed}")


def _host(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("ascii", errors="backslashreplace")
    return str(value)


class _Hook:
    """The one audit hook of the process; it asks the guards that are switched on."""

    def __init__(self) -> None:
        self._installed = False
        self._guards: tuple[EgressGuard, ...] = ()
        self._lock = threading.Lock()

    def install(self) -> None:
        with self._lock:
            if not self._installed:
                sys.addaudithook(self)
                self._installed = True

    def add(self, guard: EgressGuard) -> None:
        with self._lock:
            self._guards = (*self._guards, guard)

    def remove(self, guard: EgressGuard) -> None:
        with self._lock:
            self._guards = tuple(g for g in self._guards if g is not guard)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        # Runs on every audit event in the process (imports, opens, ...): stay cheap.
        guards = self._guards
        if not guards or event not in _EVENTS:
            return
        for guard in guards:
            guard.check(event, args)


_HOOK = _Hook()
