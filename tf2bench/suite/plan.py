"""The one case planner: from validated options to benchmarks ready to run, for every entry point.

The pytest plugin, ``tf2bench.benchmark`` (and its worker processes) and the multi-worker chief all call
:class:`Planner`, so a case is planned once, the same way: which cases and in what order (repeat-major, so every
loop sees the same machine drift), each workload's data (loaded once), each benchmark's RunConfig, and how its
windows are sized (a calibrated preset calibrates once per workload and API; a worker process of ``--processes N``
times its share of the rounds with the windows the first worker calibrated). The walk goes down only:
option -> ``suite.options`` (parsed, validated) -> here -> ``suite.runner`` (the run sequence) -> ``loops/``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tf2bench.loops import RunConfig
from tf2bench.measure import profiling
from tf2bench.saved import storage
from tf2bench.suite.calibration import calibrate_case
from tf2bench.suite.options import Case, SuiteOptions
from tf2bench.suite.runner import BenchmarkRun, WindowSizing
from tf2bench.workloads import data, get_workload
from tf2bench.workloads.data import Dataset

Say = Callable[[str], None]


def round_share(total: int, process: int, processes: int) -> int:
    """The rounds worker ``process`` (1..processes) times of a benchmark's ``total``: spread evenly, the first
    processes taking the remainder, at least one each (a process that timed nothing would tell nothing of its level).
    ``process`` 0 is not a worker: all of them."""
    if process == 0 or processes <= 1:
        return total
    return max(1, total // processes + (process <= total % processes))


def calibration_line(workload: str, api: str, cal: dict[str, Any]) -> str:
    """What the progress output says about a case's calibration."""
    if "error" in cal:
        return f"tf2bench: {workload} {api}: windows not calibrated, {cal['floor_steps']} steps ({cal['error']})"
    line = (
        f"tf2bench: {workload} {api}: windows of {cal['steps']} steps ({cal['reference_loop']} "
        f"{1000 * cal['step_s']:.2f} ms/step; >= {cal['min_window_s']:g} s, floor {cal['floor_steps']}, "
        f"cap {cal['max_steps']}{' by ' + cal['cap_by'] if cal.get('cap_by') else ''})"
    )
    return f"{line}: {cal['cap_note']}" if cal.get("cap_note") else line


