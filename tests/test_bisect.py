"""tf2bench bisect's search (tf2bench.analysis.bisection) on fake measurements: which commit is probed, what an
ambiguous probe does, when a step is not reproducible or cannot be told. The command itself: test_bisect_command.py."""

from __future__ import annotations

import math

import pytest

from tf2bench.analysis import bisection
from tf2bench.analysis.bisection import AMBIGUOUS, BAD, CANNOT_TELL, FOUND, GOOD, NOT_REPRODUCIBLE, Run

TF_FUNCTION = ("mnist", "functional", "tf_function")
TF_DATA = ("mnist", "functional", "tf_data")
STEP = math.log(1.2)  # the planted step: +20% time per sample
JITTER = (1.0, 1.01, 0.99, 1.02, 0.98)  # a run's rounds about its level; their median is the level exactly
WOBBLE = 0.02  # run-to-run: runs of a commit alternate +-2% about its level


class Line:
    """A fake commit line 0..n: ``level(i, k)`` is the log time per sample of commit i's k-th run (tf_function; the
    other loop never changes). Records the order in which commits were measured."""

    def __init__(self, n: int, level) -> None:
        self.n, self.level, self.calls = n, level, []

    def __call__(self, i: int) -> Run:
        k = self.calls.count(i)
        self.calls.append(i)
        x = self.level(i, k)
        return Run({TF_FUNCTION: [1e-3 * math.exp(x) * j for j in JITTER], TF_DATA: [2e-3 * j for j in JITTER]})

    def probes(self) -> list[int]:
        return [i for i in dict.fromkeys(self.calls) if i not in (0, self.n)]


def one_step(first_bad: int, step: float = STEP, wobble: float = WOBBLE, middle: int | None = None):
    """Commits from first_bad on are ``step`` slower, runs alternate +-wobble, commit ``middle`` is exactly half way."""
    return lambda i, k: step / 2 if i == middle else (step if i >= first_bad else 0.0) + (wobble if k % 2 else -wobble)


def search(line: Line, **kw) -> bisection.Outcome:
    said: list[str] = []
    kw = {"ends_runs": 4, "max_runs": 3, **kw}
    out = bisection.Bisection(line.n, line, say=said.append, **kw).search()
    out.said = said
    return out


def test_finds_the_step_probing_the_binary_search_path():
    line = Line(16, one_step(11))
    out = search(line)
    assert (out.status, out.hi, out.lo) == (FOUND, 11, 10)
    assert line.probes() == [8, 12, 10, 11]  # halving 0..16 towards 11
    assert [looks[-1].verdict for _, looks in out.probes] == [GOOD, BAD, GOOD, BAD]
    assert line.calls[:8] == [0, 16] * 4  # the ends first, interleaved
    assert out.keys == [TF_FUNCTION]  # tf_data never changed: not part of the score
    assert out.slowdown == pytest.approx(STEP, abs=2 * WOBBLE)
    assert out.p_value < 0.01


@pytest.mark.parametrize("first_bad", range(1, 17))
def test_every_position_is_found_in_log2_probes(first_bad):
    line = Line(16, one_step(first_bad))
    out = search(line)
    assert (out.status, out.hi) == (FOUND, first_bad)
    assert len(line.probes()) <= 4
    assert out.looks == len(line.probes())


def test_no_step_between_the_ends_is_not_reproducible():
    line = Line(16, lambda i, k: 0.05 if k % 2 else -0.05)
    out = search(line)
    assert out.status == NOT_REPRODUCIBLE
    assert not out.keys
    assert "do not differ" in out.reason
    assert line.probes() == []
    # what these runs could have found: (t(0.995, 6 df) 3.707 + t(0.8, 6 df) 0.906) x sd 5.77% x sqrt(1/4 + 1/4);
    # tf_data never scatters: the threshold (10%) is the smallest step it counts
    assert [round(s.detects_pct, 1) for s in out.steps] == [20.7, 10.0]
    assert "detect a step from 10%" in out.reason


