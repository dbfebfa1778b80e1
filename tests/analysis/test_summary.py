"""`tf2bench compare --summary FILE` / `--format markdown` (issue 21.3): the verdict as a short markdown block for
$GITHUB_STEP_SUMMARY or a pull-request comment, appended, never truncating the file.

Runs are fixture 0001 (cifar100, five loops, 6 rounds each) with each run's rounds scaled by a small factor (a quiet
machine's run-to-run scatter), so the gate has a measured history; the current run slows tf_data down.
"""

from __future__ import annotations

import json
import re

import numpy as np
from conftest import run_series

from tf2bench.analysis import compare, render, report, summary
from tf2bench.cli import main
from tf2bench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

TF_DATA = "cifar100/functional/tf_data"


def quiet_runs(folder, n, slow_tf_data=1.0):
    """n runs of fixture 0001 at factors ~1 +- 1% (seeded); the last one's tf_data x slow_tf_data."""
    factors = np.exp(np.random.default_rng(3).normal(0.0, 0.01, n))

    def rounds(k, bench):
        slow = slow_tf_data if k == n - 1 and bench["extra_info"]["loop"] == "tf_data" else 1.0
        return [t * factors[k] * slow for t in bench["stats"]["data"]]

    return run_series(folder, n, rounds)


def test_a_regression_block_names_it_with_its_limit_and_the_fastest_equivalent_loop(tmp_path):
    runs = quiet_runs(tmp_path, 7, slow_tf_data=3.0)
    base, cur, history = runs[-2], runs[-1], runs[:-1]
    cmp = compare.compare(base, cur, history=history)
    assert list(cmp.regressions["benchmark"]) == [TF_DATA]
    fastest = render.fastest_equivalent(report.build([cur]))
    block = summary.markdown(cmp, base, cur, 10.0, fastest_lines=summary.fastest(cur))
    lines = block.splitlines()
    assert lines[0] == "### tf2bench compare"
    change = float(cmp.regressions["change_pct"].iloc[0])
    assert lines[2] == f"❌ **1 regression(s)** of 5 loop(s) (threshold 10%): `{TF_DATA}` {change:+.1f}%"
    row = next(line for line in lines if line.startswith(f"| `{TF_DATA}` |"))  # the regressions table (then details)
    detects = float(cmp.regressions["detects_pct"].iloc[0])
    assert row.split(" | ")[1:2] == [f"{change:+.1f}%"]
    assert f">= {detects:.0f}%" in row
    assert "#### Fastest equivalent loop (current run)" in block
    assert fastest
    assert all(f"- {line}" in lines for line in fastest)
    # the whole table folded: every loop, names as inline code (a pooled loop's '*' is not emphasis)
    details = block[block.index("<details>") : block.index("</details>")]
    assert sum(line.startswith("| `cifar100/functional/") for line in details.splitlines()) == 5
    assert all(f"- {n}" in details for n in cmp.notes)


def test_a_pass_says_what_it_means(tmp_path):
    runs = quiet_runs(tmp_path, 7)
    cmp = compare.compare(runs[-2], runs[-1], history=runs[:-1])
    assert cmp.regressions.empty
    block = summary.markdown(cmp, runs[-2], runs[-1], 10.0)
    d = cmp.table["detects_pct"]
    assert (
        f"✅ **no regression** in 5 loop(s) (threshold 10%; each could detect >= {d.min():.0f}-{d.max():.0f}%" in block
    )
    assert "#### Regressions" not in block
    assert "> ⚠️" not in block  # a measured history: no cold-start warning


def test_a_cold_start_is_a_warning_in_the_block(tmp_path):
    runs = quiet_runs(tmp_path, 2, slow_tf_data=3.0)
    cmp = compare.compare(runs[0], runs[1], history=runs[:1])
    block = summary.markdown(cmp, runs[0], runs[1], 10.0)
    assert "⚠️ **not gated yet**: 5 loop(s), none can fail the gate (threshold 10%)" in block
    (warning,) = [line for line in block.splitlines() if line.startswith("> ⚠️")]
    assert "not gated yet: 1 run(s) of this machine up to the baseline" in warning
    change = float(cmp.table.set_index("benchmark").loc[TF_DATA, "change_pct"])
    assert f"Slower but not counted: `{TF_DATA}` {change:+.1f}% (slower, not gated yet)" in block


def test_cli_appends_the_block_and_keeps_its_exit_codes(tmp_path, capsys):
    runs = quiet_runs(tmp_path / "runs", 7, slow_tf_data=3.0)
    target = tmp_path / "step_summary.md"
    target.write_text("earlier step's summary\n")
    args = ["compare", str(runs[-2].path), str(runs[-1].path), "--summary", str(target)]
    assert main(args) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "note: " in out  # the terminal output is unchanged
    assert f"REGRESSION: {TF_DATA}" in out
    assert main(args) == EXIT_FAILED
    capsys.readouterr()
    text = target.read_text()
    assert text.startswith("earlier step's summary\n\n### tf2bench compare\n")
    assert text.count("### tf2bench compare") == 2  # appended, never truncated
    assert main([*args[:3], "--format", "markdown"]) == EXIT_FAILED
    printed = capsys.readouterr().out
    assert printed.startswith("### tf2bench compare")
    assert not re.search(r"^note: ", printed, re.M)  # the block alone
    assert main(["compare", str(runs[-3].path), str(runs[-2].path), "--format", "markdown"]) == EXIT_OK
    assert "✅ **no regression**" in capsys.readouterr().out


def test_an_unwritable_summary_is_one_line_exit_2(tmp_path, capsys):
    runs = quiet_runs(tmp_path / "runs", 3)
    rc = main(["compare", str(runs[0].path), str(runs[1].path), "--summary", str(tmp_path)])  # a directory
    assert rc == EXIT_BAD_INPUT
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"tf2bench: error: {tmp_path}: cannot append the summary")


def test_each_regression_gets_the_explanation_when_the_explain_module_is_there(tmp_path):
    """Without profiles (these runs have none) the explanation says what to re-run; the block shows it as given."""
    from tf2bench.analysis import explain

    runs = quiet_runs(tmp_path, 7, slow_tf_data=3.0)
    base, cur = runs[-2], runs[-1]
    cmp = compare.compare(base, cur, history=runs[:-1])
    explained = summary.explanations(cmp, base, cur)
    (expl,) = explain.for_comparison(cmp, base, cur)
    assert explained == {TF_DATA: explain.markdown(expl)}
    block = summary.markdown(cmp, base, cur, 10.0, explained=explained)
    assert f"**Why `{TF_DATA}` got slower**\n\n{explain.markdown(expl).strip()}" in block
    json.dumps(expl)  # what it rests on is plain data
