"""The op-level explanation of a slowdown (tf2bench.analysis.explain), on hand-made profiles with known answers,
the per-op record it reads (measure.opstats), and compare's output (two real profiled runs: test_explain_profiles.py).

A hand-made profile is a benchmark record whose ``profile`` holds what ``profiling.summarise`` saves: the step
breakdown (ms per train step) and ``ops`` (every op's self time per train step). Op names are numbered as a
process that built other models first would number them, so matching them is part of every test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import edited, fixture

from tf2bench.analysis import explain, runs
from tf2bench.errors import EXIT_FAILED, BadInputError
from tf2bench.measure import opstats, profiling

CONV_FWD = "_MklNativeFusedConv2D"
CONV_FILTER = "_MklNativeConv2DBackpropFilterWithBias"
CONV_INPUT = "_MklNativeConv2DBackpropInput"


def mnist_ops(model: int, conv: float = 1.0, adam: int = 2) -> dict[str, tuple[str, float]]:
    """The MNIST CNN's main ops (ms per step) as process-numbered names: ``model`` is how many models the process
    built before (conv2d_{2m}_1, conv2d_{2m+1}_1, dense_{2m}_1 ...); ``conv`` scales the second convolution's ops."""
    m, d0 = f"mnist_functional_{model}", f"dense_{2 * model}_1"
    c0, c1 = f"conv2d_{2 * model}_1", f"conv2d_{2 * model + 1}_1"
    return {
        f"{m}/{c0}/Relu": (CONV_FWD, 0.8),
        f"{m}/{c1}/Relu": (CONV_FWD, 3.0 * conv),
        f"gradient_tape/{m}/{c0}/convolution/Conv2DBackpropFilter": (CONV_FILTER, 0.3),
        f"gradient_tape/{m}/{c1}/convolution/Conv2DBackpropFilter": (CONV_FILTER, 4.0 * conv),
        f"gradient_tape/{m}/{c1}/convolution/Conv2DBackpropInput": (CONV_INPUT, 3.5 * conv),
        f"gradient_tape/{m}/{d0}/MatMul/MatMul": ("_MklMatMul", 5.0),
        f"adam_{adam}/Sub": ("Sub", 1.0),
        f"adam_{adam}/Sqrt_9": ("Sqrt", 0.6),
    }


def record(
    ops: dict[str, tuple[str, float]],
    *,
    api: str = "functional",
    other: float = 0.1,
    sd: float = 0.05,
    steps: int = 10,
    timed: float | None = None,
    min_ms: float = 0.02,
    repeat: int = 0,
) -> dict:
    """A benchmark record with a profile whose step is its ops run one after another (one thread) plus ``other``."""
    host = sum(ms for _, ms in ops.values())
    step = host + other
    profile = {
        "steps": steps, "steps_measured": steps, "train_steps_measured": steps, "step_time_ms": step,
        "step_time_ms_stddev": sd, "host_compute_ms": host, "other_ms": other, "input_ms": 0.0,
        "device_compute_ms": 0.0, "unattributed_ms": 0.0, "trace_path": "/nowhere/host.xplane.pb",
        "ops": {
            "train_steps": steps, "min_share": 0.001, "min_ms": min_ms,
            "host": [{"op": n, "type": t, "self_ms_per_step": ms, "calls_per_step": 1.0} for n, (t, ms) in ops.items()],
            "device": [], "rest": {side: {"ops": 0, "self_ms_per_step": 0.0} for side in ("host", "device")},
        },
    }  # fmt: skip
    return {"workload": "mnist", "api": api, "loop": "tf_function", "repeat": repeat, "seed": 0,
            "step_time_ms": step if timed is None else timed, "profile": profile}  # fmt: skip


# ---- names ----------------------------------------------------------------------------------------------------------


def test_the_same_model_has_the_same_names_whatever_the_process_built_before():
    first, later = mnist_ops(model=1, adam=2), mnist_ops(model=3, adam=7)
    a, b = opstats.canonical_names(first), opstats.canonical_names(later)
    assert sorted(a.values()) == sorted(b.values())
    assert a["gradient_tape/mnist_functional_1/conv2d_3_1/convolution/Conv2DBackpropFilter"] == (
        "gradient_tape/mnist_functional/conv2d_1/convolution/Conv2DBackpropFilter"
    )
    assert b["adam_7/Sqrt_9"] == "adam/Sqrt_9"  # the op's own name: numbered by its graph, the same in every process
    assert len(set(a.values())) == len(a)  # never two ops under one name
    ranked = opstats.canonical_names(["s_3/MatMul/a", "s_3/MatMul_12/a", "s_3_1/x", "s_4/y", "z_5"])
    assert list(ranked.values()) == ["s/MatMul/a", "s/MatMul_1/a", "s_1/x", "s_2/y", "z_5"]


