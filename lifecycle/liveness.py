"""Who holds a claim, and whether that process is provably dead.

A claim names its process: `host/pid/start/space`, where `start` is the process's start time (clock
ticks since boot, from /proc) and `space` identifies the pid namespace it lives in (the kernel's boot
id and the namespace's inode). Another process in the same space can then tell, soundly, that the
claimer is gone: no process with that pid, or one with another start time (the pid was reused), or a
zombie. From another host or container nothing can be told, and the claim timeout applies.

This is what lets a worker killed with SIGKILL be replaced within seconds: the next tick or the
redelivered task sees the claim's process is gone and takes its deliveries back at once.
"""

from __future__ import annotations

import functools
import os
import socket


@functools.cache
def _space() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip().replace("-", "")[:12]
        ns = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return f"{boot}.{ns.strip('pid:[]')}"


def _start_time(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return fields[0], fields[19]


@functools.cache
def _owner(pid: int) -> str:
    space = _space()
    info = _start_time(pid) if space else None
    host = socket.gethostname()[:64].replace("/", "_") or "-"
    return f"{host}/{pid}/{info[1] if info else '-'}/{space or '-'}"


def owner() -> str:
    """This process, as a claim names it (computed per pid: pool children are forked after import)."""
    return _owner(os.getpid())


def is_dead(claimed_by: str | None) -> bool:
    """True only when the process named by a claim certainly no longer runs."""
    if not claimed_by:
        return False
    parts = claimed_by.rsplit("/", 3)
    if len(parts) != 4:
        return False
    _host, pid, start, space = parts
    if space == "-" or start == "-" or space != _space() or not pid.isdigit():
        return False
    info = _start_time(int(pid))
    return info is None or info[1] != start or info[0] in ("Z", "X")
