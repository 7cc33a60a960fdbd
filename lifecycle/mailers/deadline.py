"""A total deadline for one send: connect + write + read, whatever the server does.

Socket timeouts are per operation: a server that trickles one byte every few seconds never trips them,
and a send could last for ever (then a stale-claim sweep takes the delivery back while the worker is
still sending, and it goes out twice). `SendDeadline` bounds the whole exchange: each connect gets at
most the remaining time, and when the deadline passes a timer shuts the registered sockets down, which
ends any blocked read or write at once. One watchdog thread per process keeps every open deadline (a
heap by instant): a thread started and stopped for each send cost more than the send to a fast server.

It also records whether the whole request was handed to the network (`written`): an error before that
means the provider certainly did not get the message; after it, the provider may have it, and the
outcome is unknown.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import os
import socket
import threading
import time
import urllib.request
from typing import Any


class SendDeadline:
    def __init__(self, deadline: float):
        self.deadline = deadline  # a time.monotonic() instant
        self.expired = False
        self.written = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def passed(self) -> bool:
        """The deadline ended the exchange (its timer, or a socket timeout cut to it)."""
        return self.expired or self.remaining() < 0.01

    def timeout(self, per_operation: float | None) -> float:
        """The timeout for the next socket operation: the per-operation one, never past the deadline."""
        left = max(self.remaining(), 0.001)
        return left if per_operation is None else min(per_operation, left)

    def watch(self, sock: socket.socket) -> socket.socket:
        """Register a socket to be shut down at the deadline (at once if it already passed)."""
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            if self._closed:  # the exchange ended before its deadline
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def __enter__(self) -> SendDeadline:
        _WATCHDOG.add(self)
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._closed = True
            self._sockets.clear()


COMPACT_AT = 1000  # heap entries from which closed deadlines are dropped before they come up


class _Watchdog:
    """The thread that expires each open `SendDeadline` at its instant. Deadlines that closed first are
    dropped when they come up, or when the heap has doubled. A forked child starts its own."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, SendDeadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._compact_at = COMPACT_AT

    def add(self, deadline: SendDeadline) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="send-deadlines", daemon=True)
                self._thread.start()
            if len(self._heap) >= self._compact_at:  # amortised: the heap doubled since it was last kept
                self._heap = [e for e in self._heap if not e[2]._closed]
                heapq.heapify(self._heap)
                self._compact_at = max(COMPACT_AT, 2 * len(self._heap))
            heapq.heappush(self._heap, (deadline.deadline, next(self._order), deadline))
            if self._heap[0][2] is deadline:  # sooner than what the thread waits for
                self._cond.notify()

    def _run(self) -> None:
        while True:
            due: list[SendDeadline] = []
            with self._cond:
                while not due:
                    now = time.monotonic()
                    while self._heap and (self._heap[0][0] <= now or self._heap[0][2]._closed):
                        _, _, deadline = heapq.heappop(self._heap)
                        if not deadline._closed:
                            due.append(deadline)
                    if not due:
                        self._cond.wait(self._heap[0][0] - now if self._heap else None)
            for deadline in due:
                deadline._expire()


_WATCHDOG = _Watchdog()


def _after_fork() -> None:
    global _WATCHDOG
    _WATCHDOG = _Watchdog()  # the parent's thread (and maybe its lock, held) did not come along


os.register_at_fork(after_in_child=_after_fork)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for TLS sockets: it ends a blocked recv/send in another thread
    # without touching the TLS object that thread is using. A closed socket raises OSError: nothing to do.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# --------------------------------------------------------------------------- urllib through a deadline


def _connection(base: type[http.client.HTTPConnection], deadline: SendDeadline):
    """An HTTP(S) connection class whose sockets obey `deadline` and that records a written request."""
    parent: Any = base  # a base class chosen at run time, which a type checker cannot follow

    class DeadlineConnection(parent):
        def connect(self):
            self.timeout = deadline.timeout(self.timeout)
            super().connect()
            deadline.watch(self.sock)

        def request(self, *args, **kwargs):
            super().request(*args, **kwargs)
            deadline.written = True  # headers and body handed to the network: the provider may act on it

    return DeadlineConnection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: SendDeadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(_connection(http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: SendDeadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(
            _connection(http.client.HTTPSConnection, self.deadline), req, context=self._context
        )


def deadline_opener(deadline: SendDeadline, *handlers) -> urllib.request.OpenerDirector:
    """A urllib opener whose connections obey `deadline` (SendGrid, and the HTTP channels in
    lifecycle.channels.http), with any further `handlers`."""
    return urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline), *handlers)