# ---- the diff -------------------------------------------------------------------------------------------------------


def test_a_wider_convolution_is_explained_by_its_convolution_ops():
    base, new = record(mnist_ops(1)), record(mnist_ops(3, conv=1.15, adam=7))
    e = explain.explain(base, new, top=10)
    assert e["status"] == "explained"
    assert e["benchmarks"] == e["pairs"] == 1
    step = e["step"]
    grown = 0.15 * (3.0 + 4.0 + 3.5)  # the second convolution's three ops, +15%
    assert step["delta_ms"] == pytest.approx(grown)
    top3 = e["ops"]["host"][:3]
    assert {r["op"].split("/")[-1] for r in top3} == {"Relu", "Conv2DBackpropFilter", "Conv2DBackpropInput"}
    assert all("/conv2d_1/" in r["op"] and r["change_pct"] == pytest.approx(15.0) for r in top3)
    # the shares are of the step's change: here the ops are the whole step, so they add up to 1
    assert sum(r["share"] for r in e["ops"]["host"]) == pytest.approx(1.0)
    assert len(e["ops"]["host"]) == 3  # the ops that did not change are not listed
    assert [t["type"] for t in e["types"]["host"][:3]] == [CONV_FILTER, CONV_INPUT, CONV_FWD]
    assert e["appeared"]["host"] == e["vanished"]["host"] == []
    assert e["parts"][0]["label"] == "host compute"
    assert e["parts"][0]["share"] == pytest.approx(1.0)
    assert e["notes"] == []
    json.dumps(e)  # plain JSON: bisect saves it


def test_a_host_round_trip_shows_as_host_time_beside_the_ops_that_appeared():
    trip_ops = {**mnist_ops(3), "AssignVariableOp": ("AssignVariableOp", 0.5)}
    trip_ops["ReadVariableOp_1"] = ("ReadVariableOp", 0.03)
    del trip_ops["adam_2/Sqrt_9"]
    base, new = record(mnist_ops(1)), record(trip_ops, other=6.1)
    e = explain.explain(base, new)
    assert e["step"]["delta_ms"] == pytest.approx(6.0 + 0.5 + 0.03 - 0.6)
    assert e["parts"][0]["part"] == "other_ms"
    assert e["parts"][0]["delta_ms"] == pytest.approx(6.0)
    assert [r["op"] for r in e["appeared"]["host"]] == ["AssignVariableOp"]  # 0.5 ms >= 2 x the 0.02 ms cut
    assert [r["op"] for r in e["vanished"]["host"]] == ["adam/Sqrt_9"]
    small = next(r for r in e["ops"]["host"] if r["op"] == "ReadVariableOp_1")
    assert small["status"] == "under the cut before"  # 0.03 ms: it may have run under the cut in the baseline


def api_ops(api: str, model: int, conv: float = 1.0) -> dict:
    """mnist_ops of the model written with another API: the same layers under the model name mnist_<api>."""
    return {k.replace("mnist_functional", f"mnist_{api}"): v for k, v in mnist_ops(model, conv).items()}


def pooled_pair(conv: tuple[float, float] = (1.3, 1.1)) -> tuple[list, list]:
    base = [record(api_ops("functional", 1)), record(api_ops("sequential", 2), api="sequential")]
    new = [record(api_ops("sequential", 5, conv[0]), api="sequential"), record(api_ops("functional", 4, conv[1]))]
    return base, new


def test_a_loop_pooled_over_apis_is_the_mean_of_its_pairs_under_one_model_name():
    base, new = pooled_pair()
    e = explain.explain(base, new)
    assert e["loop"] == "mnist/*/tf_function"
    assert e["benchmarks"] == 2
    top = e["ops"]["host"][0]
    assert top["op"] == "gradient_tape/<model>/conv2d_1/convolution/Conv2DBackpropFilter"
    assert top["delta_ms"] == pytest.approx(4.0 * (0.1 + 0.3) / 2)  # the mean of the two APIs' changes
    assert e["step"]["delta_ms"] == pytest.approx(10.5 * (0.1 + 0.3) / 2)
    alone = explain.explain(base[0], new[1])  # one API: its model's own name is kept
    assert alone["ops"]["host"][0]["op"] == "gradient_tape/mnist_functional/conv2d_1/convolution/Conv2DBackpropFilter"


def test_a_change_within_the_profiles_noise_or_unlike_the_timed_one_says_so():
    quiet = explain.explain(record(mnist_ops(1)), record(mnist_ops(1, conv=1.15)))
    assert quiet["notes"] == []
    noisy = explain.explain(record(mnist_ops(1), sd=3.0), record(mnist_ops(1, conv=1.15), sd=3.0))
    se = math.sqrt(2 * 3.0**2 / 10)
    assert noisy["step"]["se_ms"] == pytest.approx(se)
    assert "less than 2 standard errors" in noisy["notes"][0]
    assert "(--profile-steps 20)" in noisy["notes"][0]  # twice the window of 10 steps
    unlike = explain.explain(record(mnist_ops(1), timed=10.0), record(mnist_ops(1, conv=1.15), timed=13.0))
    assert unlike["timed"]["change_pct"] == pytest.approx(30.0)
    assert any("the timed rounds by +30%" in n for n in unlike["notes"])


