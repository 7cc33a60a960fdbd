"""Fast start: a command imports what it needs and nothing else (issue 11, item 6).

Checked by the set of modules a fresh interpreter ends up with, never by wall-clock time: the test
suite runs hundreds of CLI subprocesses, and `lifecycle --help` or a tick with nothing due must not pay
for the web, Celery, the mail and channel libraries or alembic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Libraries only some commands need: never imported by `--help`, nor by a tick with nothing to send.
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "celery",
    "kombu",
    "sendgrid",
    "python_http_client",
    "icalendar",
    "jinja2",
    "cryptography",
    "slack_sdk",
    "standardwebhooks",
    "email_validator",
    "alembic",
    "yaml",
)


def _modules(code: str, cwd=None, env=None) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    return {name.split(".")[0] for name in json.loads(proc.stdout.splitlines()[-1])}


def test_help_imports_no_command_and_no_database_layer():
    loaded = _modules("import lifecycle.cli as c; c._prepare(['--help'])")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "sqlalchemy" not in loaded and "sqlmodel" not in loaded


def test_tick_imports_no_web_celery_mail_or_channel_library():
    loaded = _modules("import lifecycle.cli as c; c._prepare(['tick']); import lifecycle.ticks")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_tick_with_nothing_due_runs_without_them(cli, tmp_path):
    """The real command, run again the same day: answered from the idle note (lifecycle.idle) it imports
    no database layer at all; run in full (no note) it imports none of the heavy libraries either."""

    def tick(at: str) -> set[str]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "lifecycle", "tick", "--at", at],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return {
            line.split("|")[-1].strip().split(".")[0]
            for line in proc.stderr.splitlines()
            if line.startswith("import time:")
        }

    assert cli("tick", "--at", "2027-01-02T06:00").code == 0
    loaded = tick("2027-01-02T07:00")
    assert "lifecycle" in loaded  # the probe sees imports at all
    assert not loaded & {*HEAVY, "sqlalchemy", "sqlmodel", "pydantic", "typer", "click"}, sorted(loaded)
    for note in (tmp_path / "state").glob("quiet-*.json"):
        note.unlink()
    loaded = tick("2027-01-02T08:00")
    assert "sqlmodel" in loaded
    # icalendar comes with lifecycle.calendar.exports, which the tick asks whether the day changed
    assert not loaded & (set(HEAVY) - {"icalendar"}), sorted(loaded & set(HEAVY))


def test_a_command_imports_only_its_own_area():
    loaded = _modules("import lifecycle.cli as c; c._prepare(['milestone', 'list'])")
    assert "lifecycle" in loaded
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import lifecycle.cli as c, sys; c._prepare(['milestone']); "
            "print(sorted(m for m in sys.modules if m.startswith('lifecycle.cli.')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "lifecycle.cli.web" not in proc.stdout and "lifecycle.cli.schedule" not in proc.stdout
    assert "lifecycle.cli.registry" in proc.stdout


CHECK_TABLE = r"""
import importlib, inspect, json
from lifecycle import cli
seen_c = seen_g = 0
found = []
for module in cli.MODULES:
    importlib.import_module(f"lifecycle.cli.{module}")
    for c in cli.app.registered_commands[seen_c:]:
        found.append([c.name, module, inspect.cleandoc(c.callback.__doc__).split("\n\n")[0]])
    for g in cli.app.registered_groups[seen_g:]:
        found.append([g.name, module, g.typer_instance.info.help])
    seen_c, seen_g = len(cli.app.registered_commands), len(cli.app.registered_groups)
print(json.dumps(found))
"""


def test_the_command_table_matches_the_modules():
    """COMMANDS (what `lifecycle --help` lists without importing) says what the modules register."""
    from lifecycle import cli

    proc = subprocess.run(
        [sys.executable, "-c", CHECK_TABLE], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(proc.stdout)
    commands = [name for name, _module, _text in found if name in dict(cli.COMMANDS)]
    assert sorted(commands) == sorted(cli.COMMANDS), "a command is missing from lifecycle.cli.COMMANDS"
    for name, module, text in found:
        modules, help_text = cli.COMMANDS[name]
        assert module == modules[0], f"{name} is registered by lifecycle.cli.{module}"
        assert help_text == text, f"the help of {name!r} in COMMANDS differs from its module's"


def test_help_lists_what_the_eager_app_lists(cli):
    """`lifecycle --help` (nothing imported) prints what the app with every module imported prints."""
    eager = subprocess.run(
        [
            sys.executable,
            "-c",
            "import lifecycle.cli as c; c._register(); "
            "c.app(args=['--help'], prog_name='python -m lifecycle')",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    lazy = cli("--help")
    assert lazy.code == 0 and eager.returncode == 0, (lazy, eager.stderr)
    assert "deployment" in lazy.out and "channel" in lazy.out
    assert lazy.out == eager.stdout


@pytest.mark.parametrize("args", [["--help"], ["report", "--help"], ["tick", "--help"]])
def test_help_pages_answer(cli, args):
    result = cli(*args)
    assert result.code == 0, result
    assert "Usage:" in result.out and "--help" in result.out


def test_an_unknown_command_is_bad_input(cli):
    result = cli("nosuch")
    assert result.code == 2 and "No such command" in result.err, result
