"""The measured matmul peaks and MFU: each result is judged against the peak of the precision it computes in."""

from __future__ import annotations

import json

import pytest

from tf2bench.loops import RunConfig
from tf2bench.measure import peak, timing
from tf2bench.suite.runner import BenchmarkRun
from tf2bench.workloads import data, get_workload


def fake_peak(dtype: str, gflops: float) -> peak.Peak:
    return peak.Peak(gflops, 8, 1, 1, dtype, "CPU:0", gflops * 0.9)


@pytest.fixture
def no_peaks(monkeypatch):
    """An empty per-process cache, restored after the test."""
    monkeypatch.setattr(peak, "_PEAKS", {})


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_matmul_peak_is_sized_measured_best_of_reps_and_labelled(dtype):
    import tensorflow as tf

    try:  # n pinned small and a 5 ms aim: the real path in well under a second, float16 included
        p = peak.measure_matmul_peak(dtype, n=256, reps=3, min_rep_s=0.005)
    except tf.errors.OpError as exc:  # e.g. no bfloat16 matmul on an older GPU: peak() records that (tested below)
        pytest.skip(f"{dtype} matmul does not run here: {exc.message[:200]}")
    assert (p.n, p.reps, p.dtype, p.error, p.min_rep_s) == (256, 3, dtype, None, 0.005)
    # the sizing rule on a real clock: the chosen count's probe reached the aim, the one before it (if any) did not
    chosen = [s for n, k, s in p.probes if k == p.matmuls_per_rep]
    shorter = [s for n, k, s in p.probes if k < p.matmuls_per_rep]
    assert chosen and chosen[-1] >= 0.005 or p.matmuls_per_rep == peak.PER_REP_CAP
    assert all(s < 0.005 for s in shorter)
    assert {n for n, k, s in p.probes} == {256}  # pinned
    assert p.gflops == pytest.approx(2 * 256**3 * p.matmuls_per_rep / p.rep_s / 1e9)
    assert p.gflops >= p.median_gflops > 0  # best-of is never below the median
    assert p.wall_s >= sum(s for n, k, s in p.probes)  # the probes are part of what it cost
    # computed in the dtype itself, but for float32 on an Ampere+ GPU with TF32 on
    assert p.precision == dtype or (dtype, p.precision, p.tf32_enabled) == ("float32", "tf32", True)
    assert "CPU" in p.device or "GPU" in p.device
    assert (p.tf32_enabled is None) == ("CPU" in p.device)  # the TF32 switch is recorded on a GPU only
    assert dtype in p.describe()
    assert "GFLOP/s" in p.describe()
    assert "256² matmuls" in p.describe()


def test_the_record_keeps_its_keys_and_reads_back_from_json():
    p = peak.Peak(100.0, 2048, 5, 1, "float32", "CPU:0", 95.0, rep_s=0.17, min_rep_s=0.01, probes=((2048, 1, 0.18),))
    record = p.as_dict()
    old = {"n", "reps", "matmuls_per_rep", "gflops", "median_gflops", "dtype", "precision", "device", "tf32_enabled"}
    assert set(record) >= old | {"error", "rep_s", "min_rep_s", "probes", "bound", "wall_s"}
    assert json.loads(json.dumps(record)) == record  # machine_info is saved as JSON and compared after reading back


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_a_long_chain_keeps_its_scale(dtype):
    """b's rows sum to 1, so chaining keeps every row's sum: no rescaling op is needed, nothing overflows."""
    import tensorflow as tf

    a, b = peak.matmul_inputs(tf, dtype, 64)
    out = tf.cast(peak.matmul_chain(tf, b, peak.PER_REP_CAP)(a), tf.float32).numpy()
    # entries tend to their row's mean (~0.5). [1e-2, 1e2] is far inside float16's normal range (6.1e-5 to 65504)
    # and excludes any product that grows or shrinks the scale by even 2x per matmul (2^64 over the chain)
    assert 1e-2 < out.min() <= out.max() < 1e2


