"""Field validators shared by the CLI, the importer and the API. Each raises `InputError(field, ...)`.

Types are strict: an import file or a JSON body can put anything where a value belongs, so a mapping,
a list or a boolean where text belongs is an error (`expected text, got a mapping`), never its Python
`str()` ("{'a': 1}", "True"). Booleans are never names, keys or versions (YAML reads yes/no/on/off as
booleans: the message says to quote them). Dates are `YYYY-MM-DD` only.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from functools import lru_cache

from lifecycle import i18n
from lifecycle.errors import InputError
from lifecycle.models import AgreementStatus, MilestoneKind

LOCALES = i18n.locales()  # English and one per message catalog (lifecycle/locale)
# Dates a lifecycle can sensibly have: anything else is a typo (9999-12-31 would also overflow
# date arithmetic in feeds and timelines).
MIN_DATE, MAX_DATE = dt.date(1970, 1, 1), dt.date(2199, 12, 31)
MAX_CORES = 10_000_000
MAX_ID = 2**31 - 1  # row ids are 32-bit on PostgreSQL: a larger one can only be "not found"


def valid_id(value: int) -> bool:
    return 0 < value <= MAX_ID


# Control characters other than tab and newlines (NUL breaks PostgreSQL text, CR/LF break headers).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK_RE = re.compile(r"[\r\n\u2028\u2029\x85]")
# Bidirectional controls (embeddings, overrides, isolates, marks): they make a name display as
# something other than what it is ("Trojan Source"). Refused in every text field.
_BIDI_RE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def describe(value) -> str:
    """What a value is, for an error message: "a mapping", "true/false", "a number"."""
    if isinstance(value, bool):
        return "true/false (quote it to mean the text)"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dt.datetime):
        return "a date and time"
    if isinstance(value, dt.date):
        return "a date"
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), type(value).__name__)


def _text_of(value, field: str, *, numbers: bool = False) -> str:
    """`value` as stripped text: a string (None is empty), or with `numbers` a whole number (a YAML
    `version: 4` or `key: 1001`). Anything else is an error naming what it is."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if numbers and type(value) is int:
        return str(value)
    raise InputError(field, f"expected text, got {describe(value)}")


def _no_bidi(value: str, field: str) -> str:
    found = _BIDI_RE.search(value)
    if found:
        raise InputError(field, f"contains the bidirectional control character U+{ord(found.group()):04X}")
    return value


_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$")


def slug(value, field: str = "slug") -> str:
    value = _text_of(value, field, numbers=True)
    if not _SLUG_RE.match(value):
        raise InputError(field, f"invalid slug {value!r}: lowercase letters, digits, '.', '_' or '-'")
    return value


def customer_key(value, field: str = "key") -> str:
    value = _text_of(value, field, numbers=True)
    if not _KEY_RE.match(value):
        raise InputError(field, f"invalid key {value!r}: letters, digits, '.', '_' or '-'")
    return value


def version(value, field: str = "version") -> str:
    if isinstance(value, float):
        # YAML reads 3.10 as the float 3.1: refuse rather than silently register the wrong version.
        raise InputError(field, f'version {value!r} must be a quoted string (e.g. "{value}")')
    value = _text_of(value, field, numbers=True)
    if not _VERSION_RE.match(value):
        raise InputError(field, f"invalid version {value!r}: letters, digits, '.', '_', '+', '~' or '-'")
    return value


def name(value, field: str = "name", max_length: int = 200) -> str:
    """A one-line name: text without line breaks, control or bidirectional control characters."""
    value = _text_of(value, field)
    if not value:
        raise InputError(field, "must not be empty")
    if len(value) > max_length:
        raise InputError(field, f"longer than {max_length} characters")
    if _CONTROL_RE.search(value) or _LINE_BREAK_RE.search(value) or "\t" in value:
        raise InputError(field, "must be one line without control characters")
    return _no_bidi(value, field)


def text(value, field: str, max_length: int = 10_000) -> str | None:
    """Free text (feedback): line breaks allowed, other control characters not; None when empty."""
    value = _text_of(value, field)
    if not value:
        return None
    if len(value) > max_length:
        raise InputError(field, f"longer than {max_length} characters")
    if _CONTROL_RE.search(value):
        raise InputError(field, "must not contain control characters")
    return _no_bidi(value, field)


def in_range(day: dt.date, field: str = "date") -> dt.date:
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise InputError(field, f"expected a date (YYYY-MM-DD), got {describe(day)}")
    if not MIN_DATE <= day <= MAX_DATE:
        raise InputError(
            field, f"{day.isoformat()} is outside {MIN_DATE.isoformat()}..{MAX_DATE.isoformat()}"
        )
    return day


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    # IANA keys only: not folders (Europe), not the system's aliases (localtime, posixrules, Factory),
    # not the right/ and posix/ variants.
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "posixrules", "Factory"}


def timezone(value, field: str = "timezone") -> str:
    value = _text_of(value, field)
    if value not in _zones():
        raise InputError(field, f"unknown timezone {value!r} (use an IANA name such as Europe/Berlin)")
    return value


