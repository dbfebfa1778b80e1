"""Presets: how much data and how many steps a suite run uses (pyperf's --fast/--rigorous)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tf2bench.errors import UnknownNameError


@dataclass(frozen=True)
class Preset:
    """Defaults a suite run starts from; command-line options override single fields."""

    name: str
    description: str
    steps: dict[str, int] = field(default_factory=dict)  # steps per timed window, per workload
    rounds: int = 3
    warmup_steps: int = 1
    epochs: int | None = None  # whole-epoch windows instead of step windows
    train_size: dict[str, int | None] = field(default_factory=dict)  # None: all available
    test_size: dict[str, int | None] = field(default_factory=dict)
    default_steps: int = 20
    # Calibrated windows (pyperf's min_time): with min_window_s set, ``steps`` is the floor and each workload and
    # API gets the steps that make its reference loop's window last min_window_s, at most max_steps (suite.runner).
    min_window_s: float | None = None
    # The cap on a calibrated window is set by memory and by time, never by a fixed step count (a GPU step of a small
    # model takes ~0.1 ms: 500 steps were 50 ms, a quarter of quick's minimum): the window's own arrays (fit and
    # tf_function copy each window's batches) at most max_window_bytes, and a sanity ceiling of max_steps.
    max_steps: int = 100_000
    max_window_bytes: int = 256 * 2**20
    # A loop whose rounds would take longer than this in all (eager, tutorial: slow steps, same steps per window)
    # runs fewer, never fewer than min_rounds; the record says why. Calibrated windows only; --rounds turns it off.
    round_budget_s: float | None = None
    min_rounds: int = 3

    def steps_for(self, workload: str) -> int:
        return self.steps.get(workload, self.default_steps)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "quick",
            "the default: all 60 cases in under 10 minutes on 2 CPU cores; data subsets, 5 short windows",
            # Trimmed (from 20/50) when the loops went from 5 to 10: the preset's wall time must stay under
            # 10 min on 2 cores, and the cost is in steps (eager, tutorial) and compiles (XLA), not cases.
            # 5 windows, not 3: with 3 rounds a side a Mann-Whitney test cannot reach p < 0.01, so
            # `tf2bench compare` could never flag a regression between two quick runs. Same timed steps.
            # The steps are the floor: windows are calibrated to last >= 0.2 s (a GPU step of these models takes ~1 ms;
            # 15 of them would be timed in ~15 ms, mostly jitter), and a loop whose 5 windows would take more than 5 s
            # (eager, tutorial) runs 3 of them.
            steps={"mnist": 6, "cifar100": 15},
            rounds=5,
            train_size={"mnist": 4000, "cifar100": 5000},
            test_size={"mnist": 1000, "cifar100": 1000},
            min_window_s=0.2,
            round_budget_s=5.0,
            min_rounds=3,
        ),
        Preset(
            "smoke",
            "a handful of steps on tiny subsets: checks that everything runs, measures nothing",
            steps={},
            default_steps=2,
            rounds=2,
            train_size={"mnist": 256, "cifar100": 256},
            test_size={"mnist": 128, "cifar100": 128},
        ),
        Preset(
            "rigorous",
            "longer windows and more rounds for figures worth quoting (tens of minutes on a CPU)",
            steps={"mnist": 50, "cifar100": 150},
            rounds=7,
            warmup_steps=3,
            train_size={"mnist": 4000, "cifar100": 10000},
            test_size={"mnist": 1000, "cifar100": 2000},
            min_window_s=1.0,
            max_window_bytes=512 * 2**20,
            round_budget_s=30.0,
            min_rounds=5,  # a Mann-Whitney test between two runs can still reach p < 0.01 (5 vs 5 rounds)
        ),
        Preset(
            "tutorial",
            "the tutorial's setting: full datasets, 5 epochs, batch 32 (reproduces its accuracy table)",
            rounds=5,
            epochs=5,
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError("preset", name, PRESETS) from None
