"""Write the hostile-input corpus: import files that `lifecycle import` must refuse with exit code 2.

    python tests/data/hostile/make_corpus.py     # rewrites the files beside this script

Every file is a variant of one valid registry (`BASE`, which imports cleanly) or of one valid
endoflife.date document (`EOL_BASE`), broken in one way: alias bombs, deep nesting, NUL bytes, bad
encodings, lone surrogates, control and bidirectional characters, non-finite numbers, huge integers,
wrong types in every field of both formats, duplicate keys, odd dates, truncation, tags and syntax
typos. `manifest.json` maps each file to a fragment its error message must contain (the reason, not
just any refusal), and to the extra arguments it is imported with (endoflife files).

The 10 MB files are not committed: `big_files(folder)` writes them at test time.
"""

from __future__ import annotations

import codecs
import copy
import datetime as dt
import json
import random
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
EOL_ARGS = ["--format", "endoflife", "--product", "hostile-eol"]

BASE = {
    "products": [
        {
            "slug": "hx",
            "name": "Hostile Example Platform",
            "milestones": {"end-of-sale": dt.date(2031, 6, 30)},
            "releases": [
                {
                    "version": "1.0",
                    "released": dt.date(2025, 1, 15),
                    "upgrade_to": "2.0",
                    "milestones": {
                        "end-of-full-support": dt.date(2030, 3, 31),
                        "end-of-life": {"date": dt.date(2030, 9, 30), "short_notice_reason": "security"},
                    },
                },
                {
                    "version": "2.0",
                    "released": dt.date(2026, 1, 15),
                    "milestones": {"end-of-life": dt.date(2032, 6, 30)},
                },
            ],
        }
    ],
    "customers": [
        {
            "key": "hx-bank",
            "name": "HX Bank",
            "timezone": "Asia/Shanghai",
            "locale": "zh-CN",
            "account_rep": "rep@vendor.example",
            "service": {"start": dt.date(2025, 1, 1), "end": dt.date(2032, 12, 31), "cores": 512},
            "contacts": [{"email": "ops@hx-bank.example", "name": "Ops"}],
            "deployments": [{"product": "hx", "version": "1.0", "cores": 256}],
        }
    ],
}

EOL_BASE = {
    "schema_version": "1.2.0",
    "result": {
        "name": "hostile-eol",
        "label": "Hostile EOL",
        "releases": [
            {
                "name": "1.0",
                "label": "1.0",
                "releaseDate": "2025-01-15",
                "isEol": False,
                "eoasFrom": "2030-03-31",
                "eolFrom": "2030-09-30",
                "eoesFrom": None,
                "discontinuedFrom": None,
            },
            {
                "name": "2.0",
                "label": "2.0",
                "releaseDate": "2026-01-15",
                "isEol": False,
                "eoasFrom": "2031-03-31",
                "eolFrom": "2032-06-30",
                "eoesFrom": None,
                "discontinuedFrom": None,
            },
        ],
    },
}


def sub(text, old, new, count: int = -1):
    """`text` with `old` replaced: a variant that would silently equal its base is a bug here."""
    assert old in text, old
    return text.replace(old, new, count)


def base() -> dict:
    return copy.deepcopy(BASE)


def base_yaml(data: dict | None = None) -> str:
    return yaml.safe_dump(base() if data is None else data, sort_keys=False, allow_unicode=True)


