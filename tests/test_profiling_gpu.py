"""Profiles of a GPU, read from tables shaped exactly as xprof 2.24 writes them for one (no GPU here).

The step table follows GenerateGenericInputPipelineAnalysisDataTable (xprof/convert/
op_stats_to_input_pipeline_analysis.cc): the same table xprof writes for a CPU, whose real traces
tests/test_profiling.py reads, with the GPU's columns filled in. The op table follows TfStatsToDataTableJson
(xprof/convert/op_stats_to_tf_stats.cc): device ops, then host ops, with and without IDLE, plus the column a GPU
adds. Times are whole picoseconds turned into ms as xprof does (PicoToMilli), so the parts add up as in xprof.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import edited, fixture

from tf2bench.errors import BadInputError
from tf2bench.measure import profiling
from tf2bench.measure.profiling import (
    PARTS_REL_TOLERANCE,
    STEP_COLUMNS,
    ProfileError,
    summarise,
    summarise_input_pipeline,
    summarise_ops,
    top_ops,
)

# (column id, label, event-type key below) in xprof's order; "input" is host-wait-input + host-to-device.
GENERIC = [
    ("deviceComputeTimeMs", "Device compute", "device_compute"),
    ("deviceToDeviceTimeMs", "Device to device", "device_to_device"),
    ("deviceCollectivesTimeMs", "Device collective communication", "collectives"),
    ("hostComputeTimeMs", "Host compute", "host_compute"),
    ("kernelLaunchTimeMs", "Kernel launch", "kernel_launch"),
    ("infeedTimeMs", "Input", "input"),
    ("outfeedTimeMs", "Output", "output"),
    ("compileTimeMs", "Compilation", "compile"),
    ("otherTimeMs", "All others", "other"),
]
GRAPH_IDS = "stepnum," + ",".join(c for c, _, _ in GENERIC) + ", tooltip"  # verbatim, space included


def gpu_step(k: int, host_to_host_ps: int = 0) -> dict[str, int]:
    """Picoseconds per event type of step ``k`` of a data-parallel GPU step with an all-reduce."""
    ps = {
        "device_compute": 30_000_000_000 + 7_123_457 * k,
        "device_to_device": 1_500_000_000 + 3_001 * k,
        "collectives": 6_250_000_123 + 900_000_017 * k,  # NCCL all-reduce kernels
        "host_compute": 400_000_001,
        "kernel_launch": 2_000_000_000 - 11 * k,
        "input": 200_000_000 + 500_000_000,  # host waits on tf.data + copies to the GPU
        "output": 300_000_007,
        "compile": 0,
        "other": 600_000_000 + 123_456_789 * k,
    }
    return {**ps, "step": sum(ps.values()) + host_to_host_ps}  # host-to-host time is in the step, in no column


def step_table(steps: list[dict[str, int]], extra: dict[str, list[int]] | None = None, listed: bool = True) -> dict:
    """input_pipeline_analyzer's step table for a GPU; ``extra``: more part columns (id -> ps per step)."""
    extra = extra or {}
    cols = [{"id": "stepnum", "label": "Step number", "type": "string"}]
    cols += [{"id": c, "label": label, "type": "number"} for c, label, _ in GENERIC]
    cols += [{"id": c, "label": c, "type": "number"} for c in extra]
    cols += [{"id": "tooltip", "label": "tooltip", "type": "string", "p": {"role": "tooltip"}}]
    cols += [{"id": "stepTimeMs", "label": "Step time", "type": "number"}]
    rows = []
    for k, ps in enumerate(steps):
        cells = [{"v": f"train {k}"}] + [{"v": ps[key] / 1e9} for _, _, key in GENERIC]
        cells += [{"v": v[k] / 1e9} for v in extra.values()]
        rows.append(
            {"c": [*cells, {"v": f"Step train {k}, duration: {ps['step'] / 1e9:.2f} ms"}, {"v": ps["step"] / 1e9}]}
        )
    avg = sum(ps["step"] for ps in steps) / len(steps) / 1e9
    p = {
        "hardware_type": "GPU",
        "steptime_ms_average": f"{avg:.1f}",
        "input_conclusion": "Your program is NOT input-bound because only 1.7% of the total step time ...",
        "summary_nextstep": "Look at Section 3 for the breakdown of input time on the host.",
        "device_collectives_time_ms_avg": "7.6",
    }
    if listed:
        p["step_time_graph_column_ids"] = GRAPH_IDS.replace(", tooltip", "".join(f",{c}" for c in extra) + ", tooltip")
    return {"cols": cols, "rows": rows, "p": p}