class FakeDevice:
    """A device on a fake clock: a repetition costs ``call_s`` (the tf.function call and the sync) plus, per
    matmul, ``launch_s`` and 2n³ / ``flops`` seconds; an n above ``mem_n`` does not fit in its memory."""

    def __init__(self, flops: float, launch_s: float = 0.0, call_s: float = 0.0, mem_n: int | None = None) -> None:
        self.clock = timing.VirtualClock()
        self.flops, self.launch_s, self.call_s, self.mem_n = flops, launch_s, call_s, mem_n
        self.calls: list[tuple[int, int]] = []

    def rep(self, n: int, k: int) -> float | None:
        self.calls.append((n, k))
        if self.mem_n is not None and n > self.mem_n:
            return None
        t0 = self.clock()
        self.clock.advance(self.call_s + k * (self.launch_s + 2 * n**3 / self.flops))
        return self.clock() - t0


# Estimates, not measurements (no GPU here): achievable dense matmul FLOP/s, ~5 us a kernel launch, ~0.1 ms a call
# and its sync. An H100 runs ~1 PFLOP/s of dense float16 on paper; TF32 half that; plain float32 ~50 TFLOP/s.
H100 = {"launch_s": 5e-6, "call_s": 1e-4}


@pytest.mark.parametrize(
    ("device", "n", "per_rep", "old_read"),
    [
        (FakeDevice(7e14, **H100), 8192, 8, 0.31),  # float16 / bfloat16 on tensor cores: 1.7 ms at 8192², x8 12.7 ms
        (FakeDevice(3.5e14, **H100), 8192, 4, 0.47),  # tf32: 3.2 ms at 8192², x4 12.7 ms
        (FakeDevice(5e13, **H100), 8192, 1, 0.86),  # float32 with TF32 off: 22 ms at 8192²
        (FakeDevice(2.14e11, call_s=5e-5), 2048, 1, 1.0),  # this CPU's float32: 80 ms at 2048², nothing more grows
        (FakeDevice(3e12, call_s=5e-5), 4096, 1, 1.0),  # a many-core AMX CPU's bfloat16: 5.7 ms at 2048², 46 at 4096²
    ],
)
def test_the_sizing_grows_until_a_repetition_is_long_enough(device, n, per_rep, old_read):
    sizing = peak.size_matmuls(device.rep)
    assert (sizing.n, sizing.per_rep, sizing.bound) == (n, per_rep, None)
    assert sizing.rep_s >= peak.MIN_REP_S
    assert [p[:2] for p in sizing.probes[:3]] == [(512, 1), (1024, 1), (2048, 1)]  # n first, from START_N
    fewer = [s for pn, k, s in sizing.probes if pn == n and k < per_rep]
    assert all(s < peak.MIN_REP_S for s in fewer)  # the fewest matmuls that reach the aim
    # the fixed costs are a small share of the repetition now: the measured rate is the device's within that share
    flops = 2 * n**3 * per_rep
    overhead = (device.call_s + per_rep * device.launch_s) / peak.MIN_REP_S
    assert flops / sizing.rep_s >= device.flops * (1 - overhead)
    # the fixed size this replaced, two 2048² matmuls a repetition, read a fast GPU's peak far too low
    assert 2 * 2 * 2048**3 / device.rep(2048, 2) / device.flops == pytest.approx(old_read, abs=0.01)


def test_the_sizing_records_the_caps_when_they_bind():
    device = FakeDevice(1e18)  # impossibly fast: no size reaches 10 ms
    sizing = peak.size_matmuls(device.rep)
    assert (sizing.n, sizing.per_rep) == (peak.N_CAP, peak.PER_REP_CAP)
    assert sizing.rep_s < peak.MIN_REP_S
    assert f"n capped at {peak.N_CAP}" in sizing.bound
    assert f"cap {peak.PER_REP_CAP}" in sizing.bound
    pinned = peak.size_matmuls(FakeDevice(7e14, **H100).rep, start_n=256, fill_n=256, n_cap=256)
    assert {p[0] for p in pinned.probes} == {256}
    assert pinned.per_rep == peak.PER_REP_CAP
    assert pinned.bound.startswith("0.")  # 64 x 256² matmuls: 0.4 ms