def base_json(data: dict | None = None) -> str:
    return json.dumps(_plain(base() if data is None else data), indent=2, ensure_ascii=False) + "\n"


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class Corpus:
    """Collects files: name -> (bytes, expected fragment of the error, extra CLI arguments)."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, str, list[str]]] = {}

    def add(self, name: str, content: str | bytes, expect: str, args: list[str] | None = None) -> None:
        assert name not in self.files, name
        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        self.files[name] = (data, expect, args or [])

    def write(self, folder: Path) -> None:
        for old in folder.iterdir():
            if old.name not in ("make_corpus.py", "__init__.py") and old.is_file():
                old.unlink()
        manifest = {}
        for name, (data, expect, args) in sorted(self.files.items()):
            (folder / name).write_bytes(data)
            manifest[name] = {"expect": expect, "args": args}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=True) + "\n")


# --------------------------------------------------------------------------------------- categories


def alias_bombs(c: Corpus) -> None:
    laughs = ['lol0: &a0 ["lol"]'] + [
        f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)
    ]
    c.add("alias-billion-laughs.yaml", "\n".join(laughs) + "\n", "are not allowed")
    c.add(
        "alias-billion-laughs-in-registry.yaml",
        "\n".join(laughs) + "\nproducts:\n  - slug: hx\n    name: *a9\n",
        "are not allowed",
    )
    wide = "base: &b [" + ", ".join(["x" * 20] * 200) + "]\nitems: [" + ", ".join(["*b"] * 2000) + "]\n"
    c.add("alias-quadratic.yaml", wide, "are not allowed")
    c.add("alias-scalar.yaml", "products:\n  - slug: &s hx\n    name: *s\n", "anchors")
    c.add("alias-unused-anchor.yaml", sub(base_yaml(), "name: HX Bank", "name: &n HX Bank"), "anchors")
    c.add(
        "alias-merge-key.yaml",
        "defaults: &d {timezone: UTC}\ncustomers:\n  - <<: *d\n    key: x\n",
        "anchors",
    )
    c.add("alias-merge-key-inline.yaml", "customers:\n  - <<: {timezone: UTC}\n    key: x\n", "merge keys")
    c.add("alias-recursive.yaml", "a: &a [*a]\n", "anchors")
    c.add("alias-as-key.yaml", "k: &k name\nproducts:\n  - slug: hx\n    *k : HX\n", "anchors")
    c.add("alias-undefined.yaml", "products: *nothing\n", "aliases")
    c.add("alias-in-flow.yaml", "products: [&p {slug: hx, name: HX}, *p]\n", "anchors")
    c.add("alias-in-customer-list.yaml", sub(base_yaml(), "customers:\n-", "customers:\n- &c"), "anchors")
    bomb = (
        "a: &a ["
        + ",".join(["x"] * 10)
        + "]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(12)
        )
    )
    c.add("alias-bomb-12-levels.yaml", bomb, "anchors")


def deep_nesting(c: Corpus) -> None:
    for n in (65, 100, 1000, 5000, 100_000):
        c.add(f"deep-flow-list-{n}.yaml", "products: " + "[" * n + "]" * n + "\n", "nest")
        c.add(
            f"deep-json-list-{n}.json", '{"products": ' + "[" * n + "]" * n + "}\n", "nested deeper than 64"
        )
    for n in (65, 1000, 20_000):
        c.add(f"deep-flow-map-{n}.yaml", "products: " + "{a: " * n + "1" + "}" * n + "\n", "nested deeper")
        c.add(
            f"deep-json-map-{n}.json", '{"products": ' + '{"a": ' * n + "1" + "}" * n + "}\n", "nested deeper"
        )
    block = "products:\n" + "".join("  " * i + "- \n" for i in range(1, 70))
    c.add("deep-block-list-70.yaml", block, "nested deeper than 64")
    block = "".join("  " * i + f"k{i}:\n" for i in range(70)) + "  " * 70 + "v\n"
    c.add("deep-block-map-70.yaml", block, "nested deeper than 64")
    c.add("deep-unbalanced-json.json", '{"products": ' + "[" * 100_000 + "\n", "nested deeper than 64")
    c.add(
        "deep-in-name.yaml",
        sub(base_yaml(), "name: HX Bank", "name: " + "[" * 200 + "]" * 200),
        "nested deeper than 64",
    )
    c.add(
        "deep-mixed-json.json", '{"a": ' + '[{"b": ' * 500 + "0" + "}]" * 500 + "}\n", "nested deeper than 64"
    )


def nul_and_encodings(c: Corpus) -> None:
    good = base_yaml()
    c.add("nul-at-start.yaml", "\x00" + good, "NUL")
    c.add("nul-in-name.yaml", sub(good, "HX Bank", "HX\x00Bank"), "NUL")
    c.add("nul-at-end.yaml", good + "\x00", "NUL")
    c.add("nul-only.yaml", b"\x00" * 4096, "NUL")
    c.add("nul-in-json.json", sub(base_json(), "HX Bank", "HX\x00Bank"), "NUL")
    c.add("nul-escape-json.json", sub(base_json(), "HX Bank", "HX\\u0000Bank"), "U+0000")
    c.add("nul-escape-yaml.yaml", sub(good, "name: HX Bank", 'name: "HX\\0Bank"'), "U+0000")
    c.add("nul-hex-escape-yaml.yaml", sub(good, "name: HX Bank", 'name: "HX\\x00Bank"'), "U+0000")
    for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        c.add(f"encoding-{codec}-no-bom.yaml", good.encode(codec), "NUL")
    c.add("encoding-utf-16-bom.yaml", codecs.BOM_UTF16_LE + good.encode("utf-16-le"), "UTF-16")
    c.add("encoding-utf-16-be-bom.json", codecs.BOM_UTF16_BE + base_json().encode("utf-16-be"), "UTF-16")
    c.add("encoding-utf-32-bom.yaml", codecs.BOM_UTF32_LE + good.encode("utf-32-le"), "UTF-32")
    c.add("encoding-latin-1.yaml", sub(good, "HX Bank", "Müller Bank").encode("latin-1"), "not UTF-8")
    c.add("encoding-cp1252-quotes.yaml", sub(good, "HX Bank", "“HX” Bank").encode("cp1252"), "not UTF-8")
    c.add("encoding-gb2312.yaml", sub(good, "HX Bank", "华夏银行").encode("gb2312"), "not UTF-8")
    c.add("encoding-cut-multibyte.yaml", good.encode() + "华".encode()[:2], "not UTF-8")
    c.add("encoding-overlong-slash.yaml", sub(good.encode(), b"HX Bank", b"HX \xc0\xaf Bank"), "not UTF-8")
    c.add(
        "encoding-cesu-surrogate.yaml", sub(good.encode(), b"HX Bank", b"HX \xed\xa0\x80 Bank"), "not UTF-8"
    )
    c.add("encoding-latin-1.json", sub(base_json(), "HX Bank", "Müller Bank").encode("latin-1"), "not UTF-8")
    rnd = random.Random(20270101)
    for size in (16, 256, 4096, 65536):
        c.add(f"binary-random-{size}.yaml", bytes(rnd.getrandbits(8) for _ in range(size)), "")
        c.add(f"binary-random-{size}.json", bytes(rnd.getrandbits(8) for _ in range(size)), "")
    c.add("binary-issue-8.yaml", bytes(range(256)) * 4, "NUL")
    c.add("binary-png.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "NUL")
    c.add("binary-gzip.json", b"\x1f\x8b\x08\x00" + bytes(range(200)), "")
    c.add("binary-zip.yaml", b"PK\x03\x04" + bytes(range(1, 200)), "not UTF-8")
    c.add("binary-elf.yaml", b"\x7fELF\x02\x01\x01" + bytes(100), "")
    c.add("binary-sqlite.yaml", b"SQLite format 3\x00" + bytes(100), "NUL")


def surrogates_and_controls(c: Corpus) -> None:
    j = base_json()
    for name, esc in (
        ("high", "\\ud800"),
        ("low", "\\udfff"),
        ("high-then-letter", "\\ud800\\u0041"),
        ("reversed-pair", "\\udc00\\ud800"),
        ("high-at-end", "\\udbff"),
    ):
        c.add(f"surrogate-{name}.json", sub(j, "HX Bank", f"HX {esc} Bank"), "lone surrogate")
    c.add("surrogate-in-key.json", sub(j, '"timezone"', '"time\\ud800zone"'), "lone surrogate")
    c.add("surrogate-in-slug.json", sub(j, '"slug": "hx"', '"slug": "h\\ud800x"'), "lone surrogate")
    c.add("surrogate-in-list.json", sub(j, '"contacts": [', '"contacts": ["\\ud800", '), "lone surrogate")
    c.add(
        "eol-surrogate-label.json",
        sub(json.dumps(EOL_BASE), "Hostile EOL", "Hostile \\ud800") + "\n",
        "lone surrogate",
        EOL_ARGS,
    )
    c.add(
        "surrogate-yaml-escape.yaml",
        sub(base_yaml(), "name: HX Bank", 'name: "HX \\ud800"'),
        "not valid YAML",
    )
    c.add(
        "surrogate-yaml-long-escape.yaml",
        sub(base_yaml(), "name: HX Bank", 'name: "HX \\U0000d800"'),
        "not valid YAML",
    )
    c.add("surrogate-raw-bytes.json", sub(j.encode(), b"HX Bank", b"HX \xed\xb0\x80"), "not UTF-8")
    y = base_yaml()
    for code in (0x01, 0x07, 0x08, 0x0B, 0x0C, 0x1B, 0x7F, 0x85, 0x9B):
        c.add(f"control-raw-{code:02x}.yaml", sub(y, "HX Bank", f"HX{chr(code)}Bank"), f"U+{code:04X}")
    c.add("control-ansi-json.json", sub(j, "HX Bank", "\x1b[31mHX Bank"), "U+001B")
    for esc, code in (("\\u001b", "U+001B"), ("\\b", "U+0008"), ("\\f", "U+000C"), ("\\u007f", "U+007F")):
        c.add(f"control-escape-{code[2:]}.json", sub(j, "HX Bank", f"HX{esc}Bank"), code)
    c.add("control-yaml-escape-e.yaml", sub(y, "name: HX Bank", 'name: "HX\\eBank"'), "U+001B")
    c.add("control-yaml-escape-a.yaml", sub(y, "name: HX Bank", 'name: "HX\\aBank"'), "U+0007")
    c.add("control-line-break-in-name.yaml", sub(y, "name: HX Bank", 'name: "HX\\nBank"'), "one line")
    c.add("control-line-separator-in-name.yaml", sub(y, "name: HX Bank", 'name: "HX\\LBank"'), "one line")


def bidi(c: Corpus) -> None:
    y, j = base_yaml(), base_json()
    for code in (0x202E, 0x202D, 0x202A, 0x2066, 0x2067, 0x2069, 0x200E, 0x200F, 0x061C):
        c.add(f"bidi-customer-name-{code:04x}.yaml", sub(y, "HX Bank", f"HX{chr(code)}Bank"), "bidirectional")
    c.add(
        "bidi-product-name.yaml",
        sub(y, "Hostile Example Platform", "Hostile \u202eemroftalP"),
        "bidirectional",
    )
    c.add("bidi-contact-name.yaml", sub(y, "name: Ops", "name: \u202eOps"), "bidirectional")
    c.add(
        "bidi-reason.yaml",
        sub(y, "short_notice_reason: security", "short_notice_reason: \u2067security"),
        "bidirectional",
    )
    c.add("bidi-escape-json.json", sub(j, "HX Bank", "HX \\u202e Bank"), "bidirectional")
    c.add("bidi-email.json", sub(j, "ops@hx-bank.example", "ops@hx\\u202e-bank.example"), "bidirectional")
    c.add(
        "eol-bidi-label.json",
        sub(json.dumps(EOL_BASE), "Hostile EOL", "Hostile \\u202eLOE") + "\n",
        "bidirectional",
        EOL_ARGS,
    )


def numbers(c: Corpus) -> None:
    y, j = base_yaml(), base_json()
    for name, value in (
        ("inf", ".inf"),
        ("minus-inf", "-.inf"),
        ("upper-inf", ".INF"),
        ("nan", ".nan"),
        ("nan-mixed", ".NaN"),
        ("overflow", "1.0e400"),
        ("minus-overflow", "-1.5e999"),
    ):
        c.add(f"number-{name}-cores.yaml", sub(y, "cores: 512", f"cores: {value}"), "finite")
    c.add("number-inf-version.yaml", sub(y, "version: '2.0'", "version: .inf"), "finite")
    c.add("number-nan-date.yaml", sub(y, "end-of-life: 2032-06-30", "end-of-life: .nan"), "finite")
    c.add("number-inf-name.yaml", sub(y, "name: HX Bank", "name: -.Inf"), "finite")
    for name, value in (
        ("infinity", "Infinity"),
        ("minus-infinity", "-Infinity"),
        ("nan", "NaN"),
        ("overflow", "1e400"),
        ("minus-overflow", "-1E999"),
    ):
        c.add(f"number-{name}-cores.json", sub(j, '"cores": 512', f'"cores": {value}'), "finite")
    c.add(
        "eol-nan-release-date.json",
        sub(json.dumps(EOL_BASE), '"2025-01-15"', "NaN") + "\n",
        "finite",
        EOL_ARGS,
    )
    for digits in (20, 100, 4301, 5000, 100_000):
        c.add(f"integer-{digits}-digits.yaml", sub(y, "cores: 512", "cores: " + "9" * digits), "too large")
        c.add(
            f"integer-{digits}-digits.json", sub(j, '"cores": 512', '"cores": ' + "9" * digits), "too large"
        )
    c.add("integer-2-pow-63.yaml", sub(y, "cores: 512", f"cores: {2**63}"), "too large")
    c.add(
        "integer-minus-2-pow-63-minus-1.json", sub(j, '"cores": 512', f'"cores": {-(2**63) - 1}'), "too large"
    )
    c.add("integer-5000-digits-version.yaml", sub(y, "version: '2.0'", "version: " + "1" * 5000), "too large")
    c.add("integer-5000-digits-key.yaml", sub(y, "key: hx-bank", "key: " + "7" * 5000), "too large")
    c.add(
        "eol-integer-5000-digits.json",
        sub(json.dumps(EOL_BASE), '"1.0"', "1" * 5000, 1) + "\n",
        "too large",
        EOL_ARGS,
    )
    c.add("number-cores-too-many.yaml", sub(y, "cores: 512", "cores: 99999999999"), "more than")
    c.add("number-cores-negative.yaml", sub(y, "cores: 512", "cores: -4"), "0 or more")
    c.add("number-cores-hex.yaml", sub(y, "cores: 512", "cores: 0x200"), "core count")
    c.add("number-cores-octal.yaml", sub(y, "cores: 512", "cores: 0o1000"), "core count")
    c.add("number-cores-underscore.yaml", sub(y, "cores: 512", "cores: 5_12"), "core count")
    c.add("number-cores-sexagesimal.yaml", sub(y, "cores: 512", "cores: 8:32"), "core count")
    c.add("number-version-float.yaml", sub(y, "version: '2.0'", "version: 2.10"), "quoted string")


# Every field of the registry format, with a way to reach it in a copy of BASE.
FIELDS = {
    "product.slug": lambda d: (d["products"][0], "slug"),
    "product.name": lambda d: (d["products"][0], "name"),
    "product.milestones": lambda d: (d["products"][0], "milestones"),
    "product.releases": lambda d: (d["products"][0], "releases"),
    "release.version": lambda d: (d["products"][0]["releases"][0], "version"),
    "release.released": lambda d: (d["products"][0]["releases"][0], "released"),
    "release.upgrade_to": lambda d: (d["products"][0]["releases"][0], "upgrade_to"),
    "release.milestones": lambda d: (d["products"][0]["releases"][0], "milestones"),
    "milestone.date": lambda d: (d["products"][0]["releases"][0]["milestones"], "end-of-full-support"),
    "milestone.nested-date": lambda d: (d["products"][0]["releases"][0]["milestones"]["end-of-life"], "date"),
    "milestone.reason": lambda d: (
        d["products"][0]["releases"][0]["milestones"]["end-of-life"],
        "short_notice_reason",
    ),
    "customer.key": lambda d: (d["customers"][0], "key"),
    "customer.name": lambda d: (d["customers"][0], "name"),
    "customer.timezone": lambda d: (d["customers"][0], "timezone"),
    "customer.locale": lambda d: (d["customers"][0], "locale"),
    "customer.account_rep": lambda d: (d["customers"][0], "account_rep"),
    "customer.service": lambda d: (d["customers"][0], "service"),
    "customer.contacts": lambda d: (d["customers"][0], "contacts"),
    "customer.deployments": lambda d: (d["customers"][0], "deployments"),
    "service.start": lambda d: (d["customers"][0]["service"], "start"),
    "service.end": lambda d: (d["customers"][0]["service"], "end"),
    "service.cores": lambda d: (d["customers"][0]["service"], "cores"),
    "contact.email": lambda d: (d["customers"][0]["contacts"][0], "email"),
    "contact.name": lambda d: (d["customers"][0]["contacts"][0], "name"),
    "deployment.product": lambda d: (d["customers"][0]["deployments"][0], "product"),
    "deployment.version": lambda d: (d["customers"][0]["deployments"][0], "version"),
    "deployment.cores": lambda d: (d["customers"][0]["deployments"][0], "cores"),
    "top.products": lambda d: (d, "products"),
    "top.customers": lambda d: (d, "customers"),
}
TEXT_FIELDS = {
    "product.slug",
    "product.name",
    "release.version",
    "release.upgrade_to",
    "milestone.reason",
    "customer.key",
    "customer.name",
    "customer.timezone",
    "customer.locale",
    "customer.account_rep",
    "contact.email",
    "contact.name",
    "deployment.product",
    "deployment.version",
}
DATE_FIELDS = {"release.released", "milestone.date", "milestone.nested-date", "service.start", "service.end"}
COUNT_FIELDS = {"service.cores", "deployment.cores"}
# Wrong values: (suffix, value). Text fields get everything but text; containers get scalars too.
WRONG = [
    ("mapping", {"a": 1}),
    ("list", [1, 2]),
    ("true", True),
    ("false", False),
    ("float", 3.5),
    ("date", dt.date(2030, 6, 30)),
    ("datetime", dt.datetime(2030, 6, 30, 9, 0)),
]


def wrong_types(c: Corpus) -> None:
    for field_name, reach in FIELDS.items():
        for suffix, value in WRONG:
            if field_name in DATE_FIELDS and suffix == "date":
                continue
            if field_name == "milestone.date" and suffix == "true":
                continue  # `end-of-life: true` is valid: the phase ended on a date nobody published
            if suffix == "datetime" and field_name not in DATE_FIELDS:
                continue  # YAML writes it as text ("2030-06-30 09:00:00"), which is a valid name
            data = base()
            parent, key = reach(data)
            parent[key] = copy.deepcopy(value)
            fmt = "json" if suffix in ("list", "false") else "yaml"
            text = base_json(data) if fmt == "json" else base_yaml(data)
            c.add(f"type-{field_name}-{suffix}.{fmt}", text, "")
        if field_name in DATE_FIELDS | COUNT_FIELDS or field_name.startswith(
            ("top.", "product.m", "product.r", "release.m", "customer.s", "customer.c", "customer.d")
        ):
            data = base()
            parent, key = reach(data)
            parent[key] = "soon"
            c.add(f"type-{field_name}-text.yaml", base_yaml(data), "")
    for field_name in sorted(TEXT_FIELDS - {"milestone.reason", "contact.name", "release.upgrade_to"}):
        data = base()
        parent, key = FIELDS[field_name](data)
        parent[key] = None
        c.add(
            f"type-{field_name}-null.yaml",
            base_yaml(data),
            "required" if field_name != "customer.locale" else "locale",
        )
    # Issue 9's cases by name
    c.add(
        "type-name-is-mapping-issue-9.yaml",
        sub(base_yaml(), "name: HX Bank", "name: {'a': 1}"),
        "expected text, got a mapping",
    )
    c.add("type-key-true-issue-9.yaml", sub(base_yaml(), "key: hx-bank", "key: True"), "true/false")
    for word in ("yes", "no", "on", "off", "NO", "Off"):
        c.add(f"type-key-{word}.yaml", sub(base_yaml(), "key: hx-bank", f"key: {word}"), "true/false")
    c.add("type-locale-no.yaml", sub(base_yaml(), "locale: zh-CN", "locale: no"), "true/false")
    for name, top in (
        ("list", "- products: []\n"),
        ("scalar", "hello\n"),
        ("number", "42\n"),
        ("null", "null\n"),
        ("tilde", "~\n"),
        ("date", "2030-06-30\n"),
    ):
        c.add(f"type-top-level-{name}.yaml", top, "")
    for name, top in (("list", "[]\n"), ("string", '"products"\n'), ("number", "1\n"), ("null", "null\n")):
        c.add(f"type-top-level-{name}.json", top, "")


def endoflife_types(c: Corpus) -> None:
    def eol(mutate, name: str, expect: str = "") -> None:
        data = copy.deepcopy(EOL_BASE)
        mutate(data)
        c.add(f"eol-{name}.json", json.dumps(data, indent=1) + "\n", expect, EOL_ARGS)

    def set_release(key, value):
        return lambda d: d["result"]["releases"][0].__setitem__(key, value)

    for key in ("name", "releaseDate", "eoasFrom", "eolFrom", "eoesFrom", "discontinuedFrom"):
        for suffix, value in (
            ("mapping", {"a": 1}),
            ("list", ["2030-01-01"]),
            ("float", 3.5),
            ("number", 20300630),
            ("week", "2030-W26"),
            ("compact", "20300630"),
            ("datetime", "2030-06-30T00:00:00Z"),
        ):
            if key == "name" and suffix in ("week", "compact", "datetime", "number"):
                continue
            eol(set_release(key, value), f"{key}-{suffix}")
    eol(set_release("name", True), "name-true")
    eol(set_release("name", None), "name-null")
    for suffix, value in (("mapping", {"a": 1}), ("list", ["x"]), ("true", True), ("number", 7)):
        eol(lambda d, value=value: d["result"].__setitem__("label", value), f"label-{suffix}")
    eol(lambda d: d.__setitem__("result", []), "result-list")
    eol(lambda d: d.__setitem__("result", "hostile"), "result-text")
    eol(lambda d: d["result"].__setitem__("releases", {"1.0": {}}), "releases-mapping")
    eol(lambda d: d["result"].__setitem__("releases", []), "releases-empty")
    eol(lambda d: d["result"]["releases"].__setitem__(0, "1.0"), "release-text")
    eol(
        lambda d: d["result"]["releases"].__setitem__(1, copy.deepcopy(d["result"]["releases"][0])),
        "release-duplicate",
        "duplicate release",
    )
    c.add("eol-top-level-list.json", json.dumps([EOL_BASE]) + "\n", "top level", EOL_ARGS)
    c.add(
        "eol-duplicate-key.json",
        sub(
            json.dumps(EOL_BASE, indent=1),
            '"releaseDate": "2025-01-15",',
            '"releaseDate": "2025-01-15", "releaseDate": "2030-01-01",',
        )
        + "\n",
        "duplicate key",
        EOL_ARGS,
    )


def duplicates(c: Corpus) -> None:
    y, j = base_yaml(), base_json()
    c.add("dup-flow-one-line.yaml", "products:\n  - {slug: hx, name: A, name: B}\n", "duplicate key 'name'")
    c.add(
        "dup-flow-customer.yaml",
        sub(y, "service:\n", "service: {start: 2025-01-01, start: 2026-01-01}\n  service_x:\n", 1),
        "duplicate key 'start'",
    )
    c.add("dup-top-products.yaml", y + "products: []\n", "duplicate key 'products'")
    c.add(
        "dup-top-customers.json",
        sub(j, '"products":', '"customers": [],\n  "products":'),
        "duplicate key 'customers'",
    )
    c.add(
        "dup-name.yaml",
        sub(y, "  name: HX Bank\n", "  name: HX Bank\n  name: HX Bank 2\n"),
        "duplicate key 'name'",
    )
    c.add(
        "dup-milestone-kind.yaml",
        sub(
            y,
            "      end-of-life: 2032-06-30\n",
            "      end-of-life: 2032-06-30\n      end-of-life: 2033-06-30\n",
        ),
        "duplicate key 'end-of-life'",
    )
    c.add(
        "dup-quoted-vs-plain.yaml",
        sub(y, "- key: hx-bank\n", "- key: hx-bank\n  'key': hx-bank-2\n"),
        "duplicate key 'key'",
    )
    c.add(
        "dup-complex-key.yaml",
        sub(y, "- key: hx-bank\n", "- key: hx-bank\n  ? key\n  : hx-bank-2\n"),
        "duplicate key 'key'",
    )
    c.add(
        "dup-json-nested.json", sub(j, '"slug": "hx",', '"slug": "hx", "slug": "hy",'), "duplicate key 'slug'"
    )
    c.add(
        "dup-json-escaped.json",
        sub(j, '"name": "HX Bank",', '"name": "HX Bank", "n\\u0061me": "Other",'),
        "duplicate key 'name'",
    )
    c.add(
        "dup-json-one-line.json",
        '{"products": [{"slug": "hx", "name": "A", "name": "B"}]}\n',
        "duplicate key 'name'",
    )
    c.add(
        "dup-service-cores.yaml",
        sub(y, "    cores: 512\n", "    cores: 512\n    cores: 1024\n"),
        "duplicate key 'cores'",
    )
    c.add(
        "dup-many.yaml",
        "products:\n" + "".join(f"  - {{slug: a, slug: b, name: {i}, name: {i}}}\n" for i in range(200)),
        "duplicate key",
    )
    c.add(
        "dup-customer-key-values.yaml",
        base_yaml({**base(), "customers": base()["customers"] + base()["customers"]}),
        "duplicate customer",
    )
    c.add(
        "dup-contact-email.yaml",
        sub(
            y,
            "  - email: ops@hx-bank.example\n    name: Ops\n",
            "  - email: ops@hx-bank.example\n    name: Ops\n  - email: OPS@hx-bank.example\n",
        ),
        "duplicate contact",
    )


DATES = [
    ("week", "2030-W26"),
    ("week-day", "2030-W26-1"),
    ("compact", "20300630"),
    ("ordinal", "2030-181"),
    ("day-31-june", "2030-06-31"),
    ("feb-29", "2027-02-29"),
    ("month-13", "2030-13-01"),
    ("single-digit", "2030-6-30"),
    ("two-digit-year", "30-06-30"),
    ("slashes", "2030/06/30"),
    ("dotted", "30.06.2030"),
    ("words", "June 30, 2030"),
    ("datetime-z", "2030-06-30T00:00:00Z"),
    ("datetime-space", "2030-06-30 10:00"),
    ("year-zero", "0000-01-01"),
    ("year-9999", "9999-12-31"),
    ("before-1970", "1969-12-31"),
    ("zulu", "2030-06-30Z"),
    ("plus-year", "+2030-06-30"),
    ("quoted-week", "'2030-W26'"),
    ("quoted-compact", "'20300630'"),
    ("today", "today"),
]


def odd_dates(c: Corpus) -> None:
    y = base_yaml()
    targets = {
        "milestone": "end-of-full-support: 2030-03-31",
        "released": "released: 2025-01-15",
        "service-end": "end: 2032-12-31",
    }
    for name, value in DATES:
        for target, line in targets.items():
            if target != "milestone" and name in ("today", "quoted-week", "zulu", "plus-year", "words"):
                continue
            assert line in y, line
            c.add(f"date-{target}-{name}.yaml", sub(y, line, line.split(":")[0] + ": " + value), "")
    j = base_json()
    for name, value in DATES[:14]:
        c.add(f"date-json-{name}.json", sub(j, '"2030-09-30"', json.dumps(value.strip("'"))), "")


def truncation(c: Corpus) -> None:
    example = (HERE.parent.parent.parent / "examples" / "registry.yaml").read_text(encoding="utf-8")
    cut = example.index("name: Alauda Container Platform") + len("name: Alauda Co")
    c.add("truncated-alauda-co.yaml", example[:cut], "truncated")
    rnd = random.Random(9)
    points = sorted(rnd.sample(range(50, len(example) - 2), 40))
    n = 0
    for point in points:
        if example[point - 1] == "\n":
            continue
        c.add(f"truncated-example-{point}.yaml", example[:point], "truncated")
        n += 1
        if n == 24:
            break
    j = base_json()
    for point in (1, 10, 50, len(j) // 3, len(j) // 2, len(j) - 30, len(j) - 3, len(j) - 2):
        c.add(f"truncated-registry-{point}.json", j[:point], "not valid JSON")
    e = json.dumps(EOL_BASE, indent=1)
    for point in (20, len(e) // 2, len(e) - 2):
        c.add(f"eol-truncated-{point}.json", e[:point], "not valid JSON", EOL_ARGS)
    c.add(
        "truncated-in-multibyte.yaml",
        sub(base_yaml(), "HX Bank", "华夏银行").encode()[:-10][:-1] + b"\xe5\x8d",
        "",
    )


def syntax_and_tags(c: Corpus) -> None:
    y = base_yaml()
    c.add("syntax-tab-indent.yaml", sub(y, "- slug: hx\n  name:", "- slug: hx\n\tname:"), "not valid YAML")
    c.add(
        "syntax-missing-colon.yaml",
        sub(y, "timezone: Asia/Shanghai", "timezone Asia/Shanghai"),
        "not valid YAML",
    )
    c.add("syntax-unclosed-quote.yaml", sub(y, "name: HX Bank", "name: 'HX Bank"), "not valid YAML")
    c.add("syntax-unclosed-flow.yaml", sub(y, "name: HX Bank", "name: [HX Bank"), "not valid YAML")
    c.add("syntax-bad-indent.yaml", sub(y, "  name: HX Bank", "     name: HX Bank"), "not valid YAML")
    c.add("syntax-value-colon.yaml", sub(y, "name: HX Bank", "name: HX: Bank"), "not valid YAML")
    c.add("syntax-two-documents.yaml", y + "---\n" + y, "more than one YAML document")
    c.add("syntax-directive-only.yaml", "%YAML 1.1\n---\n", "empty")
    for name, text in (
        ("empty", ""),
        ("newline", "\n"),
        ("spaces", "   \n\n  \n"),
        ("comment", "# nothing\n"),
        ("document-marker", "---\n"),
        ("document-end", "...\n"),
    ):
        c.add(f"empty-{name}.yaml", text, "empty")
    c.add("empty.json", "", "empty")
    c.add("empty-object.json", "{}\n", "nothing to import")
    c.add("empty-mapping.yaml", "{}\n", "nothing to import")
    c.add("unknown-top-key.yaml", sub(y, "products:", "product:"), "unknown key")
    c.add("unknown-customer-key.yaml", sub(y, "timezone:", "time_zone:"), "unknown key")
    for name, tag in (
        ("python-apply", "!!python/object/apply:os.system ['echo owned']"),
        ("python-name", "!!python/name:os.system"),
        ("binary", "!!binary aGVsbG8="),
        ("custom", "!hostile value"),
        ("timestamp", "!!timestamp 2030-06-30"),
        ("int", '!!int "12"'),
        ("float", "!!float 1"),
        ("set", "!!set {a, b}"),
        ("omap", "!!omap [a: 1]"),
        ("verbatim", "!<tag:example.com,2000:x> v"),
    ):
        c.add(f"tag-{name}.yaml", sub(y, "name: HX Bank", f"name: {tag}"), "tag")
    c.add("tag-on-mapping.yaml", sub(y, "  service:\n", "  service: !!python/object:os.x\n"), "tag")
    c.add("json-trailing-comma.json", sub(base_json(), '"cores": 256\n', '"cores": 256,\n'), "not valid JSON")
    c.add("json-comment.json", "// registry\n" + base_json(), "not valid JSON")
    c.add("json-single-quotes.json", sub(base_json(), '"hx"', "'hx'"), "not valid JSON")
    c.add("json-two-documents.json", base_json() + base_json(), "not valid JSON")
    c.add("json-bare-word.json", '{"products": undefined}\n', "not valid JSON")
    c.add("json-raw-newline-in-string.json", sub(base_json(), "HX Bank", "HX\nBank"), "not valid JSON")
    c.add("long-string-name.yaml", sub(y, "name: HX Bank", "name: " + "x" * 100_001), "100,000")
    c.add("long-string-name.json", sub(base_json(), "HX Bank", "x" * 100_001), "100,000")
    c.add("long-string-escaped-quotes.json", sub(base_json(), "HX Bank", '\\"' * 100_001), "100,000")
    c.add("long-name-201.yaml", sub(y, "name: HX Bank", "name: " + "x" * 201), "longer than 200")
    c.add("long-key.yaml", sub(y, "key: hx-bank", "key: " + "k" * 65), "invalid key")


def generate() -> Corpus:
    c = Corpus()
    for category in (
        alias_bombs,
        deep_nesting,
        nul_and_encodings,
        surrogates_and_controls,
        bidi,
        numbers,
        wrong_types,
        endoflife_types,
        duplicates,
        odd_dates,
        truncation,
        syntax_and_tags,
    ):
        category(c)
    return c


# ----------------------------------------------------------------------------------------- 10 MB files

TEN_MB = 10 * 1024 * 1024
FLEET_CUSTOMERS = TEN_MB // 300  # a little over 10 MB of registry


def fleet_yaml(customers: int) -> str:
    """A valid registry with `customers` customers in the shape of BASE (about 310 bytes each)."""
    head = base_yaml({"products": base()["products"]})
    one = yaml.safe_dump({"customers": base()["customers"]}, sort_keys=False).split("\n", 1)[1]
    return (
        head
        + "customers:\n"
        + "".join(
            one.replace("hx-bank", f"hx-{i:07d}").replace("ops@hx-bank", f"ops@hx-{i:07d}")
            for i in range(customers)
        )
    )


def big_files(folder: Path) -> dict[str, tuple[str, list[str]]]:
    """Write the 10 MB files into `folder`; return name -> (expected fragment, extra arguments)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[bytes | str, str]] = {}
    fleet = fleet_yaml(FLEET_CUSTOMERS)
    files["big-name-10mb.yaml"] = ("products:\n  - slug: hx\n    name: " + "x" * TEN_MB + "\n", "100,000")
    files["big-name-10mb.json"] = (
        '{"products": [{"slug": "hx", "name": "' + "x" * TEN_MB + '"}]}',
        "100,000",
    )
    files["big-deep-10mb.yaml"] = ("products: " + "[" * (TEN_MB // 2) + "]" * (TEN_MB // 2) + "\n", "nested")
    files["big-deep-10mb.json"] = ('{"a": ' + "[" * (TEN_MB // 2) + "]" * (TEN_MB // 2) + "}", "nested")
    files["big-zeros-top-10mb.yaml"] = ("[" + "0," * (TEN_MB // 2) + "0]\n", "top level")
    files["big-zeros-products-10mb.yaml"] = ("products: [" + "0," * (TEN_MB // 2) + "0]\n", "entries")
    files["big-zeros-products-10mb.json"] = ('{"products": [' + "0," * (TEN_MB // 2) + "0]}", "")
    files["big-keys-10mb.yaml"] = ("".join(f"k{i}: 1\n" for i in range(TEN_MB // 10)), "entries")
    files["big-nul-10mb.yaml"] = (b"\x00" * TEN_MB, "NUL")
    files["big-random-10mb.json"] = (random.Random(1).randbytes(TEN_MB), "")
    assert len(fleet) > TEN_MB and fleet.endswith("\n")
    files["big-fleet-truncated-10mb.yaml"] = (fleet[: len(fleet) - 7], "truncated")
    files["big-fleet-alias-at-end-10mb.yaml"] = (
        sub(fleet, "  name: HX Bank\n", "  name: &n HX Bank\n", 1) + "extra: *n\n",
        "anchors",
    )
    files["big-fleet-bidi-at-end-10mb.yaml"] = (fleet + "- key: last\n  name: \u202eknaB\n", "bidirectional")
    files["big-alias-bomb-padded-10mb.yaml"] = (
        "# " + "p" * TEN_MB + "\n" + "a: &a [x, x]\nb: [*a, *a]\n",
        "anchors",
    )
    out = {}
    for name, (content, expect) in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / name).write_bytes(data)
        out[name] = (expect, [])
    return out


if __name__ == "__main__":
    corpus = generate()
    corpus.write(HERE)
    print(f"wrote {len(corpus.files)} files to {HERE}", file=sys.stderr)