def tables(*step_tables: dict) -> list[dict]:
    """input_pipeline_analyzer's five tables: an empty one first, the step table, then the host analysis ones."""
    host_ops = {"cols": [{"id": "opName", "label": "Input Op", "type": "string"}], "rows": [], "p": {}}
    return [{"cols": [], "rows": []}, *step_tables, host_ops, {"cols": [], "rows": []}]


def mean_ms(steps: list[dict[str, int]], key: str, per: int = 1) -> float:
    return sum(ps[key] for ps in steps) / len(steps) / 1e9 / per


STEPS = [gpu_step(k) for k in range(4)]


# --- the step breakdown ----------------------------------------------------------------


@pytest.mark.parametrize("per", [1, 4])
def test_every_gpu_column_is_kept_and_the_parts_add_up_with_an_all_reduce(per):
    out = summarise_input_pipeline(tables(step_table(STEPS)), train_steps_per_marked_step=per)
    by_key = {c: key for c, _, key in GENERIC}
    for col, name in STEP_COLUMNS.items():
        key = "step" if col == "stepTimeMs" else by_key[col]
        assert out[name] == pytest.approx(mean_ms(STEPS, key, per), rel=1e-12), name
    assert out["device_collectives_ms"] > 0
    assert out["device_to_device_ms"] > 0
    assert out["output_ms"] > 0
    assert out["extra_parts_ms"] == {}
    named = sum(out[k] for k in STEP_COLUMNS.values() if k != "step_time_ms")
    assert named == pytest.approx(out["step_time_ms"], rel=1e-12)
    assert out["parts_ms"] == pytest.approx(out["step_time_ms"], rel=1e-12)
    assert out["parts_add_up"] is True
    assert abs(out["unattributed_ms"]) <= PARTS_REL_TOLERANCE * out["step_time_ms"]
    # the six parts a CPU fills leave out the all-reduce, device-to-device and output time
    six = sum(out[k] for k in ("input_ms", "host_compute_ms", "device_compute_ms", "kernel_launch_ms"))
    six += out["compile_ms"] + out["other_ms"]
    gpu_only = out["device_collectives_ms"] + out["device_to_device_ms"] + out["output_ms"]
    assert out["step_time_ms"] - six == pytest.approx(gpu_only, rel=1e-9)
    assert gpu_only > 0.1 * out["step_time_ms"]
    # input includes the host-to-device copies (xprof does not show them apart)
    assert out["input_bound_pct"] == pytest.approx(100 * out["input_ms"] / out["step_time_ms"])
    assert out["input_bound"] == "not"
    assert out["hardware_type"] == "GPU"


def test_a_part_column_this_code_has_no_name_for_is_kept_and_counted():
    # a later xprof might show host-to-device apart from input: kept under its own id, still adding up
    h2d = [100_000_000 + 17 * k for k in range(len(STEPS))]
    steps = [{**ps, "step": ps["step"] + h2d[k]} for k, ps in enumerate(STEPS)]
    for listed in (True, False):  # named by step_time_graph_column_ids, or found as a ...TimeMs column
        out = summarise_input_pipeline(tables(step_table(steps, {"hostToDeviceTimeMs": h2d}, listed=listed)))
        assert out["extra_parts_ms"] == {"hostToDeviceTimeMs": pytest.approx(sum(h2d) / len(h2d) / 1e9)}
        assert out["parts_add_up"] is True, listed
        assert out["parts_ms"] == pytest.approx(out["step_time_ms"], rel=1e-12)


def test_a_numeric_column_the_chart_does_not_stack_is_not_a_part():
    table = step_table(STEPS)
    table["cols"].append({"id": "infeedPercentAverage", "label": "% step time waiting for input", "type": "number"})
    for row in table["rows"]:
        row["c"].append({"v": 1.7})
    out = summarise_input_pipeline(tables(table))
    assert out["extra_parts_ms"] == {}
    assert out["parts_add_up"] is True


def test_time_in_no_column_is_reported_as_unattributed():
    gap_ps = 250_000_000  # 0.25 ms of host-to-host copies per step: xprof counts it in the step, shows it nowhere
    steps = [gpu_step(k, host_to_host_ps=gap_ps) for k in range(4)]
    out = summarise_input_pipeline(tables(step_table(steps)), train_steps_per_marked_step=2)
    assert out["parts_add_up"] is False
    assert out["unattributed_ms"] == pytest.approx(gap_ps / 1e9 / 2)
    assert out["parts_ms"] + out["unattributed_ms"] == pytest.approx(out["step_time_ms"], rel=1e-12)


