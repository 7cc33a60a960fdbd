"""The send deadline: one watchdog thread per process ends each exchange at its instant."""

from __future__ import annotations

import os
import socket
import threading
import time

from lifecycle.mailers import deadline
from lifecycle.mailers.deadline import SendDeadline


def _blocked_read(deadline: SendDeadline) -> tuple[bytes, float]:
    """A read from a peer that never answers, watched by `deadline`: what it got, and when it ended."""
    a, b = socket.socketpair()
    try:
        with deadline:
            deadline.watch(a)
            data = a.recv(10)
        return data, time.monotonic()
    finally:
        a.close()
        b.close()


def test_a_blocked_read_ends_at_its_deadline_and_an_earlier_one_first():
    start = time.monotonic()
    ends: dict[str, float] = {}
    late, soon = SendDeadline(start + 0.8), SendDeadline(start + 0.2)

    def read(name, deadline):
        data, ends[name] = _blocked_read(deadline)
        assert data == b""

    threads = [threading.Thread(target=read, args=a) for a in (("late", late), ("soon", soon))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert late.expired and soon.expired
    assert 0.15 < ends["soon"] - start < ends["late"] - start
    assert ends["late"] - start >= 0.75


def test_a_deadline_that_closed_in_time_never_expires_and_threads_do_not_grow_with_sends():
    before = threading.active_count()
    done = []
    for _ in range(300):
        with SendDeadline(time.monotonic() + 0.05) as d:
            pass
        done.append(d)
    time.sleep(0.15)
    assert not any(d.expired for d in done)
    assert threading.active_count() <= before + 1
    data, _ = _blocked_read(SendDeadline(time.monotonic() + 0.1))  # the watchdog still answers
    assert data == b""
    for _ in range(3 * deadline.COMPACT_AT):  # closed long before their deadline: dropped early
        with SendDeadline(time.monotonic() + 600):
            pass
    assert len(deadline._WATCHDOG._heap) <= deadline.COMPACT_AT


def test_a_passed_deadline_shuts_a_socket_at_once():
    d = SendDeadline(time.monotonic() - 1)
    data, _ = _blocked_read(d)
    assert data == b"" and d.expired and d.passed


def test_a_forked_child_has_a_watchdog_of_its_own():
    _blocked_read(SendDeadline(time.monotonic() + 0.05))  # the parent's watchdog is running
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its own deadline ended the read
        try:
            data, _ = _blocked_read(SendDeadline(time.monotonic() + 0.1))
            os._exit(0 if data == b"" else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the child's read was never ended")
    assert os.waitstatus_to_exitcode(status) == 0
