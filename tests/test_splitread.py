"""A large registry file's customers read by forked processes (`lifecycle.splitread`): always the value,
or the error, that reading it in one process gives."""

from __future__ import annotations

import random

import pytest

from lifecycle import loader, splitread
from lifecycle.errors import InputError, InputErrors
from tests.conftest import ROOT


def _fleet(customers: int = 40, *, indent: str = "  ", newline: str = "\n") -> str:
    lines = [
        "# a registry file",
        "products:",
        "  - slug: acp",
        "    name: ACP",
        "    releases:",
        "      - version: '3.16'",
        "        milestones: {end-of-life: 2027-06-30}",
        "customers:",
    ]
    for i in range(customers):
        lines += [
            f"{indent}- key: customer-{i:03}",
            f'{indent}  name: "Customer {i}"',
            f"{indent}  timezone: Europe/Berlin",
            f"{indent}  contacts:",
            f"{indent}    - {{email: ops@c{i}.example, name: 'Ops {i}'}}",
            f"{indent}  deployments:",
            f"{indent}  - {{product: acp, version: '3.16', cores: {i}}}",
        ]
        if i % 7 == 3:
            lines += [f"{indent}  notes: |", f"{indent}    kept as written", f"{indent}    - not an item"]
        if i % 11 == 5:
            lines += ["# a comment at the first column, inside the list"]
    return newline.join(lines) + newline


def _outcome(text: str, *, parallel: bool):
    try:
        return "value", loader.load_bytes(
            text.encode(), source="f.yaml", fmt="yaml", is_file=True, parallel=parallel
        )
    except (InputError, InputErrors) as exc:
        return "error", str(exc)


@pytest.fixture(autouse=True)
def _small_files_too(monkeypatch):
    monkeypatch.setattr(splitread, "MIN_CHARS", 0)
    monkeypatch.setattr(splitread, "available_cores", lambda: 4)


@pytest.mark.parametrize("parts", [2, 3, 4])
@pytest.mark.parametrize("indent,newline", [("  ", "\n"), ("", "\n"), ("    ", "\r\n")])
def test_the_customers_list_read_in_parts_is_the_list_read_whole(parts, indent, newline):
    text = _fleet(indent=indent, newline=newline)
    where, limits = loader._Where("f.yaml", text), loader.Limits()
    whole = loader._read_yaml(text, where, limits)
    cuts = splitread.cuts(text, parts)
    assert len(cuts) == parts - 1  # really cut, each at an item of the list
    assert all(text[c:].startswith(indent + "- key: customer-") for c in cuts)
    joined = splitread.read_in_parts(text, lambda t: loader._read_yaml(t, where, limits), limits, parts=parts)
    assert joined == whole and len(joined["customers"]) == 40


def test_the_real_example_registry_reads_the_same_in_parts():
    text = (ROOT / "examples" / "registry.yaml").read_text()
    assert _outcome(text, parallel=True) == _outcome(text, parallel=False)


TRICKY = {
    # A quoted scalar open across a line that looks like an item: the part before it is unterminated.
    "double quotes": lambda t: t.replace('name: "Customer 20"', 'name: "Customer 20\n  - key: fake\n  more"'),
    "single quotes": lambda t: t.replace('name: "Customer 20"', "name: 'Customer 20\n  - key: fake'"),
    "flow list": lambda t: t.replace(
        "    contacts:\n      - {email: ops@c20.example, name: 'Ops 20'}",
        '    contacts: [{email: ops@c20.example, name: "Ops\n  - key: fake\n  20"}\n    ]',
    ),
    "a key after the list": lambda t: t + "products_again: []\n",
    "a key before and after the list": lambda t: (
        t.replace("customers:\n", "customers_first: 1\ncustomers:\n") + "extra:\n  - a\n"
    ),
    "a second document": lambda t: t + "---\nproducts: []\n",
    "a duplicate customers key": lambda t: t + "customers: []\n",
    "an error late in the list": lambda t: t.replace(
        "    timezone: Europe/Berlin\n    contacts:\n      - {email: ops@c33",
        "    timezone: Europe/Berlin\n    timezone: UTC\n    contacts:\n      - {email: ops@c33",
    ),
    "an error early in the list": lambda t: t.replace("key: customer-002", "key: [customer-002"),
    "a tag handle declared at the top": lambda t: (
        "%TAG !e! tag:yaml.org,2002:\n---\n"
        + t.replace(
            "    timezone: Europe/Berlin\n    contacts:\n      - {email: ops@c30",
            "    timezone: !e!str Europe/Berlin\n    contacts:\n      - {email: ops@c30",
        )
    ),
    "an anchor late in the list": lambda t: t.replace('name: "Customer 35"', 'name: &x "Customer 35"'),
    "the list nested, not at the top": lambda t: t.replace("customers:\n", "customers:\n  x:\n").replace(
        "\n  - key", "\n    - key"
    ),
    "customers with a comment": lambda t: t.replace("customers:\n", "customers: # the list\n"),
    "a truncated last line": lambda t: t + '  - key: customer-999\n    name: "Cust\n',
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_a_file_a_naive_cut_would_misread_reads_as_it_does_whole(name):
    text = TRICKY[name](_fleet())
    assert text != _fleet()  # the case really is in the file
    assert _outcome(text, parallel=True) == _outcome(text, parallel=False)


def test_joined_parts_over_the_item_limit_are_refused_as_the_whole_file_is(monkeypatch):
    monkeypatch.setattr(loader, "MAX_ITEMS", 30)
    monkeypatch.setattr(loader.Limits, "from_settings", classmethod(lambda cls: cls(max_items=30)))
    text = _fleet()  # 40 customers: each part of 20 is within the limit, the list is not
    kind, message = _outcome(text, parallel=True)
    assert kind == "error" and "more than 30 entries" in message
    assert (kind, message) == _outcome(text, parallel=False)


def test_random_damage_anywhere_reads_the_same_in_parts_as_whole():
    """Characters that matter to YAML inserted or deleted at random places, most near the cuts."""
    rng = random.Random(5)
    base = _fleet(customers=24)
    cuts = splitread.cuts(base, 4)
    assert len(cuts) == 3
    for _ in range(250):
        text = base
        for _ in range(rng.randint(1, 3)):
            at = rng.choice(cuts) + rng.randint(-60, 60) if rng.random() < 0.7 else rng.randrange(len(text))
            at = max(0, min(at, len(text) - 1))
            if rng.random() < 0.5:
                text = (
                    text[:at]
                    + rng.choice(['"', "'", "[", "]", "{", "}", ": ", "- ", "#", "\n", " ", "|", "&a "])
                    + text[at:]
                )
            else:
                text = text[:at] + text[at + rng.randint(1, 3) :]
        if not text.endswith("\n"):
            text += "\n"
        assert _outcome(text, parallel=True) == _outcome(text, parallel=False), text


def test_without_the_shape_nothing_is_cut():
    assert splitread.cuts("customers: []\n", 2) == []
    assert splitread.cuts("products:\n  - a\n", 2) == []
    assert splitread.cuts(_fleet(), 1) == []
    assert splitread.cuts(_fleet().replace("customers:", "customers:\n", 1) + "customers:\n", 2) == []
