"""The measured matmul peaks and MFU: each result is judged against the peak of the precision it computes in."""

from __future__ import annotations

import pytest

from tf2bench import peak
from tf2bench.loops import RunConfig
from tf2bench.runner import BenchmarkRun
from tf2bench.workloads import data, get_workload


def fake_peak(dtype: str, gflops: float) -> peak.Peak:
    return peak.Peak(gflops, 8, 1, 1, dtype, "CPU:0", gflops * 0.9)


@pytest.fixture
def no_peaks(monkeypatch):
    """An empty per-process cache, restored after the test."""
    monkeypatch.setattr(peak, "_PEAKS", {})


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_peak_is_measured_best_of_reps_and_labelled(dtype):
    import tensorflow as tf

    try:
        p = peak.measure_matmul_peak(n=256, reps=3, per_rep=2, dtype=dtype)
    except tf.errors.OpError as exc:  # e.g. no bfloat16 matmul on an older GPU: peak() records that (tested below)
        pytest.skip(f"{dtype} matmul does not run here: {exc.message[:200]}")
    assert (p.n, p.reps, p.dtype, p.error) == (256, 3, dtype, None)
    # computed in the dtype itself, but for float32 on an Ampere+ GPU with TF32 on
    assert p.precision == dtype or (dtype, p.precision, p.tf32_enabled) == ("float32", "tf32", True)
    assert p.gflops >= p.median_gflops > 0  # best-of is never below the median
    assert "CPU" in p.device or "GPU" in p.device
    assert (p.tf32_enabled is None) == ("CPU" in p.device)  # the TF32 switch is recorded on a GPU only
    assert set(p.as_dict()) >= {"gflops", "n", "reps", "device", "dtype", "precision", "error"}
    assert dtype in p.describe()
    assert "GFLOP/s" in p.describe()


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
    """Just enough of tf.config for peak._precision: one GPU of a given compute capability, TF32 on or off."""

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
    assert peak._precision(FakeTF(capability, tf32), dtype, gpu) == expected
    assert peak._precision(FakeTF(capability, tf32), dtype, "/device:CPU:0") == (dtype, None)
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
