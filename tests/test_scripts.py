"""The README's two commands as a user runs them: from wherever their shell is."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.paths import ROOT


def test_the_demo_takes_relative_paths_from_where_it_was_run(tmp_path: Path) -> None:
    """``scripts/demo --alerts-out alerts.jsonl`` run from another folder wrote the file into
    the checkout (the script moved there first), where the user did not look."""
    done = subprocess.run(
        [ROOT / "scripts" / "demo", "--speed", "max", "--serve", "off", "--mqtt", "off",
         "--no-progress", "--db", "sqlite:///demo.db", "--alerts-out", "alerts.jsonl"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"store: SQLite (WAL) at {tmp_path / 'demo.db'}" in done.stderr
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 139  # the demo log's alert transitions (README: "The demo port")
    assert not (ROOT / "alerts.jsonl").exists()