class Planner:
    """One run's plan: its cases, their data, and each benchmark ready for ``runner.run_case``.

    ``say(line)``, if given, announces each calibration and each data fallback. ``calibrations``: (workload, api) ->
    the calibration record, shared with later worker processes (``suite.processes.load_calibrations`` gives a worker
    the first one's); the planner fills it in place, so the caller keeps what was calibrated.
    """

    def __init__(self, options: SuiteOptions, *, say: Say | None = None, calibrations: dict | None = None) -> None:
        self.options = options
        self.say = say
        self.calibrations: dict = {} if calibrations is None else calibrations
        self._datasets: dict[str, Dataset] = {}
        self._trace_run_dir: Path | None = None

    def cases(self) -> list[Case]:
        """Repeat-major order (A B C A B C), so every loop sees the same machine drift; a workload's cases only for
        the APIs it declares."""
        o = self.options
        return [
            Case(r, s, w, a, loop)
            for r in range(o.repeat)
            for s in range(o.seed, o.seed + o.seeds)
            for w in o.workloads
            for a in o.apis
            if a in get_workload(w).models
            for loop in o.loops
        ]

    def share(self, total: int) -> int:
        """This process's share of ``total`` rounds (all of them outside a worker process)."""
        return round_share(total, self.options.process, self.options.processes)

    @property
    def profiles(self) -> bool:
        """Whether benchmarks here run a profile window: with --profile, and in a worker process only the first (one
        profile per benchmark)."""
        return self.options.profile and self.options.process <= 1

    def sizes(self, workload: str) -> tuple[int | None, int | None]:
        """Training and test samples to load: the options', else the preset's (None: all)."""
        o = self.options
        return o.train_size or o.preset.train_size.get(workload), o.test_size or o.preset.test_size.get(workload)

    def dataset(self, workload: str) -> Dataset:
        """``workload``'s data, loaded once with the options' sizes and source; a fallback (e.g. no Keras cache:
        embedded or synthetic data) is said through ``say`` and warned, as data.load warns it."""
        if workload not in self._datasets:
            train, test = self.sizes(workload)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loaded = data.load(get_workload(workload), self.options.dataset, train_size=train, test_size=test)
            for w in caught:
                if self.say is not None:
                    self.say(f"tf2bench: {w.message}")
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            self._datasets[workload] = loaded
        return self._datasets[workload]

    def run_config(self, workload: str, seed: int) -> RunConfig:
        """The benchmark's RunConfig before window sizing: the options over the preset's defaults."""
        o, p = self.options, self.options.preset
        epochs = o.epochs if o.epochs is not None else p.epochs
        epochs = self.share(epochs) if epochs else epochs  # a worker process times its share of the windows
        return RunConfig(
            batch_size=o.batch_size or get_workload(workload).batch_size,
            steps=o.steps or p.steps_for(workload),
            rounds=epochs or self.share(o.rounds or p.rounds),
            warmup_steps=o.warmup_steps or p.warmup_steps,
            seed=seed,
            epochs=epochs,
            profile_steps=o.profile_steps if self.profiles else 0,
            scaling=o.scaling,
            mixed_precision=o.mixed_precision,
        )

    def windows(self, workload: str, api: str, seed: int) -> tuple[RunConfig, WindowSizing]:
        """One benchmark's RunConfig and how its windows are sized.

        A preset with ``min_window_s`` calibrates the steps once per workload and API, at its first benchmark: every
        loop, seed and repeat then times the same steps (the weight tier compares loops after the same steps; repeats
        repeat the same measurement). ``--steps`` or ``--epochs`` fix the windows instead, and ``--rounds`` turns off
        the round budget.
        """
        o, p = self.options, self.options.preset
        config = self.run_config(workload, seed)
        if config.epochs or o.steps or p.min_window_s is None:
            return config, WindowSizing(source="epochs" if config.epochs else "option" if o.steps else "preset")
        cal = self._calibration(workload, api, config)
        if "error" in cal:  # no reference loop runs this model: the preset's steps, and why
            return config, WindowSizing(source="preset", calibration=cal)
        # a worker process's share of the budget and of the minimum rounds (the record keeps the whole run's: workers
        # after the first get it from tf2bench.suite.processes and time the same windows, calibrated once)
        budget = cal["round_budget_s"]
        if budget is not None and o.process:
            budget /= o.processes
        sizing = WindowSizing("calibrated", cal, budget, self.share(cal["min_rounds"]))
        return replace(config, steps=cal["steps"]), sizing

    def _calibration(self, workload: str, api: str, config: RunConfig) -> dict[str, Any]:
        if (workload, api) not in self.calibrations:
            p = self.options.preset
            cal = calibrate_case(
                get_workload(workload), api, self.dataset(workload), config, p.min_window_s, p.max_steps,
                p.max_window_bytes,
            )  # fmt: skip
            budget = None if self.options.rounds else p.round_budget_s
            self.calibrations[workload, api] = {**cal, "round_budget_s": budget, "min_rounds": p.min_rounds}
            if self.say is not None:
                self.say(calibration_line(workload, api, self.calibrations[workload, api]))
        return self.calibrations[workload, api]

    def prepare(self, case: Case) -> BenchmarkRun:
        """``case`` built and set up (model, optimizer, loop), windows sized: ready for ``runner.run_case``.
        Raises UnsupportedError for a loop this device cannot run, BadInputError for a wrong declaration."""
        config, sizing = self.windows(case.workload, case.api, case.seed)
        return BenchmarkRun(
            get_workload(case.workload), case.api, case.loop, self.dataset(case.workload), config, sizing
        )

    def trace_run_dir(self) -> Path | None:
        """This run's trace directory, made at the first call (None without --profile here): a new
        ``<trace_dir>/<run id>``, or in a worker process the ``trace_dir`` its parent made for the run."""
        if not self.profiles:
            return None
        if self._trace_run_dir is None:
            root = Path(self.options.trace_dir) if self.options.trace_dir else storage.TRACES
            self._trace_run_dir = root if self.options.process else profiling.new_run_dir(root)
            self._trace_run_dir.mkdir(parents=True, exist_ok=True)
        return self._trace_run_dir

    def profile_dir(self, case: Case) -> Path | None:
        """Where ``case``'s profile window writes its trace (None without --profile): one TensorBoard run per
        benchmark, named by workload, API and loop (and repeat and seed when they vary)."""
        run_dir = self.trace_run_dir()
        if run_dir is None:
            return None
        extra = [f"r{case.repeat}"] if case.repeat else []
        extra += [f"s{case.seed}"] if self.options.seeds > 1 or case.seed else []
        return run_dir / profiling.run_name(case.workload, case.api, case.loop, *extra)
