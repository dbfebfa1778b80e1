"""The measured matmul peak and MFU: the denominator every result is judged against."""

from __future__ import annotations

import pytest

from tf2bench import peak


def test_matmul_peak_is_measured_best_of_reps():
    p = peak.measure_matmul_peak(n=256, reps=3, per_rep=2)
    assert (p.n, p.reps, p.dtype) == (256, 3, "float32")
    assert p.gflops >= p.median_gflops > 0  # best-of is never below the median
    assert "CPU" in p.device or "GPU" in p.device
    assert set(p.as_dict()) >= {"gflops", "n", "reps", "device"}


def test_peak_is_measured_once_per_process(monkeypatch):
    calls = []

    def fake(*args, **kwargs):
        calls.append(1)
        return peak.Peak(100.0, 8, 1, 1, "float32", "CPU:0", 90.0)

    monkeypatch.setattr(peak, "_PEAK", None)
    monkeypatch.setattr(peak, "measure_matmul_peak", fake)
    assert peak.peak() is peak.peak()
    assert len(calls) == 1


def test_mfu_is_achieved_over_peak():
    gflops, mfu = peak.mfu(flops_per_sample=2e6, samples_per_sec=5000, peak_gflops=40.0)
    assert gflops == pytest.approx(10.0)
    assert mfu == pytest.approx(0.25)
    with pytest.raises(ValueError, match="peak must be positive"):
        peak.mfu(1.0, 1.0, 0.0)
