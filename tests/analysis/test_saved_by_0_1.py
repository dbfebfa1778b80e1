"""Runs saved by tf2bench 0.1 (records before schema 3: ``variant``, ``variant_description``) still load in report,
compare and history: the committed fixtures are such runs, read as they were saved (STORAGE), never upgraded on disk."""

from __future__ import annotations

import json

import pytest
from conftest import STORAGE, committed

from tf2bench.analysis import report, runs
from tf2bench.cli import main
from tf2bench.errors import EXIT_OK


def test_the_fixtures_are_runs_of_the_old_schema():
    """What this module proves rests on it: the files still carry the old key names."""
    doc = json.loads(committed("0001").read_text())
    info = doc["benchmarks"][0]["extra_info"]
    assert info.get("schema_version", 1) < 3  # these predate the schema stamp: saved before it was written
    assert "variant" in info
    assert "loop" not in info


def test_a_schema_2_run_loads_with_its_keys_renamed():
    run = runs.load(committed("0001"), require_round_data=True)
    loops = [b["extra_info"]["loop"] for b in run.benchmarks]
    assert "fit" in loops
    assert not any("variant" in b["extra_info"] for b in run.benchmarks)
    assert set(report.build([run])["loop"]) == set(loops)


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "0001", "0002"],
        ["compare", "0001", "0002", "--no-history"],
        ["history"],
    ],
    ids=["report", "compare", "history"],
)
def test_report_compare_and_history_read_them(tmp_path, capsys, argv):
    rc = main([*argv, "--storage", str(STORAGE), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == EXIT_OK, out[-2000:]
    assert "fit" in out
    assert "variant" not in out
