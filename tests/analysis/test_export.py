"""`tf2bench export --format github-action-benchmark` (issue 21.3), checked against the format's documented fields.

benchmark-action/github-action-benchmark's README: for customBiggerIsBetter / customSmallerIsBetter "every entry
in the JSON file you provide only needs to provide name, unit, and value. You can also provide optional range
(results' variance) and extra (any additional information ...)". Its src/extract.ts parses the file with
JSON.parse and each entry as {name: string, value: number, range?: string, unit: string, extra?: string}; its
extractRangeInfo reads a range as "±" or "+-" followed by a number (then converts it with the unit).
"""

from __future__ import annotations

import json
import math
import re

import pytest
from conftest import STORAGE, edited, fixture

from tf2bench.analysis import export, report, runs
from tf2bench.cli import main
from tf2bench.errors import EXIT_BAD_INPUT, EXIT_OK, BadInputError

REQUIRED = {"name": str, "unit": str, "value": (int, float)}
OPTIONAL = {"range": str, "extra": str}
RANGE = re.compile(r"(?P<prefix>(\+-|±)\s*)(?P<value>\d.*)")  # extractRangeInfo's pattern

# The README's own example for the custom tools (verbatim data): the checker below must accept it.
README_EXAMPLE = """[
    {"name": "My Custom Smaller Is Better Benchmark - CPU Load", "unit": "Percent", "value": 50},
    {"name": "My Custom Smaller Is Better Benchmark - Memory Used", "unit": "Megabytes", "value": 100,
     "range": "3", "extra": "Value for Tooltip: 25\\nOptional Num #2: 100\\nAnything Else!"}
]"""


def problems(text: str) -> list[str]:
    """What the action would reject in a custom-tool file (empty: it reads every entry)."""
    try:
        doc = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN/Infinity
    except ValueError as exc:
        return [f"not JSON.parse-able: {exc}"]
    if not isinstance(doc, list) or not doc:
        return ["not a non-empty JSON list"]
    out = []
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            out.append(f"entry {i} is not an object")
            continue
        for key, kind in REQUIRED.items():
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                out.append(f"entry {i}: {key} missing or not {kind}")
        for key, kind in OPTIONAL.items():
            if key in entry and not isinstance(entry[key], kind):
                out.append(f"entry {i}: {key} is not {kind}")
        out += [f"entry {i}: unknown field {k}" for k in set(entry) - set(REQUIRED) - set(OPTIONAL)]
    return out


def test_the_checker_takes_the_readme_example_and_rejects_what_the_action_would():
    assert problems(README_EXAMPLE) == []
    assert problems('[{"name": "x", "unit": "s"}]') == [
        "entry 0: value missing or not (<class 'int'>, <class 'float'>)"
    ]
    assert problems('[{"name": "x", "unit": "s", "value": NaN}]')[0].startswith("not JSON.parse-able")
    assert problems('[{"name": "x", "unit": "s", "value": 1, "range": 3}]') == ["entry 0: range is not <class 'str'>"]


@pytest.mark.parametrize(("metric", "column", "unit"), [("samples-per-sec", "samples_per_sec", "samples/s"),
                                                          ("step-time", "step_time_ms", "ms")])  # fmt: skip
def test_each_benchmark_of_a_real_run_in_the_documented_fields(metric, column, unit):
    run = runs.load(fixture("0003"))
    items, skipped = export.entries(run, metric)
    text = export.dumps(items)
    assert problems(text) == []
    assert not skipped
    df = report.build([run])
    assert [e["name"] for e in items] == [f"{r.workload}/{r.api}/{r.loop}" for r in df.itertuples()]
    assert len({e["name"] for e in items}) == len(items)  # one chart per benchmark
    for entry, r in zip(items, df.itertuples(), strict=True):
        assert entry["unit"] == unit
        # the report's figure, kept to 5 significant digits (rounds vary by percents)
        assert entry["value"] == pytest.approx(getattr(r, column), rel=5e-5)
        m = RANGE.match(entry["range"])
        assert m, entry["range"]
        assert float(m["value"]) == pytest.approx(r.cv * getattr(r, column), rel=5e-3)
        assert f"rounds: {r.rounds}" in entry["extra"]
        assert f"run: {run.run_id}" in entry["extra"]


def test_a_benchmark_without_a_figure_is_left_out_and_named(tmp_path):
    def no_rounds(doc):  # every repeat of eager saved without a window time
        for bench in doc["benchmarks"]:
            if bench["extra_info"]["loop"] == "eager":
                bench["stats"]["data"] = []
                bench["extra_info"].pop("window_s", None)

    run = runs.load(edited(fixture("0003"), tmp_path, no_rounds))
    items, skipped = export.entries(run)
    name = "mnist/functional/eager"
    assert skipped == [name]
    assert name not in {e["name"] for e in items}
    assert all(math.isfinite(e["value"]) for e in items)
    with pytest.raises(BadInputError, match="unknown --metric 'ops'; valid: samples-per-sec, step-time"):
        export.entries(run, "ops")


def test_cli_writes_the_file_and_names_the_tool(tmp_path, capsys):
    out = tmp_path / "bench" / "tf2bench.json"
    rc = main(["export", str(out), "0003", "--storage", str(STORAGE), "--format", "github-action-benchmark"])
    assert rc == EXIT_OK
    said = capsys.readouterr().out
    assert "tool: 'customBiggerIsBetter'" in said
    assert problems(out.read_text()) == []
    rc = main(["export", str(out), "0003", "--storage", str(STORAGE), "--metric", "step-time"])
    assert rc == EXIT_OK
    assert "tool: 'customSmallerIsBetter'" in capsys.readouterr().out
    assert {e["unit"] for e in json.loads(out.read_text())} == {"ms"}  # replaced whole
    assert main(["export", str(out), "0042", "--storage", str(STORAGE)]) == EXIT_BAD_INPUT
    assert "no run 0042" in capsys.readouterr().err
    assert main(["export", str(out), "--format", "csv"]) == EXIT_BAD_INPUT  # argparse names the valid choices
    assert "invalid choice: 'csv'" in capsys.readouterr().err