# ---- without profiles -----------------------------------------------------------------------------------------------


def test_without_a_profile_it_says_what_to_re_run():
    plain = {**record(mnist_ops(1)), "profile": None}
    e = explain.explain(plain, record(mnist_ops(1)), base_label="0003 (commit abc1234)")
    assert e["status"] == "no profile"
    assert e["missing"] == [
        {"side": "baseline", "run": "0003 (commit abc1234)", "benchmark": "mnist/functional/tf_function",
         "why": "no profile (not run with --profile)"}
    ]  # fmt: skip
    (hint,) = e["rerun"]
    assert hint.startswith("baseline 0003 (commit abc1234): re-run with `pytest bench --profile --workload mnist")
    assert "--api functional --loop tf_function`" in hint
    assert "no profile to explain it with" in explain.lines(e)[0]
    failed = {**record(mnist_ops(1)), "profile": {"error": "ProfileError: another session", "trace_dir": "/t"}}
    assert "its profile failed: ProfileError: another session" in explain.explain(failed, failed)["missing"][0]["why"]
    # one repeat profiled, one not: explained from the one, the other named
    both = [record(mnist_ops(1)), record(mnist_ops(1), repeat=1)]
    half = explain.explain([record(mnist_ops(1)), {**plain, "repeat": 1}], both)
    assert (half["status"], half["benchmarks"], half["pairs"]) == ("explained", 1, 2)
    assert half["missing"][0]["benchmark"] == "mnist/functional/tf_function r1"


def test_an_older_record_is_read_again_from_its_kept_trace(tmp_path, monkeypatch):
    trace = tmp_path / "host.xplane.pb"
    trace.write_bytes(b"a trace")
    old = record(mnist_ops(1))
    old["profile"] = {**old["profile"], "trace_path": str(trace)}
    del old["profile"]["ops"]
    rows = [("Host", t, n, 10 * ms * 1000.0) for n, (t, ms) in mnist_ops(1).items()]  # 10 steps, microseconds
    monkeypatch.setattr(profiling, "tool_data", lambda path, tool: op_tables(rows) if path == trace else [])
    e = explain.explain(old, record(mnist_ops(3, conv=1.15)))
    assert e["status"] == "explained"
    assert e["step"]["delta_ms"] == pytest.approx(0.15 * 10.5)
    assert e["ops"]["host"][0]["base_ms"] == pytest.approx(4.0)
    trace.unlink()
    gone = explain.explain(old, record(mnist_ops(3)))
    assert gone["status"] == "no profile"
    assert f"saved before per-op times, and its trace cannot be read (the trace {trace} is not here)" in str(gone)


# ---- the record it reads: profile["ops"] ----------------------------------------------------------------------------


def op_tables(ops: list[tuple[str, str, str, float]], eager: str = "Function") -> list[dict]:
    """framework_op_stats as xprof 2.24 writes it (gviz: cols with ids, rows of {"v": ...}): (side, type, name, us)."""
    ids = ["rank", "host_or_device", "type", "operation", "occurrences", "total_self_time", "eager"]
    body = [[i, side, t, n, 20.0, us, eager] for i, (side, t, n, us) in enumerate(ops, 1)]
    return [{"cols": [{"id": c} for c in ids], "rows": [{"c": [{"v": v} for v in r]} for r in body], "p": {}}]


def test_every_op_above_the_share_is_kept_per_train_step_and_the_rest_is_summed():
    ops = [("Device", "Conv", "c", 8000.0), ("Host", "IDLE", "IDLE", 9e6), ("Host", "MatMul", "m", 30000.0)]
    ops += [("Host", "Sub", f"s{i}", 90.0) for i in range(7)] + [("Host", "Cast", "zero", 0.0)]
    got = opstats.ops_per_step(op_tables(ops), train_steps=10, step_time_ms=10.0)  # cut: 0.1% of 10 ms = 10 us
    assert got["min_ms"] == pytest.approx(0.01)
    assert got["device"] == [{"op": "c", "name": "c", "type": "Conv", "self_ms_per_step": 0.8, "calls_per_step": 2.0}]
    assert [o["op"] for o in got["host"]] == ["m"]  # Sub: 9 us a step, under the cut; IDLE and 0 us left out
    assert got["rest"]["host"] == {"ops": 7, "self_ms_per_step": pytest.approx(7 * 0.009)}
    assert got["rest"]["device"] == {"ops": 0, "self_ms_per_step": 0}
    eager = opstats.ops_per_step(op_tables(ops, eager="Eager"), 10, 10.0)
    assert eager["host"][0]["eager"] is True
    capped = opstats.ops_per_step(op_tables(ops), 10, 10.0, min_share=0.0)
    assert len(capped["host"]) == 8  # every op with self time
    assert capped["rest"]["host"]["ops"] == 0
    with pytest.raises(BadInputError, match="train_steps must be a positive whole number"):
        opstats.ops_per_step(op_tables(ops), 0, 10.0)


