"""QA regressions for bad input found by trying the CLI as a new user: exit 2 naming the field, no traceback."""

import pytest

from lifecycle import validation
from lifecycle.errors import InputError


@pytest.mark.parametrize("name", ["Europe", "Etc", "America"])
def test_a_timezone_folder_name_is_bad_input(name):
    with pytest.raises(InputError) as exc:
        validation.timezone(name)
    assert exc.value.field == "timezone"


def test_an_impossible_unquoted_yaml_date_is_bad_input_naming_where(cli, tmp_path):
    f = tmp_path / "registry.yaml"
    f.write_text(
        "products:\n  - slug: x\n    name: X\n    releases:\n      - version: '1'\n"
        "        milestones: {end-of-life: 2027-06-31}\n"
    )
    r = cli("import", f, "--at", "2026-01-01")
    assert r.code == 2, r
    assert "line 6" in r.err or "end-of-life" in r.err, r
