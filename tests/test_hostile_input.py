"""Hostile import files are refused fast: exit code 2, the file or path named, no traceback, nothing written.

The corpus is tests/data/hostile/ (written by its make_corpus.py; manifest.json gives each file the
fragment its error must contain), plus 10 MB files written at test time. Every file goes through
`lifecycle.cli.main`, the code path of the command, against a database holding the example registry,
whose dump must not change; a sample, with the 10 MB files and the bombs, also runs as a real
subprocess, and its per-file times are printed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from lifecycle import cli, loader
from lifecycle import db as dbmod
from lifecycle import validation as v
from lifecycle.config import reset_settings
from lifecycle.errors import InputError, InputErrors
from tests.conftest import DATA, ROOT
from tests.data.hostile import make_corpus

HOSTILE = DATA / "hostile"
MANIFEST = json.loads((HOSTILE / "manifest.json").read_text())
AT = "2026-12-01"
EXAMPLE = ROOT / "examples" / "registry.yaml"
TIMES: dict[str, float] = {}  # in-process seconds per file, printed at the end of the module
GENEROUS = 10.0  # seconds: catches a hang, not a slow machine (performance is measured, not asserted)


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """`lifecycle ARGS` in this process, as the console script runs it."""
    try:
        cli.main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover - main always exits
        code = 0
    out = capsys.readouterr()
    return code, out.out, out.err


def sqlite_dump(url: str) -> str:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return "\n".join(conn.iterdump())


def table_dump(url: str) -> str:
    """Every row of every table, in a stable order (PostgreSQL has no iterdump)."""
    engine = dbmod.get_engine(url, check=False)
    lines = []
    with engine.connect() as conn:
        for table in sorted(sa.inspect(conn).get_table_names()):
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            lines += [f"{table}: {row}" for row in sorted(map(repr, rows))]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def seeded_file(sqlite_template, tmp_path_factory) -> Path:
    """A database holding the example registry: a lenient import of a hostile file would change it."""
    path = tmp_path_factory.mktemp("hostile") / "seeded.db"
    shutil.copy(sqlite_template, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_DATABASE_URL", f"sqlite:///{path}")
        reset_settings()
        env = {**os.environ, "LIFECYCLE_DATABASE_URL": f"sqlite:///{path}"}
        subprocess.run(
            [sys.executable, "-m", "lifecycle", "import", str(EXAMPLE), "--at", AT],
            env=env,
            check=True,
            capture_output=True,
        )
    reset_settings()
    return path


@pytest.fixture
def seeded(seeded_file, tmp_path, monkeypatch) -> str:
    path = tmp_path / "lifecycle.db"
    shutil.copy(seeded_file, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", url)
    reset_settings()
    yield url
    dbmod.dispose_engines()


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("big")
    return folder, make_corpus.big_files(folder)


@pytest.fixture(scope="module", autouse=True)
def _report_times(request):
    yield
    if TIMES:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        slowest = max(TIMES, key=TIMES.get)
        line = (
            f"hostile corpus in-process: {len(TIMES)} files, median {statistics.median(TIMES.values()):.3f} s, "
            f"max {TIMES[slowest]:.3f} s ({slowest})"
        )
        if reporter:
            reporter.write_line("")
            reporter.write_line(line)


def assert_refused(path: Path, expect: str, code: int, err: str) -> None:
    assert code == 2, f"{path.name}: exit {code}\n{err}"
    assert "Traceback" not in err and "LIFECYCLE_DEBUG" not in err, err
    assert path.name in err, f"{path.name} is not named:\n{err[:2000]}"
    assert expect in err, f"{path.name}: expected {expect!r} in:\n{err[:2000]}"


# ------------------------------------------------------------------------------------------ corpus


def test_the_corpus_has_at_least_300_files_and_is_what_the_generator_writes():
    files = {p.name for p in HOSTILE.iterdir()} - {
        "make_corpus.py",
        "manifest.json",
        "__init__.py",
        "__pycache__",
    }
    assert files == set(MANIFEST) and len(files) >= 300
    generated = make_corpus.generate().files
    assert set(generated) == files
    assert all((HOSTILE / name).read_bytes() == data for name, (data, _, _) in generated.items())


def test_the_corpus_base_documents_import_cleanly(seeded, tmp_path, capsys):
    """Each hostile file breaks one thing in a valid document: the documents themselves import."""
    registry, eol = tmp_path / "base.yaml", tmp_path / "base-eol.json"
    registry.write_text(make_corpus.base_yaml())
    eol.write_text(json.dumps(make_corpus.EOL_BASE))
    assert run_main(["import", registry, "--at", AT], capsys)[0] == 0
    assert run_main(["import", eol, *make_corpus.EOL_ARGS, "--at", AT], capsys)[0] == 0


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_a_hostile_file_exits_2_naming_the_file_and_writes_nothing(name, seeded, capsys):
    path = HOSTILE / name
    before = sqlite_dump(seeded)
    started = time.perf_counter()
    code, _, err = run_main(["import", path, "--at", AT, *MANIFEST[name]["args"]], capsys)
    TIMES[name] = elapsed = time.perf_counter() - started
    assert_refused(path, MANIFEST[name]["expect"], code, err)
    assert elapsed < GENEROUS, f"{name} took {elapsed:.1f} s"
    assert sqlite_dump(seeded) == before


BIG = [
    "big-name-10mb.yaml",
    "big-name-10mb.json",
    "big-deep-10mb.yaml",
    "big-deep-10mb.json",
    "big-zeros-top-10mb.yaml",
    "big-zeros-products-10mb.yaml",
    "big-zeros-products-10mb.json",
    "big-keys-10mb.yaml",
    "big-nul-10mb.yaml",
    "big-random-10mb.json",
    "big-fleet-truncated-10mb.yaml",
    "big-fleet-alias-at-end-10mb.yaml",
    "big-alias-bomb-padded-10mb.yaml",
]


@pytest.mark.parametrize("name", BIG)
def test_a_hostile_10_mb_file_exits_2_and_writes_nothing(name, big, seeded, capsys):
    folder, files = big
    expect, args = files[name]
    before = sqlite_dump(seeded)
    started = time.perf_counter()
    code, _, err = run_main(["import", folder / name, "--at", AT, *args], capsys)
    TIMES[name] = elapsed = time.perf_counter() - started
    assert_refused(folder / name, expect, code, err)
    assert elapsed < GENEROUS * 2, f"{name} took {elapsed:.1f} s"
    assert sqlite_dump(seeded) == before


def test_a_10_mb_file_valid_up_to_its_last_line_is_refused_and_writes_nothing(big, seeded, capsys):
    """It costs what reading and checking a valid 10 MB file costs (every customer is validated before
    the last one is found wrong): measured and printed, bounded only against a hang."""
    folder, files = big
    name = "big-fleet-bidi-at-end-10mb.yaml"
    before = sqlite_dump(seeded)
    started = time.perf_counter()
    code, _, err = run_main(["import", folder / name, "--at", AT], capsys)
    elapsed = time.perf_counter() - started
    assert_refused(folder / name, files[name][0], code, err)
    assert f"customers[{make_corpus.FLEET_CUSTOMERS}].name: contains the bidirectional" in err
    assert elapsed < 120, f"{name} took {elapsed:.1f} s"
    assert sqlite_dump(seeded) == before
    with capsys.disabled():
        print(f"\n{name}: refused in {elapsed:.1f} s")


def test_a_file_over_the_configured_size_is_refused_before_it_is_read(seeded, tmp_path, monkeypatch, capsys):
    path = tmp_path / "registry.yaml"
    path.write_text(make_corpus.base_yaml())
    monkeypatch.setenv("LIFECYCLE_IMPORT_MAX_BYTES", "100")
    reset_settings()
    code, _, err = run_main(["import", path, "--at", AT], capsys)
    assert_refused(path, "LIFECYCLE_IMPORT_MAX_BYTES", code, err)


SAMPLE = [
    "alias-billion-laughs.yaml",
    "alias-quadratic.yaml",
    "alias-bomb-12-levels.yaml",
    "deep-flow-list-100000.yaml",
    "deep-json-list-100000.json",
    "nul-in-name.yaml",
    "binary-issue-8.yaml",
    "encoding-utf-16-le-no-bom.yaml",
    "surrogate-high.json",
    "number-inf-cores.yaml",
    "integer-5000-digits.yaml",
    "type-name-is-mapping-issue-9.yaml",
    "type-key-true-issue-9.yaml",
    "dup-flow-one-line.yaml",
    "date-milestone-week.yaml",
    "date-milestone-compact.yaml",
    "truncated-alauda-co.yaml",
    "bidi-customer-name-202e.yaml",
    "eol-releaseDate-compact.json",
]
BIG_SAMPLE = [
    "big-name-10mb.yaml",
    "big-deep-10mb.yaml",
    "big-zeros-products-10mb.yaml",
    "big-keys-10mb.yaml",
    "big-fleet-truncated-10mb.yaml",
    "big-alias-bomb-padded-10mb.yaml",
    "big-random-10mb.json",
]


def test_a_sample_exits_2_as_a_real_command_and_the_times_are_reported(cli, seeded, big, capsys):
    folder, files = big
    cases = [(HOSTILE / n, MANIFEST[n]["expect"], MANIFEST[n]["args"]) for n in SAMPLE]
    cases += [(folder / n, *files[n]) for n in BIG_SAMPLE]
    before = sqlite_dump(seeded)
    times = {}
    for path, expect, args in cases:
        started = time.perf_counter()
        r = cli("import", path, "--at", AT, *args, env={"LIFECYCLE_DATABASE_URL": seeded})
        times[path.name] = time.perf_counter() - started
        assert_refused(path, expect, r.code, r.err)
        assert times[path.name] < GENEROUS * 2, f"{path.name} took {times[path.name]:.1f} s"
    assert sqlite_dump(seeded) == before
    with capsys.disabled():
        print(
            f"\nhostile sample as subprocesses: {len(times)} files, median "
            f"{statistics.median(times.values()):.2f} s, max {max(times.values()):.2f} s "
            f"({max(times, key=times.get)}); " + ", ".join(f"{n} {t:.2f}" for n, t in sorted(times.items()))
        )


PG_SAMPLE = SAMPLE + [
    "dup-json-nested.json",
    "type-customer.service-list.json",
    "truncated-registry-50.json",
    "tag-python-apply.yaml",
    "control-raw-1b.yaml",
]


def test_hostile_files_write_nothing_on_either_database(db, capsys):
    assert run_main(["import", EXAMPLE, "--at", AT], capsys)[0] == 0
    before = table_dump(db)
    for name in PG_SAMPLE:
        code, _, err = run_main(["import", HOSTILE / name, "--at", AT, *MANIFEST[name]["args"]], capsys)
        assert_refused(HOSTILE / name, MANIFEST[name]["expect"], code, err)
    assert table_dump(db) == before


def test_a_valid_10_mb_registry_file_is_read(tmp_path):
    """The size limit is not the problem: the reference fleet is a 10 MB file and must import."""
    path = tmp_path / "fleet.yaml"
    path.write_text(make_corpus.fleet_yaml(make_corpus.FLEET_CUSTOMERS))
    assert path.stat().st_size > make_corpus.TEN_MB
    data = loader.load_file(path)
    assert len(data["customers"]) == make_corpus.FLEET_CUSTOMERS
    assert data["customers"][-1]["key"] == f"hx-{make_corpus.FLEET_CUSTOMERS - 1:07d}"


# ------------------------------------------------------------------------------ loader and validators


def load_yaml(text: str):
    return loader.load_bytes(text.encode(), source="t.yaml", fmt="yaml", is_file=True)


def test_plain_yaml_values_follow_the_strict_schema():
    data = load_yaml(
        "a: 010\nb: 0x1f\nc: 1_000\nd: 1:30\ne: 2027-W26\nf: 2027-06-30 10:00\ng: 2027-06-30\n"
        "h: 12\ni: 1.5\nj: yes\nk: ~\nl: '12'\n3.10: key as written\non: too\n"
    )
    assert data == {
        "a": "010",
        "b": "0x1f",
        "c": "1_000",
        "d": "1:30",
        "e": "2027-W26",
        "f": "2027-06-30 10:00",
        "g": dt.date(2027, 6, 30),
        "h": 12,
        "i": 1.5,
        "j": True,
        "k": None,
        "l": "12",
        "3.10": "key as written",
        "on": "too",
    }


def test_two_equal_keys_on_one_line_are_refused_naming_the_lines():
    with pytest.raises(InputErrors) as err:
        load_yaml("x: 1\ncustomers: [{a: 1, a: 2}]\nx: 2\n")
    assert [str(e) for e in err.value.errors] == [
        "t.yaml, line 2: duplicate key 'a' (first given at line 2)",
        "t.yaml, line 3: duplicate key 'x' (first given at line 1)",
    ]


def test_a_yaml_file_without_a_final_line_break_is_refused_as_possibly_truncated_but_a_body_is_not():
    with pytest.raises(InputError, match="truncated"):
        load_yaml("products:\n  - slug: acp\n    name: Alauda Co")
    body = loader.load_bytes(b"products: [{slug: acp, name: Alauda}]", source="body", fmt="yaml")
    assert body["products"][0]["name"] == "Alauda"


def test_the_real_example_files_still_load():
    for path in [
        EXAMPLE,
        *sorted((DATA / "import").iterdir()),
        *sorted((DATA / "endoflife").rglob("*.json")),
    ]:
        assert isinstance(loader.load_file(path), dict), path


@pytest.mark.parametrize("value", [{"a": 1}, [1], True, False, 3.5, None])
def test_a_name_must_be_text(value):
    with pytest.raises(InputError) as err:
        v.name(value, "customers[3].name")
    assert err.value.field == "customers[3].name"
    assert "expected text" in err.value.message or "empty" in err.value.message


@pytest.mark.parametrize(
    "value",
    [
        "2027-W26",
        "2027-W26-1",
        "20270630",
        "2027-181",
        "2027-06-30T00:00:00",
        "2027-6-30",
        20270630,
        dt.datetime(2027, 6, 30),
        True,
    ],
)
def test_a_date_is_a_date_or_yyyy_mm_dd_only(value):
    with pytest.raises(InputError):
        v.date(value, "released")
    assert v.date(" 2027-06-30 ") == v.date(dt.date(2027, 6, 30))


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"])
def test_bidirectional_controls_are_refused_in_names_emails_and_text(char):
    for check, value in (
        (v.name, f"HX{char}Bank"),
        (v.email, f"ops@hx{char}bank.example"),
        (v.text, f"fine{char}"),
        (v.reason, f"{char}security"),
    ):
        with pytest.raises(InputError, match="bidirectional|invalid email"):
            check(value, "field")


@pytest.mark.parametrize("value", [True, False, {"v": 1}, ["1.0"], dt.date(2027, 1, 1)])
def test_booleans_and_containers_are_never_keys_slugs_or_versions(value):
    for check in (v.customer_key, v.slug, v.version):
        with pytest.raises(InputError):
            check(value, "field")
    assert v.version(4) == "4" and v.customer_key(1001) == "1001"


def test_the_json_depth_check_counts_brackets_outside_strings_only():
    fine = ('{"a": "' + "[" * 500 + '", "b": [[["]]]]]]"]]]}').encode()
    assert loader.parse_json_bytes(fine, max_bytes=10_000) == {"a": "[" * 500, "b": [[["]]]]]]"]]]}
    assert loader.load_bytes(fine, source="body")["a"] == "[" * 500
    for deep in (b"[" * 65 + b"]" * 65, b'{"a": ' * 65 + b"1" + b"}" * 65, b"[{" * 33 + b"}]" * 33):
        with pytest.raises(InputError, match="nested deeper than 64"):
            loader.parse_json_bytes(deep, max_bytes=10_000)
    assert loader.parse_json_bytes(b"[" * 64 + b"]" * 64, max_bytes=10_000) is not None