def test_a_step_below_the_threshold_is_not_reproducible():
    line = Line(4, one_step(2, step=math.log(1.08)))  # +8%: significant, but the gate counts > 10% only
    out = search(line)
    (s,) = [s for s in out.steps if s.key == TF_FUNCTION]
    assert s.p_runs < 0.01
    assert not s.stepped
    assert out.status == NOT_REPRODUCIBLE


def test_a_probe_between_the_levels_is_measured_again_then_cannot_tell():
    line = Line(16, one_step(9, middle=8))  # commit 8 is half way: both ends' tests reject, run after run
    out = search(line, max_runs=3)
    assert out.status == CANNOT_TELL
    assert (out.lo, out.hi) == (0, 16)
    assert line.calls.count(8) == 3  # the stated limit, then stop: no guess
    assert line.probes() == [8]
    assert all(v.verdict == AMBIGUOUS for v in out.probes[0][1])
    assert "between the two levels" in out.reason


def test_a_probe_too_close_to_either_end_cannot_tell():
    # the ends scatter +-5% about a 28% step: a probe half way is within reach of both; two runs do not settle it
    line = Line(16, one_step(16, step=0.25, wobble=0.05, middle=8))
    out = search(line, max_runs=2)
    assert [s.stepped for s in out.steps] == [True, False]
    assert out.status == CANNOT_TELL
    assert line.calls.count(8) == 2
    assert "near neither (position 0.50" in out.reason
    assert all(v.p_slower >= 0.01 and v.p_faster >= 0.01 for v in out.probes[0][1])


def test_an_ambiguous_first_run_is_resolved_by_measuring_again():
    # commit 8's first run lands half way (both ends' tests reject), its next ones at BAD's level
    line = Line(16, lambda i, k: STEP / 2 if (i, k) == (8, 0) else one_step(5)(i, k))
    out = search(line)
    first = out.probes[0]
    assert first[0] == 8
    assert [v.verdict for v in first[1]] == [AMBIGUOUS, BAD]
    assert (out.status, out.hi) == (FOUND, 5)


def test_classify_reads_both_ends():
    def runs_at(level: float, n: int = 4) -> list[Run]:
        line = Line(1, lambda i, k: level + (WOBBLE if k % 2 else -WOBBLE) * (n > 1))
        return [line(0) for _ in range(n)]

    good, bad, keys = runs_at(0.0), runs_at(STEP), [TF_FUNCTION]
    call = lambda x, sd=WOBBLE: bisection.classify(runs_at(x, 1), good, bad, sd, 6, keys, 0.01)  # noqa: E731
    assert call(0.0).verdict == GOOD
    assert call(0.0).position == pytest.approx(0.0, abs=1e-9)
    assert call(STEP).verdict == BAD
    assert call(STEP).position == pytest.approx(1.0)
    assert call(STEP).vs_good == pytest.approx(STEP)  # the ends' means: GOOD's runs wobble about 0
    # the drift seen on a real run: a probe of BAD's code 2.8% faster than BAD's runs (significantly so), step 19%
    drifted = bisection.classify(runs_at(STEP - math.log(1.028), 1) * 3, good, bad, 0.012, 8, keys, 0.01)  # 3 runs
    assert drifted.p_faster < 0.01
    assert drifted.verdict == BAD
    # half way: significant against both ends, near neither
    assert call(STEP / 2).p_slower < 0.01
    assert call(STEP / 2).p_faster < 0.01
    assert call(STEP / 2).verdict == AMBIGUOUS
    # a load burst that slowed a good commit's run two thirds of the way (seen: position 0.68): measured again
    assert call(0.68 * STEP).verdict == AMBIGUOUS
    assert call(0.0, sd=0.5).verdict == AMBIGUOUS  # too noisy to be slower or faster than anything
    assert call(STEP * (1 - bisection.MARGIN)).verdict == BAD  # the margin: within a quarter step of BAD's level


def test_a_probe_that_cannot_be_measured_stops_the_search():
    def level(i, k):
        if i == 8:
            raise bisection.MeasureError("pytest exited 4 and saved no run")
        return one_step(3)(i, k)

    out = search(Line(16, level))
    assert out.status == CANNOT_TELL
    assert "could not be measured: pytest exited 4" in out.reason
