"""Cursors of the API's paged lists and the SQL that resumes after one (keyset paging).

A cursor is the sort key of the last row of a page, as URL-safe base64 of a JSON array: opaque to
clients, checked element by element when it comes back, so that a cursor that was not handed out is a
422 naming `cursor`, never a 500 or a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from lifecycle.errors import InputError

MAX_CURSOR = 400  # characters: a cursor is a few short keys


def encode(key: Sequence[Any]) -> str:
    raw = json.dumps(
        [k.isoformat() if isinstance(k, dt.date) else k for k in key],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def text(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError
    return value


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError
    return value


def one_of(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError
        return value

    return convert


def day(value: Any) -> dt.date:
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError
    return dt.date.fromisoformat(value)


def decode(cursor: str, *shape: Callable[[Any], Any]) -> list:
    """The key in `cursor`, each element checked by its converter in `shape` (`text`, `integer`, ...).
    Raises InputError("cursor") for anything that is not a cursor this list handed out."""
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        if not isinstance(data, list) or len(data) != len(shape):
            raise ValueError
        return [convert(x) for convert, x in zip(shape, data, strict=True)]
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
        raise InputError(
            "cursor", "not a cursor of this list: pass the `next_cursor` of the previous page"
        ) from None


def after(columns: Sequence[Any], values: Sequence[Any], *, inclusive: bool = False):
    """SQL: the row's (columns) sort after `values` in ascending lexicographic order (or equal them,
    `inclusive`). Spelled out with = and >, which every database plans and types the same."""
    last = columns[-1] >= values[-1] if inclusive else columns[-1] > values[-1]
    cond = last
    for column, value in reversed(list(zip(columns[:-1], values[:-1], strict=True))):
        cond = sa.or_(column > value, sa.and_(column == value, cond))
    return cond
