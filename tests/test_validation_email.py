"""The plain-address fast path of `validation.email` accepts only what `email_validator` accepts, and
returns what it returns (imports check 30,000 addresses: the full IDNA rules cost half a millisecond each)."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from lifecycle import validation as v
from lifecycle.errors import InputError


def _reference(value: str) -> str | None:
    try:
        return validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
    except EmailNotValidError:
        return None


def _fuzzed(rng: random.Random) -> str:
    plain = rng.random() < 0.7  # mostly near-plain addresses, where the edge cases are
    local_chars = "aZ09_+-." if plain else "aZ09_+-.'\"!#é "
    domain_chars = "aZ09-" if plain else "aZ09-._"
    local = "".join(rng.choice(local_chars) for _ in range(rng.choice((1, 2, 3, 5, 8, 64, 65))))
    labels = [
        "".join(rng.choice(domain_chars) for _ in range(rng.choice((1, 2, 3, 63, 64))))
        for _ in range(rng.randint(1, 4))
    ]
    tld = rng.choice(("com", "example", "Org", "c", "123", "test", "local", "xn--p1ai", "co-uk", "a1", ""))
    return f"{local}@{'.'.join(labels + [tld])}"


def test_every_address_the_fast_path_takes_is_the_one_email_validator_returns():
    rng = random.Random(20261126)
    taken = 0
    for _ in range(20_000):
        value = _fuzzed(rng)
        fast = v._plain_email(value)
        if fast is not None:
            taken += 1
            assert fast == _reference(value), value
    assert taken > 300, "the corpus exercises the fast path"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Ops@Customer-1.Example", "Ops@customer-1.example"),
        ("a.b+c@x.co", "a.b+c@x.co"),
        ("-a@x.com", "-a@x.com"),
    ],
)
def test_plain_addresses_keep_the_local_part_and_lower_the_domain(value, expected):
    assert v._plain_email(value) == expected == _reference(value)
    assert v.email(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "a@b",
        "a@localhost",
        "x@y.test",
        "a..b@x.com",
        "a@-x.com",
        "a@x.123",
        "a@x.local",
        "a@sub.x.invalid",
        "a b@x.com",
        "a@x..com",
    ],
)
def test_what_email_validator_refuses_is_refused(value):
    assert v._plain_email(value) is None
    with pytest.raises(InputError):
        v.email(value)