def test_a_slow_precision_stays_small_and_cheap():
    device = FakeDevice(1e9)  # 1 GFLOP/s, e.g. float16 on a CPU without a kernel for it: 0.27 s at 512²
    sizing = peak.size_matmuls(device.rep)
    assert (sizing.n, sizing.per_rep) == (512, 1)
    assert sizing.bound.startswith("n 512 < 2048: a 1024² repetition would take")
    seconds = peak.time_reps(device.rep, sizing)
    assert len(seconds) == peak.MIN_REPS  # 5 x 0.27 s would pass the 1 s budget: the fewest allowed
    assert seconds[0] == sizing.rep_s  # the sizing's probe is the first timed repetition
    assert device.calls == [(512, 1)] * peak.MIN_REPS  # nothing measured twice, nothing larger tried


def test_the_sizing_stops_growing_n_where_memory_ends():
    device = FakeDevice(7e14, **H100, mem_n=4096)
    sizing = peak.size_matmuls(device.rep)
    assert (8192, 1, None) in sizing.probes
    assert (sizing.n, sizing.bound) == (4096, None)
    assert sizing.per_rep == 64  # 4096² x1 takes 0.3 ms: 33x needed, the next power of two
    assert sizing.rep_s >= peak.MIN_REP_S
    with pytest.raises(MemoryError, match="512x512 matmuls do not fit"):
        peak.size_matmuls(FakeDevice(7e14, mem_n=256).rep)


def test_time_reps_takes_all_reps_of_a_fast_size():
    device = FakeDevice(2.14e11)
    sizing = peak.size_matmuls(device.rep)
    seconds = peak.time_reps(device.rep, sizing)
    assert len(seconds) == peak.MATMUL_REPS
    assert device.calls[-(peak.MATMUL_REPS - 1) :] == [(2048, 1)] * (peak.MATMUL_REPS - 1)


def test_each_dtype_is_measured_once_per_process(monkeypatch, no_peaks):
    calls = []

    def fake(*, dtype, **kwargs):
        calls.append(dtype)
        return fake_peak(dtype, {"float32": 100.0, "bfloat16": 300.0}[dtype])

    monkeypatch.setattr(peak, "measure_matmul_peak", fake)
    assert peak.peak("bfloat16") is peak.peak("bfloat16")
    assert peak.peak() is peak.peak("float32")
    assert calls == ["bfloat16", "float32"]  # lazily: only when first asked for, then cached
    assert {d: p["gflops"] for d, p in peak.peaks().items()} == {"bfloat16": 300.0, "float32": 100.0}


class FakeTF:
    """Just enough of tf.config for peak.matmul_precision: one GPU of a given compute capability, TF32 on or off."""

    def __init__(self, capability: tuple[int, int], tf32: bool) -> None:
        self.config = self
        self.experimental = self
        self.capability, self.tf32 = capability, tf32

    def tensor_float_32_execution_enabled(self) -> bool:
        return self.tf32

    def list_physical_devices(self, kind: str) -> list[str]:
        return ["GPU:0"]

    def get_device_details(self, device: str) -> dict:
        return {"compute_capability": self.capability}


@pytest.mark.parametrize(
    ("capability", "tf32", "dtype", "expected"),
    [
        ((8, 0), True, "float32", ("tf32", True)),  # Ampere, TF32 on: float32 matmuls run as TF32
        ((8, 6), False, "float32", ("float32", False)),  # TF32 switched off: real float32
        ((7, 0), True, "float32", ("float32", True)),  # Volta has no TF32
        ((8, 0), True, "float16", ("float16", True)),
    ],
)
def test_a_gpu_float32_peak_says_when_it_is_tf32(capability, tf32, dtype, expected):
    gpu = "/job:localhost/replica:0/task:0/device:GPU:0"
    assert peak.matmul_precision(FakeTF(capability, tf32), dtype, gpu) == expected
    assert peak.matmul_precision(FakeTF(capability, tf32), dtype, "/device:CPU:0") == (dtype, None)
    if expected[0] == "tf32":
        assert "tf32 (float32 on tensor cores)" in peak.Peak(1.0, 8, 1, 1, dtype, gpu, 1.0, *expected).describe()