def locale(value, field: str = "locale") -> str:
    value = _text_of(value, field)
    if value not in i18n.locales():
        raise InputError(field, f"unknown locale {value!r} (use one of {', '.join(i18n.locales())})")
    return value


# The plain addresses nearly every fleet is made of (ops@customer.example): a dot-atom of letters, digits,
# `_`, `+` and `-`, then a domain of letter-digit-hyphen labels with an alphabetic top-level label. These
# `email_validator` always accepts, as `local@domain-in-lowercase` (tests/test_validation_email.py
# compares the two on a fuzzed corpus); checking them takes a regular expression instead of the IDNA
# rules (about half a millisecond an address: ten seconds for a fleet's 30,000 contacts). Everything
# else (quoted or unusual local parts, international or punycode domains, special-use names such as
# .test or .local, lengths near the limits) goes through `email_validator`.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_PLAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PLAIN_TLD = re.compile(r"[a-z]{2,63}")
_SPECIAL_USE = frozenset(("arpa", "invalid", "local", "localhost", "onion", "test"))


def _plain_email(value: str) -> str | None:
    local, at, domain = value.rpartition("@")
    if not at or len(local) > 64 or len(value) > 200 or not _PLAIN_LOCAL.fullmatch(local):
        return None
    domain = domain.lower()
    labels = domain.split(".")
    if (
        len(labels) < 2
        or "--" in domain  # punycode (xn--) and other IDNA-reserved labels: the full rules
        or not _PLAIN_TLD.fullmatch(labels[-1])
        or labels[-1] in _SPECIAL_USE
        or not all(_PLAIN_LABEL.fullmatch(label) for label in labels[:-1])
    ):
        return None
    return f"{local}@{domain}"


@lru_cache(maxsize=4096)  # an import repeats the same account rep on thousands of customers
def _ascii_email(value: str) -> str:
    # allow_smtputf8=False: a non-ASCII local part cannot be sent through ordinary mail servers
    # (nor written into an RFC 5322 header); an international domain is fine, in its ASCII form.
    plain = _plain_email(value)
    if plain is not None:
        return plain
    from email_validator import validate_email

    ascii_email = validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
    assert ascii_email is not None  # always set when allow_smtputf8=False (else validate_email raises)
    return ascii_email


def email(value, field: str = "email") -> str:
    from email_validator import EmailNotValidError

    value = _no_bidi(_text_of(value, field), field)
    try:
        return _ascii_email(value)
    except EmailNotValidError as exc:
        raise InputError(field, f"invalid email address {value!r}: {exc}") from None


def date(value, field: str = "date") -> dt.date:
    """A calendar date: a `datetime.date` or the text `YYYY-MM-DD` (not 2027-W26, 20270630 or a time)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return in_range(value, field)
    if not isinstance(value, str):
        raise InputError(field, f"expected a date (YYYY-MM-DD), got {describe(value)}")
    raw = value.strip()
    try:
        if not _DATE_RE.fullmatch(raw):
            raise ValueError
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise InputError(field, f"invalid date {raw[:40]!r} (use YYYY-MM-DD)") from None
    return in_range(day, field)


def optional_date(value, field: str = "date") -> dt.date | None:
    return None if value in (None, "") else date(value, field)


def instant(value, field: str = "at", tz: dt.tzinfo = dt.UTC) -> dt.datetime:
    """An ISO date or datetime; a date means midnight, naive means UTC."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=tz)
    raw = str(value).strip()
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            field, f"invalid date or datetime {raw!r} (use ISO 8601, e.g. 2027-01-31T09:00Z)"
        ) from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    if not MIN_DATE.year <= parsed.year <= MAX_DATE.year:
        raise InputError(field, f"{raw!r} is outside the years {MIN_DATE.year}..{MAX_DATE.year}")
    return parsed


def milestone_kind(value, field: str = "kind") -> str:
    value = _text_of(value, field)
    kinds = [k.value for k in MilestoneKind]
    if value not in kinds:
        raise InputError(field, f"unknown milestone kind {value!r} (use one of {', '.join(kinds)})")
    return value


def cores(value, field: str = "cores") -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool | dict | list | float | dt.date):
        raise InputError(field, f"invalid core count: expected a whole number, got {describe(value)}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InputError(field, f"invalid core count {value!r}: a whole number") from None
    if n < 0 or str(n) != str(value).strip():
        raise InputError(field, f"invalid core count {value!r}: a whole number of 0 or more")
    if n > MAX_CORES:
        raise InputError(field, f"{n} cores is more than {MAX_CORES:,}")
    return n


def agreement_status(value, field: str = "status") -> str:
    value = _text_of(value, field)
    allowed = [s.value for s in AgreementStatus if s != AgreementStatus.NONE]
    if value not in allowed:
        raise InputError(field, f"unknown status {value!r} (use one of {', '.join(allowed)})")
    return value


def reason(value, field: str = "reason") -> str:
    value = text(value, field, max_length=2000)
    if not value:
        raise InputError(field, "a reason is required")
    return value