def test_an_older_table_without_the_gpu_columns_still_reads_with_zeros():
    table = step_table(STEPS)
    gone = {"deviceToDeviceTimeMs", "deviceCollectivesTimeMs", "outfeedTimeMs"}
    keep = [i for i, c in enumerate(table["cols"]) if c["id"] not in gone]
    table["cols"] = [table["cols"][i] for i in keep]
    for row in table["rows"]:
        row["c"] = [row["c"][i] for i in keep]
    del table["p"]["step_time_graph_column_ids"]
    out = summarise_input_pipeline(tables(table))
    assert out["device_collectives_ms"] == out["device_to_device_ms"] == out["output_ms"] == 0.0
    assert out["parts_add_up"] is False  # those columns' time is in the step: it shows as unattributed
    assert out["unattributed_ms"] == pytest.approx(
        mean_ms(STEPS, "collectives") + mean_ms(STEPS, "device_to_device") + mean_ms(STEPS, "output")
    )


def test_a_step_table_without_step_time_is_refused_by_name():
    table = step_table(STEPS)  # shaped like xprof's TPU table: no stepTimeMs column
    table["cols"] = table["cols"][:-1]
    for row in table["rows"]:
        row["c"] = row["c"][:-1]
    with pytest.raises(ProfileError, match="no stepTimeMs column .*deviceCollectivesTimeMs"):
        summarise_input_pipeline(tables(table))


# --- top ops: host and device apart --------------------------------------------------------------

OP_COLS = ["rank", "host_or_device", "type", "operation", "occurrences", "total_time", "avg_time"]
OP_COLS += ["total_self_time", "avg_self_time", "device_total_self_time_percent"]
OP_COLS += ["device_cumulative_total_self_time_percent", "host_total_self_time_percent"]
OP_COLS += ["Host_cumulative_total_self_time_percent", "measured_flop_rate", "model_flop_rate"]
OP_COLS += ["measured_memory_bw", "operational_intensity", "gpu_tensorcore_utilization", "bound_by", "eager"]
# (side, type, op, occurrences, self us): the same TF op runs kernels on the GPU and is launched on the host
GPU_OPS = [
    ("Device", "IDLE", "IDLE", 0, 20_000.0),
    ("Device", "Conv2DBackpropFilter", "gradient_tape/conv2d/Conv2DBackpropFilter", 4, 9_000.0),
    ("Device", "Conv2D", "conv2d/Conv2D", 4, 6_000.0),
    ("Device", "NcclAllReduce", "Adam/NcclAllReduce", 4, 4_000.0),
    ("Device", "MatMul", "dense/MatMul", 4, 2_500.0),
    ("Device", "BiasAddGrad", "gradient_tape/dense/BiasAddGrad", 4, 800.0),
    ("Device", "Relu", "conv2d/Relu", 4, 300.0),
    ("Host", "IDLE", "IDLE", 0, 50_000.0),
    ("Host", "IteratorGetNext", "IteratorGetNext", 4, 5_000.0),
    ("Host", "MatMul", "dense/MatMul", 4, 3_000.0),
    ("Host", "Conv2D", "conv2d/Conv2D", 4, 1_200.0),
    ("Host", "", "Mul", 8, 0.0),  # an eager op: listed, never timed
]


def op_tables(ops: list[tuple]) -> list[dict]:
    """framework_op_stats: [with IDLE, without IDLE], device rows then host rows, each side ranked by self time."""
    gpu = any(side == "Device" for side, *_ in ops)
    cols = [c for c in OP_COLS if gpu or c != "gpu_tensorcore_utilization"]
    out = []
    for with_idle in (True, False):
        rows = []
        for side in ("Device", "Host"):
            mine = sorted((o for o in ops if o[0] == side and (with_idle or o[1] != "IDLE")), key=lambda o: -o[4])
            total = sum(o[4] for o in mine)
            for _, kind, name, n, self_us in mine:
                frac = self_us / total
                v = {"rank": len(rows) + 1, "host_or_device": side, "type": kind, "operation": name}
                v |= {"occurrences": n, "total_time": self_us, "avg_time": self_us / max(n, 1)}
                v |= {"total_self_time": self_us, "avg_self_time": self_us / max(n, 1), "bound_by": "Compute"}
                v |= {f"{'device' if side == 'Device' else 'host'}_total_self_time_percent": frac}
                rows.append({"c": [{"v": v.get(c, 0.0 if c != "eager" else "Function")} for c in cols]})
        out.append({"cols": [{"id": c, "label": c} for c in cols], "rows": rows, "p": {"task_type": "Training"}})
    return out


