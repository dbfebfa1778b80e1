"""The gate's cold start (issue 21.4): with fewer than 3 runs of history a loop is not gated (a warning says how many
more runs are needed), or, with --prior-noise, gated against a run-to-run noise the user states.

Runs are fixture 0001 (cifar100, five loops, 6 rounds each) with every round of a run set to one figure x a factor
per run, the rounds 0.2% apart: runs of the same code whose rounds agree within the run, as the measured ones do
(docs/gate.md), so the rounds alone call any run-to-run swing beyond the threshold a regression.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import fixture, run_series

from tf2bench.analysis import compare, noise, runs
from tf2bench.cli import main
from tf2bench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

LOOPS = ("fit", "eager", "tutorial", "tf_function", "tf_data")


def runs_at(folder, factors, start=1, drop=()):
    """One run per factor (all loops alike), numbered start..; loops in ``drop`` left out of every run."""
    doc = json.loads(fixture("0001").read_text())
    ref = {b["extra_info"]["loop"]: b["stats"]["data"][0] for b in doc["benchmarks"]}

    def rounds(k, bench):
        return [ref[bench["extra_info"]["loop"]] * factors[k] * (1 + 0.002 * j) for j in range(6)]

    out = run_series(folder, len(factors), rounds, start=start)
    for run in out:  # drop a loop from these runs: a loop new to the history later
        d = json.loads(run.path.read_text())
        d["benchmarks"] = [b for b in d["benchmarks"] if b["extra_info"]["loop"] not in drop]
        run.path.write_text(json.dumps(d))
    return [runs.load(r.path, True) for r in out]


@pytest.mark.parametrize("earlier", [0, 1])
def test_a_cold_start_is_not_gated_and_says_how_many_runs_are_needed(tmp_path, earlier):
    """The issue's case: runs of the same code 30% apart (this machine's scatter from one run to the next)."""
    history = runs_at(tmp_path / "h", [1.0] * (earlier + 1))
    cur = runs_at(tmp_path / "c", [1.3], start=earlier + 2)[0]
    rounds_alone = compare.compare(history[-1], cur)  # what compare did before with < 3 runs: a false alarm per loop
    assert len(rounds_alone.regressions) == len(LOOPS)
    cold = compare.compare(history[-1], cur, history=history)
    assert cold.regressions.empty
    assert set(cold.table["verdict"]) == {compare.NOT_GATED[True]}
    assert (cold.table["detects_pct"] == math.inf).all()
    (warning,) = [n for n in cold.notes if n.startswith("WARNING")]
    runs_seen = earlier + 1
    assert f"not gated yet: {runs_seen} run(s) of this machine up to the baseline" in warning
    assert f"{noise.MIN_RUNS - runs_seen} more main run(s)" in warning
    assert "--prior-noise" in warning


def test_from_three_runs_on_the_gate_measures_the_noise(tmp_path):
    history = runs_at(tmp_path / "h", [1.0, 1.02, 0.99])
    cur = runs_at(tmp_path / "c", [2.0], start=4)[0]
    cmp = compare.compare(history[-1], cur, history=history)
    assert compare.NOT_GATED[True] not in set(cmp.table["verdict"])
    assert not [n for n in cmp.notes if n.startswith("WARNING")]
    assert len(cmp.regressions) == len(LOOPS)  # twice as slow against a 1-2% scatter


def test_a_stated_prior_gates_a_gross_slowdown_but_not_a_run_to_run_swing(tmp_path):
    history = runs_at(tmp_path / "h", [1.0])
    swing = runs_at(tmp_path / "s", [1.3], start=2)[0]
    gross = runs_at(tmp_path / "g", [3.0], start=3)[0]
    prior = 12.0
    quiet = compare.compare(history[-1], swing, history=history, prior_pct=prior)
    assert quiet.regressions.empty
    # the change over the prior's sd x sqrt(2) (one baseline run), a normal test: z = ln 1.3 / (ln 1.12 sqrt 2) = 1.64
    z = math.log(1.3) / (math.log1p(prior / 100) * math.sqrt(2))
    from scipy.stats import norm

    assert quiet.table["run_p"].to_numpy() == pytest.approx(norm.sf(z), rel=1e-6)
    assert set(quiet.table["verdict"]) == {compare.RUN_NOISE[True]}
    assert quiet.table["run_sd_pct"].to_numpy() == pytest.approx(prior)
    loud = compare.compare(history[-1], gross, history=history, prior_pct=prior)
    assert len(loud.regressions) == len(LOOPS)
    (warning,) = [n for n in loud.notes if n.startswith("WARNING")]
    assert "gated against a stated prior" in warning
    assert "of 12%" in warning
    # what a pass means then: the normal test's limit at alpha / 5 loops, with power 0.8
    expected = math.expm1((norm.ppf(1 - 0.01 / 5) + norm.ppf(0.8)) * math.log1p(prior / 100) * math.sqrt(2))
    assert loud.table["detects_pct"].to_numpy() == pytest.approx(100 * expected, rel=1e-6)


def test_the_prior_yields_to_runs_that_already_scatter_more(tmp_path):
    history = runs_at(tmp_path / "h", [1.0, 1.5])  # one successive difference of ln 1.5: sd ln(1.5) / sqrt 2
    cur = runs_at(tmp_path / "c", [1.0], start=3)[0]
    cmp = compare.compare(history[-1], cur, history=history, prior_pct=12.0)
    seen = 100 * math.expm1(math.log(1.5) / math.sqrt(2))
    assert cmp.table["run_sd_pct"].to_numpy() == pytest.approx(seen, rel=1e-3)  # 33%, not the stated 12%


def test_a_loop_new_to_a_measured_history_is_not_gated(tmp_path):
    history = runs_at(tmp_path / "h", [1.0, 1.01, 0.99, 1.0], drop=("tf_data",))
    base = runs_at(tmp_path / "b", [1.0], start=5)[0]  # the baseline has it: added at this commit
    cur = runs_at(tmp_path / "c", [1.0], start=6)[0]
    doc = json.loads(cur.path.read_text())
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["loop"] in ("tf_data", "eager"):  # both 50% slower, alone (not the workload)
            bench["stats"]["data"] = [1.5 * t for t in bench["stats"]["data"]]
    cur.path.write_text(json.dumps(doc))
    cur = runs.load(cur.path, True)
    cmp = compare.compare(base, cur, history=compare.lookback(base, cur, [*history, base]))
    verdicts = dict(zip(cmp.table["benchmark"].str.split("/").str[-1], cmp.table["verdict"], strict=True))
    assert verdicts.pop("tf_data") == compare.NOT_GATED[True]
    assert verdicts.pop("eager") == compare.REGRESSION  # measured: 1% scatter, 50% stands out
    assert set(verdicts.values()) == {compare.OK}
    (warning,) = [n for n in cmp.notes if n.startswith("WARNING")]
    assert "not gated yet: loop(s) new to the history" in warning
    assert "1 loop(s) cannot fail the gate" in warning


def test_the_prior_keeps_the_gate_s_false_alarm_rate_when_the_machine_is_no_noisier():
    """Simulated A/A pairs with no earlier run: any false alarm over 10 loops stays <= alpha when the run-to-run SD
    is the stated one (BH at 0.01 over independent loops: 1 - (1 - 0.001)^10 = 0.995%), and not when it is twice."""
    rng = np.random.default_rng(7)
    prior, m, pairs = 10.0, 10, 2000
    keys = [("w", "a", f"v{i}") for i in range(m)]
    rates = {}
    for true_pct in (prior, 2 * prior):
        sd = math.log1p(true_pct / 100)
        alarms = 0
        for _ in range(pairs):
            base, cur = rng.normal(0.0, sd, m), rng.normal(0.0, sd, m)
            noises = noise.prior([dict(zip(keys, base, strict=True))], keys, prior)
            ps = [noise.run_p_value(c - b, noises[k]) for k, b, c in zip(keys, base, cur, strict=True)]
            alarms += any(p <= noise.bh_cutoff(ps, 0.01, m) for p in ps)
        rates[true_pct] = alarms / pairs
    # binomial: 2000 pairs at 0.995% -> 19.9 expected, sd 4.5; 3 sd above
    assert rates[prior] <= (0.00995 * pairs + 3 * math.sqrt(0.00995 * pairs)) / pairs
    assert rates[2 * prior] > 0.05  # a machine twice as noisy as stated: the reason no default prior is set


def test_cli_cold_start_exit_0_and_the_prior_option(tmp_path, capsys):
    history = runs_at(tmp_path, [1.0, 2.5])  # beside each other: the default history
    rc = main(["compare", str(history[0].path), str(history[1].path)])
    out = capsys.readouterr().out
    assert rc == EXIT_OK
    assert "not gated yet" in out
    assert "no regression" in out
    rc = main(["compare", str(history[0].path), str(history[1].path), "--prior-noise", "12"])
    assert rc == EXIT_FAILED  # 2.5x: z = ln 2.5 / (ln 1.12 sqrt 2) = 5.7
    assert "gated against a stated prior" in capsys.readouterr().out
    assert main(["compare", str(history[0].path), str(history[1].path), "--prior-noise", "0"]) == EXIT_BAD_INPUT
    assert "--prior-noise must be a positive percentage" in capsys.readouterr().err
