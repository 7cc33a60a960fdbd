"""A large registry file read by several processes at once: its `customers:` list cut into parts.

Reading YAML is most of an import's time at fleet size (libyaml's events for an 11 MB file take
longer than writing every row they describe), and it is one core's work. A registry file is mostly
one long block list of customers at the top level, so `read_in_parts` cuts that list at item
boundaries; this process reads the first part (everything up to the first cut), forked children read
the others (each as `customers:` and its items), and the lists are joined.

It only ever returns what the one-process reading returns, or None (then the caller reads the whole
file in one process, which gives the exact value or the exact error with its line):

- a cut is only made at a line that starts an item of the top-level `customers:` list: the item
  indentation followed by `- `, after the `customers:` line and before any later line at the first
  column (another key ends the list). No scalar can continue on such a line: a plain or block scalar
  inside an item stops at a line indented less than its own, and an item's scalar is indented more
  than `- `;
- a quoted scalar or a flow collection open across a cut leaves the part before it unterminated,
  which libyaml refuses: any error in any part means None;
- each later part must read as a mapping of exactly one key, `customers`, holding a list, and the
  first part's last key must be `customers` holding a list: anything after the list (another key,
  a second document) shows up as something else;
- the joined list obeys the item limit, or None.

Children are forked (POSIX; where `fork` is missing, or one core is all there is, nothing changes),
only read and pickle their value back through a pipe, and leave with `os._exit`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
from typing import Any

MIN_CHARS = 1_000_000  # below ~1 MB (2,000 customers) a fork costs more than it saves
MAX_PARTS = 4

_CUSTOMERS = re.compile(r"^customers:[ \t]*(?:#[^\n]*)?\r?$", re.M)
_FIRST_ITEM = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\r?\n)*( *)- ")  # blank or comment lines, then an item
_TOP_LEVEL = re.compile(r"^[^ \t\r\n#]", re.M)  # a line starting at the first column


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cuts(text: str, parts: int) -> list[int]:
    """Up to `parts - 1` offsets, each at the start of a line that starts an item of the top-level
    `customers:` block list, spread evenly over it; [] when the file does not have that shape."""
    headers = list(_CUSTOMERS.finditer(text))
    if len(headers) != 1 or parts < 2:
        return []
    start = text.find("\n", headers[0].end())
    if start < 0:
        return []
    start += 1
    first = _FIRST_ITEM.match(text, start)
    if first is None:
        return []
    indent = first.group(1)
    begin = first.end(1)  # the first item's `- `
    item = re.compile("^" + indent + "- ", re.M)
    # The list ends at the first line at the first column that is not one of its items (a comment
    # line is neither).
    end = len(text)
    for line in _TOP_LEVEL.finditer(text, begin):
        if not (indent == "" and text.startswith("- ", line.start())):
            end = line.start()
            break
    offsets: list[int] = []
    for k in range(1, parts):
        target = begin + (end - begin) * k // parts
        found_item = item.search(text, target, end)
        if found_item is None:
            break
        at = found_item.start()
        if at > begin and (not offsets or at > offsets[-1]):
            offsets.append(at)
    return offsets


def read_in_parts(text: str, read, limits, *, parts: int | None = None) -> Any | None:
    """`read(text)` (the one-process reader: a value, or an InputError) of the whole `text`, done in
    parts by forked processes; None when it cannot be done that way here (then read it whole)."""
    if not hasattr(os, "fork"):  # pragma: no cover - not POSIX
        return None
    parts = parts if parts is not None else min(available_cores(), MAX_PARTS)
    offsets = cuts(text, parts)
    if not offsets:
        return None
    bounds = [*offsets, len(text)]
    children = []
    try:
        for start, stop in zip(bounds, bounds[1:], strict=False):
            children.append(_fork(lambda s=start, e=stop: read("customers:\n" + text[s:e])))
        try:
            head = read(text[: offsets[0]])
        except Exception:  # noqa: BLE001 - any error: the whole file is read again, for the exact one
            return None
        tails = [_collect(child) for child in children]
        children = []
    finally:
        for pid, fd in children:  # not collected: an error or an interruption here
            _kill(pid, fd)
    if not isinstance(head, dict) or not head or list(head)[-1] != "customers":
        return None
    customers = head["customers"]
    if not isinstance(customers, list):
        return None
    for tail in tails:
        if (
            not isinstance(tail, dict)
            or list(tail) != ["customers"]
            or not isinstance(tail["customers"], list)
        ):
            return None
        customers.extend(tail["customers"])
    if len(customers) > limits.max_items:
        return None
    return head


def _fork(work) -> tuple[int, int]:
    """Run `work()` in a forked child; its value (or the fact that it failed) comes back on a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, answer, leave without running any of the parent's exit handlers
        code = 0
        try:
            os.close(r)
            try:
                payload = pickle.dumps((True, work()), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException:  # noqa: BLE001 - whatever it was, the parent reads the whole file
                payload = pickle.dumps((False, None))
            with os.fdopen(w, "wb") as out:
                out.write(payload)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(child: tuple[int, int]) -> Any:
    pid, fd = child
    with os.fdopen(fd, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    if not payload:
        return None
    ok, value = pickle.loads(payload)  # noqa: S301 - our own child's pickle, through our own pipe
    return value if ok else None


def _kill(pid: int, fd: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