# ---- presented ------------------------------------------------------------------------------------------------------


def test_the_lines_markdown_csv_and_html_say_the_same(tmp_path):
    e = explain.explain(record(mnist_ops(1)), record(mnist_ops(3, conv=1.15)), base_label="0001", new_label="0002")
    text = "\n".join(explain.lines(e))
    assert text.startswith(
        "explain mnist/functional/tf_function (0001 -> 0002): profiled step 18.30 -> 19.88 ms (+1.57 ms/step, +9%)"
    )
    assert "+0.60   +15%   38%  gradient_tape/mnist_functional/conv2d_1/convolution/Conv2DBackpropFilter" in text
    md = explain.markdown(e)
    assert "| `gradient_tape/mnist_functional/conv2d_1/convolution/Conv2DBackpropFilter` |" in md
    assert f"| `{CONV_FILTER}` | 2 | 4.300 | 4.900 | +0.600 | +14% | 38% |" in md
    rows = explain.rows(e)
    assert rows[0]["kind"] == "step"
    assert rows[0]["delta_ms"] == pytest.approx(1.575)
    assert {r["kind"] for r in rows} == {"step", "part", "op", "op type"}
    page = explain.html_page([explain.explain(*pooled_pair())], "t")
    assert "<td>gradient_tape/&lt;model&gt;/conv2d_1/convolution/Conv2DBackpropFilter</td>" in page
    assert "<model>" not in page


def test_compare_explains_each_regression_and_writes_the_files(tmp_path, capsys):
    from tf2bench.cli import main

    def profiled(conv: float):
        def edit(doc):
            for b in doc["benchmarks"]:
                info = b["extra_info"]
                info["profile"] = record(mnist_ops(1, conv), repeat=info["repeat"])["profile"]
                if conv != 1.0 and info["loop"] == "tf_function":
                    b["stats"]["data"] = [2 * t for t in b["stats"]["data"]]

        return edit

    base = edited(fixture("0001"), tmp_path / "base", profiled(1.0))
    slow = edited(fixture("0001"), tmp_path / "slow", profiled(1.5))
    out_root = tmp_path / "reports"
    rc = main(["compare", str(base), str(slow), "--no-history", "--out", str(out_root)])
    out = capsys.readouterr().out
    assert rc == EXIT_FAILED
    assert "REGRESSION: cifar100/functional/tf_function" in out
    label = explain.run_label(runs.load(base))
    assert f"explain cifar100/functional/tf_function ({label} -> {label}), 3 of 3 benchmarks: profiled step" in out
    assert "+2.00   +50%   38%  gradient_tape/mnist_functional/conv2d_1/convolution/Conv2DBackpropFilter" in out
    assert "explain cifar100/functional/fit" not in out  # only the regression, without --explain
    (folder,) = out_root.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["explain.csv", "explain.html", "explain.md", "sources.json"]
    assert "Conv2DBackpropFilter" in (folder / "explain.md").read_text()
    cmp_ = __import__("tf2bench.analysis.compare", fromlist=["compare"]).compare(runs.load(base), runs.load(slow))
    api = explain.for_comparison(cmp_, runs.load(base), runs.load(slow), every=True)
    assert {e["loop"] for e in api} == set(cmp_.table["benchmark"])
    assert next(e for e in api if e["loop"] == "cifar100/functional/tf_function")["benchmarks"] == 3  # repeats

    def slow_tf_function(doc):
        for b in doc["benchmarks"]:
            if b["extra_info"]["loop"] == "tf_function":
                b["stats"]["data"] = [2 * t for t in b["stats"]["data"]]

    unprofiled = edited(fixture("0001"), tmp_path / "plain", slow_tf_function)
    rc = main(["compare", str(fixture("0001")), str(unprofiled), "--no-history", "--out", str(tmp_path / "r2")])
    out = capsys.readouterr().out
    assert rc == EXIT_FAILED  # the gate's verdict stands
    assert "re-run with `pytest bench --profile --workload cifar100 --api functional --loop tf_function`" in out
    assert not (tmp_path / "r2").exists()  # nothing explained, no files


def test_explaining_imports_no_tensorflow():
    code = "import sys, tf2bench.analysis.explain; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
