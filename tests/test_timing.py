"""The timing core against a fake clock: no TensorFlow needed."""

from __future__ import annotations

import math

import pytest

from tf2bench.measure.timing import NOISY_CV, Stopwatch, VirtualClock, percentile, window_stats


class FakeClock:
    def __init__(self, *ticks: float) -> None:
        self.ticks = list(ticks)

    def __call__(self) -> float:
        return self.ticks.pop(0)


def test_stopwatch_measures_between_start_and_synced_stop():
    synced = []
    sw = Stopwatch(clock=FakeClock(10.0, 12.5), sync=lambda: synced.append(True))
    sw.start()
    assert sw.stop() == 2.5
    assert synced == [True]  # the window ends with a device sync


def test_stopwatch_stop_before_start_raises():
    with pytest.raises(RuntimeError, match="before start"):
        Stopwatch(clock=FakeClock(1.0), sync=None).stop()


def test_window_stats_hand_computed():
    # three windows of 10 steps, 32 samples per step
    stats = window_stats([1.0, 2.0, 4.0], [10, 10, 10], samples_per_step=32)
    assert stats.samples_per_sec == pytest.approx(160.0)  # median of 320, 160, 80
    assert stats.samples_per_sec_min == pytest.approx(80.0)
    assert stats.samples_per_sec_max == pytest.approx(320.0)
    assert stats.step_time_ms_median == pytest.approx(200.0)
    # p90 of [100, 200, 400] by linear interpolation: pos 1.8 -> 200 + 0.8 * 200
    assert stats.step_time_ms_p90 == pytest.approx(360.0)
    # cv: stdev([100, 200, 400]) / mean = 152.7525 / 233.333
    assert stats.cv == pytest.approx(152.75252316519467 / 233.33333333333334)
    assert stats.noisy
    assert stats.windows == 3


def test_window_stats_normalises_unequal_windows():
    stats = window_stats([1.0, 0.5], [100, 50], samples_per_step=1)
    assert stats.cv == 0.0
    assert stats.samples_per_sec == pytest.approx(100.0)
    assert not stats.noisy


def test_single_window_has_zero_cv():
    stats = window_stats([0.25], [5], samples_per_step=32)
    assert stats.cv == 0.0
    assert stats.samples_per_sec == pytest.approx(640.0)


@pytest.mark.parametrize(
    ("seconds", "steps"),
    [([], []), ([1.0], [1, 2]), ([0.0], [1]), ([1.0], [0]), ([float("nan")], [1])],
)
def test_window_stats_rejects_bad_windows(seconds, steps):
    with pytest.raises(ValueError, match="window"):
        window_stats(seconds, steps, samples_per_step=1)


def test_percentile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0, 10, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_virtual_clock_only_advances_by_measured_time():
    clock = VirtualClock()
    assert clock() == 0.0
    clock.advance(0.25)
    clock.advance(0.5)
    assert clock() == 0.75
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="cannot advance"):
            clock.advance(bad)


def test_noise_threshold_is_five_percent():
    assert NOISY_CV == 0.05