def test_an_unsupported_dtype_gives_a_reason_not_a_crash(monkeypatch, no_peaks):
    import tensorflow as tf

    def no_kernel(*args, **kwargs):
        raise tf.errors.NotFoundError(None, None, "No registered 'MatMul' OpKernel for CPU devices, T=DT_HALF")

    monkeypatch.setattr(peak, "measure_matmul_peak", no_kernel)
    p = peak.peak("float16")
    assert p.gflops is None
    assert "No registered 'MatMul'" in p.error
    assert "no peak" in p.describe()
    rec = peak.mfu_record(2e6, 5000.0, "float16")
    assert rec["mfu"] is None
    assert rec["peak_gflops"] is None
    assert rec["gflops_per_sec"] == pytest.approx(10.0)  # achieved FLOP/s does not need a peak
    assert rec["mfu_error"].startswith("no float16 matmul peak on this device: No registered")


def test_mfu_is_achieved_over_peak():
    gflops, mfu = peak.mfu(flops_per_sample=2e6, samples_per_sec=5000, peak_gflops=40.0)
    assert gflops == pytest.approx(10.0)
    assert mfu == pytest.approx(0.25)
    with pytest.raises(ValueError, match="peak must be positive"):
        peak.mfu(1.0, 1.0, 0.0)


def test_mfu_record_divides_by_the_compute_dtypes_peak(monkeypatch, no_peaks):
    monkeypatch.setitem(peak._PEAKS, "float32", fake_peak("float32", 40.0))
    monkeypatch.setitem(peak._PEAKS, "bfloat16", fake_peak("bfloat16", 100.0))
    rec = peak.mfu_record(2e6, 5000.0, "bfloat16")
    assert rec["mfu"] == pytest.approx(0.1)
    assert rec["mfu_error"] is None
    assert (rec["compute_dtype"], rec["peak_dtype"], rec["peak_gflops"], rec["peak_matmul_n"]) == (
        "bfloat16", "bfloat16", 100.0, 8
    )  # fmt: skip
    unknown = peak.mfu_record(None, 5000.0, "float32")
    assert unknown["mfu"] is None
    assert unknown["gflops_per_sec"] is None
    assert "FLOPs" in unknown["mfu_error"]


@pytest.mark.slow
def test_a_mixed_results_mfu_is_against_its_compute_dtypes_peak(monkeypatch, no_peaks):
    from tf2bench.loops.mixed import mixed_policy_name

    half = mixed_policy_name().removeprefix("mixed_")  # bfloat16 on a CPU, float16 on a GPU
    # stand-in peaks, far apart, so dividing by the wrong one cannot pass
    monkeypatch.setitem(peak._PEAKS, "float32", fake_peak("float32", 50.0))
    monkeypatch.setitem(peak._PEAKS, half, fake_peak(half, 5000.0))
    wl = get_workload("cifar100")
    ds = data.load(wl, "synthetic", train_size=128, test_size=32)
    run = BenchmarkRun(wl, "functional", "mixed", ds, RunConfig(batch_size=32, steps=2, rounds=1, warmup_steps=1))
    run.warmup()
    run.window()
    info = run.result()
    assert (info["compute_dtype"], info["peak_dtype"], info["peak_gflops"]) == (half, half, 5000.0)
    assert info["mfu"] == pytest.approx(info["gflops_per_sec"] / 5000.0)
    assert info["mfu_error"] is None
    assert peak.compute_dtype(run.model) == half
    assert info["dtype_policy"] == mixed_policy_name()
