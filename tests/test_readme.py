"""The README stays true: its register table is generated, its commands are the real ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
START = "<!-- register-table:start -->\n"
END = "<!-- register-table:end -->"


def test_register_table_matches_the_default_map() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "gateway", "docs", "register_map.yaml", "--format", "md"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=30,
    ).stdout
    assert START in README
    assert END in README
    shown = README[README.index(START) + len(START) : README.index(END)]
    assert shown == generated, (
        "README register table is out of date: run "
        "`python -m gateway docs register_map.yaml --format md` and paste the output "
        "between the register-table markers"
    )


def test_set_up_commands_are_the_documented_ones() -> None:
    assert "pip install . && tuya-modbus-gateway run --link sim:// --tcp 127.0.0.1:5020" in README
    # .ci/run takes the line two lines after the marker: it must be the test command.
    lines = README.splitlines()
    marker = lines.index("<!-- test-command -->")
    assert lines[marker + 2] == "pip install -e '.[test]' && python -m pytest"


def test_every_documented_subcommand_exists() -> None:
    documented = set(re.findall(r"^\| `(\w+)", README, flags=re.MULTILINE))
    assert {"run", "simulate", "check", "docs", "schema", "discover", "sniff"} <= documented
    for name in documented:
        result = subprocess.run(
            [sys.executable, "-m", "gateway", name, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
            timeout=30,
        )
        assert result.returncode == 0, f"`{name}` is documented but not a command"