def test_top_ops_keeps_device_and_host_self_time_apart():
    got = summarise_ops(op_tables(GPU_OPS))
    device, host = got["top_ops_device"], got["top_ops_host"]
    assert got["top_ops"] == device  # on a GPU the step's ops are the device's
    assert [o["op"] for o in device] == [
        "gradient_tape/conv2d/Conv2DBackpropFilter",
        "conv2d/Conv2D",
        "Adam/NcclAllReduce",
        "dense/MatMul",
        "gradient_tape/dense/BiasAddGrad",
    ]
    assert [o["op"] for o in host] == ["IteratorGetNext", "dense/MatMul", "conv2d/Conv2D"]
    assert {o["where"] for o in device} == {"Device"}
    assert {o["where"] for o in host} == {"Host"}
    # one op, two times, never added: 2.5 ms of kernels, 3.0 ms of host time
    assert [o["self_ms"] for o in device if o["op"] == "dense/MatMul"] == [2.5]
    assert [o["self_ms"] for o in host if o["op"] == "dense/MatMul"] == [3.0]
    # shares of each side's busy time (idle left out), not of host and device time together
    busy = {"Device": 22_600.0, "Host": 9_200.0}
    for op in device + host:
        assert op["self_pct"] == pytest.approx(100 * 1000 * op["self_ms"] / busy[op["where"]])
    assert sum(o["self_pct"] for o in host) == pytest.approx(100.0)
    for side in (device, host):
        assert [o["self_ms"] for o in side] == sorted((o["self_ms"] for o in side), reverse=True)
    assert top_ops(op_tables(GPU_OPS), n=2, where="Host") == host[:2]


def test_top_ops_of_a_cpu_only_trace_are_the_host_ops_and_a_bad_side_is_refused():
    cpu = [o for o in GPU_OPS if o[0] == "Host"]
    got = summarise_ops(op_tables(cpu))
    assert got["top_ops"] == got["top_ops_host"]
    assert len(got["top_ops_host"]) == 3
    assert got["top_ops_device"] == []
    assert summarise_ops([]) == {"top_ops": [], "top_ops_device": [], "top_ops_host": []}
    with pytest.raises(BadInputError, match="unknown op side 'GPU': choose one of Device, Host"):
        top_ops(op_tables(cpu), where="GPU")


# --- the whole summary, and old records next to new ones -------------------------------------------------


@pytest.fixture
def gpu_summary(monkeypatch) -> dict:
    """summarise() of a GPU trace, xprof's converters replaced by the GPU-shaped tables above."""
    made = {"input_pipeline_analyzer": tables(step_table(STEPS)), "framework_op_stats": op_tables(GPU_OPS)}
    monkeypatch.setattr(profiling, "tool_data", lambda xplane, tool: made[tool])
    return summarise(Path("/traces/gpu/host.xplane.pb"))


def test_the_gpu_summary_is_one_json_record_with_every_part(gpu_summary):
    saved = json.loads(json.dumps(gpu_summary))
    assert saved == gpu_summary
    parts = [*(k for k in STEP_COLUMNS.values() if k != "step_time_ms"), "extra_parts_ms"]
    assert set(parts) | {"parts_ms", "unattributed_ms", "parts_add_up", "top_ops_host", "top_ops_device"} <= set(saved)
    assert saved["parts_add_up"]
    assert saved["top_ops"][0]["where"] == "Device"


def test_a_report_renders_old_profile_records_next_to_new_ones(gpu_summary, tmp_path):
    from tf2bench.analysis import render, report, runs

    old = {  # a profile record as saved before the GPU columns: six parts, host and device ops in one list
        "trace_dir": str(tmp_path / "traces" / "r1" / "old"),
        **{k: 1.0 for k in ("step_time_ms", "input_ms", "host_compute_ms", "device_compute_ms", "other_ms")},
        **{k: 0.0 for k in ("kernel_launch_ms", "compile_ms")},
        "input_bound_pct": 12.0,
        "top_ops": [{"op": "MatMul", "type": "MatMul", "where": "Host", "occurrences": 4, "self_ms": 1.0}],
    }
    new = {**gpu_summary, "trace_dir": str(tmp_path / "traces" / "r1" / "new")}

    def add_profiles(doc):
        for bench in doc["benchmarks"]:
            bench["extra_info"]["profile"] = {"fit": old, "tf_data": new}.get(bench["extra_info"]["loop"])

    run = runs.load(edited(fixture("0001"), tmp_path / "bench", add_profiles))
    written = render.write(report.build([run]), [run], tmp_path / "reports")
    html = (written.directory / "report.html").read_text()
    for d in ("old", "new"):
        assert f"tf2bench tensorboard --logdir {tmp_path}/traces/r1/{d}" in html
