"""One benchmark: build, warm up, timed windows, evaluate, and the result record.

The runner owns everything around the loop (Orbit's split): the loop only
trains steps. Evaluation and fingerprints happen outside the timed windows, and so
does the optional profile window (after the timed rounds, before evaluation).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf2bench import nest
from tf2bench.analysis import equivalence
from tf2bench.errors import BadInputError, DivergedError, NoisyMeasurementWarning, reason
from tf2bench.loops import BatchPlan, RunConfig, TrainContext, WindowResult, get_loop, loss_scale_record, loss_scaled
from tf2bench.measure import envinfo, memory, peak, profiling, timing
from tf2bench.measure.timing import noisy_message, window_stats
from tf2bench.saved import record
from tf2bench.workloads import Workload, build
from tf2bench.workloads.data import Dataset

# Calibrated windows: untimed steps after the warm-up up to this step, where the weight tier's checkpoint falls
# (analysis/equivalence.py: 8..32; long windows would end past it) and where each loop's window time is estimated.
SETTLE_TO = 16


@dataclass(frozen=True)
class WindowSizing:
    """How a benchmark's windows were sized (saved with it) and the budget that may cut its rounds
    (tf2bench.suite.plan.Planner.windows decides it)."""

    source: str = "option"  # calibrated | preset | option (steps given) | epochs
    calibration: dict[str, Any] | None = None  # calibrate_case's record, the same for every loop of the case
    round_budget_s: float | None = None  # rounds that would take longer in all run fewer (timing.planned_rounds)
    min_rounds: int = 3


def check_fit(workload: Workload, api: str, model: Any, loss_fn: Any, x: Any, y: np.ndarray) -> None:
    """The data, the model and the loss fit together: a clear error now, not a traceback mid-loop."""
    out = build.call_on_sample(workload, api, model, x)
    try:
        loss_fn(y, out)  # a NaN here is left to the loop: it fails with the steps where it happened
    except Exception as exc:  # shapes or dtypes the loss cannot take
        raise BadInputError(
            f"workload {workload.name!r}: the loss cannot take labels {y.shape} {y.dtype} and model {api!r}'s "
            f"outputs {tuple(np.shape(out))}: {type(exc).__name__}: {reason(exc)}"
        ) from exc


class BenchmarkRun:
    """Trains one (workload, api, loop) case; call warmup(), window() × rounds, [profile()], result()."""

    def __init__(
        self,
        workload: Workload,
        api: str,
        loop: str,
        dataset: Dataset,
        config: RunConfig,
        sizing: WindowSizing | None = None,
    ) -> None:
        self.workload, self.api, self.dataset, self.config = workload, api, dataset, config
        self.sizing = sizing or WindowSizing(source="epochs" if config.epochs else "option")
        self.case_id = f"{workload.name}-{api}-{loop}-s{config.seed}"
        loop_cls = get_loop(loop)  # unknown names fail before any work
        sample = nest.take(dataset.x_train, slice(0, 2))

        def build_model() -> Any:
            with loop_cls.model_scope(config):  # e.g. a mixed-precision policy, restored on leaving
                return build.build(workload, api, config.seed, sample)

        self.model = build_model()
        self.init_fingerprint = build.weights_fingerprint(self.model)
        self.init_weights = build.weights_image(self.model)
        self.checkpoint: dict[str, Any] | None = None  # the weights at the first window end past CHECK_MIN_STEPS
        self.loss_fn = workload.make_loss()
        check_fit(workload, api, self.model, self.loss_fn, sample, dataset.y_train[:2])
        optimizer = loss_scaled(workload.make_optimizer(), self.model)  # a float16 model's loss is scaled
        optimizer.build(self.model.trainable_variables)
        self.plan = BatchPlan(len(dataset.y_train), loop_cls.global_batch_size(config), config.seed)
        self.steps_per_window = self.plan.steps_per_epoch if config.epochs else config.steps
        self.rounds = self.rounds_planned = config.epochs or config.rounds
        self.rounds_reason: str | None = None
        calibrated = self.sizing.source == "calibrated" and not config.epochs
        self.settle_steps = max(1, SETTLE_TO - config.warmup_steps) if calibrated else 0
        # The test set is evaluated after the same number of steps in every loop of a case, so the quality tier
        # compares models trained alike: after the rounds the slowest loop may be cut to (min_rounds), not at the end.
        cut = calibrated and self.sizing.round_budget_s is not None
        self.eval_after = min(self.sizing.min_rounds, self.rounds) if cut else None
        self.evaluation: tuple[float, float, np.ndarray] | None = None
        self.eval_steps: int | None = None
        ctx = TrainContext(
            model=self.model,
            optimizer=optimizer,
            loss_fn=self.loss_fn,
            x=dataset.x_train,
            y=dataset.y_train,
            plan=self.plan,
            config=config,
            total_steps=config.warmup_steps
            + self.settle_steps
            + self.rounds * self.steps_per_window
            + config.profile_steps,
            build_model=build_model,
        )
        self.loop = loop_cls(ctx)
        t0 = time.perf_counter()
        self.loop.setup()
        self.setup_build_s = time.perf_counter() - t0
        self.model = ctx.model  # a distributed loop rebuilds the model under its strategy (same weights)
        self.position = 0
        self.first: WindowResult | None = None
        self.windows: list[WindowResult] = []
        self.profile_summary: dict[str, Any] | None = None
        # training's memory only: opened after the warm-up, paused around an evaluation, closed after the last window
        self.memory = memory.PeakMemory()

    def _run(self, steps: int, *, marked: bool = False) -> WindowResult:
        start = self.position
        result = (self.loop.profile if marked else self.loop.run)(start, steps)
        self.position += steps
        if not math.isfinite(result.loss):
            raise DivergedError(
                f"{self.loop.name}: loss became {result.loss} within steps {start}..{start + steps - 1}"
            )
        # The weights the weight tier judges: the first window end with enough steps for a defect to show, early
        # enough that rounding has not been amplified (analysis/equivalence.py). Untimed: the window's clock stopped.
        if self.checkpoint is None and equivalence.CHECK_MIN_STEPS <= self.position <= equivalence.HORIZON_STEPS:
            self.checkpoint = {"step": self.position, **build.weights_image(self.model)}
        return result

    def warmup(self) -> float:
        """The first steps, tracing/compilation included; their time is ``first_step_s``.

        With calibrated windows, untimed steps follow up to SETTLE_TO (the weight tier's checkpoint); their pace
        estimates this loop's window, and a loop whose rounds would overrun the budget runs fewer of them.
        """
        self.first = self._run(self.config.warmup_steps)
        if self.settle_steps:
            estimate = self._run(self.settle_steps).seconds / self.settle_steps * self.steps_per_window
            budget = self.sizing.round_budget_s
            self.rounds = timing.planned_rounds(self.rounds_planned, estimate, budget, self.sizing.min_rounds)
            if self.rounds < self.rounds_planned:
                self.rounds_reason = (
                    f"windows of ~{estimate:.2g} s: {self.rounds} rounds, not {self.rounds_planned}, to keep the "
                    f"timed rounds near the {budget:g} s budget"
                )
        self.memory.start()
        return self.first.seconds

    def window(self) -> float:
        """One timed steady-state window; returns its seconds."""
        result = self._run(self.steps_per_window)
        self.windows.append(result)
        if len(self.windows) >= self.rounds:
            self.memory.pause()  # the last timed window: nothing after it (profile, evaluation, peak) counts
        if len(self.windows) == self.eval_after:  # untimed: the window's clock has stopped
            self.memory.pause()
            self._evaluate()
            if len(self.windows) < self.rounds:
                self.memory.start()
        return result.seconds

    def _evaluate(self) -> None:
        self.evaluation = build.evaluate(self.model, self.loss_fn, self.dataset.x_test, self.dataset.y_test)
        self.eval_steps = self.position

    def profile(self, logdir: Path) -> dict[str, Any]:
        """Train ``config.profile_steps`` more steps under the profiler, untimed; returns the trace summary.

        Runs once, after every timed round: each loop trains these steps at the same point, traced
        or not, so batch order and weights stay comparable. A trace that cannot be had is recorded as
        ``{"error": ...}``; the benchmark keeps its results.
        """
        steps = self.config.profile_steps
        if steps <= 0:
            raise RuntimeError("profile() needs RunConfig(profile_steps > 0): pipelines are sized for it")
        if self.profile_summary is not None:
            raise RuntimeError("this run was already profiled: the profile window runs once, after the timed rounds")
        if len(self.windows) != self.rounds:
            raise RuntimeError(f"profile() after all {self.rounds} timed windows, not after {len(self.windows)}")
        self.memory.pause()
        start = self.position
        # loops whose window runs as a while_loop profile it in marked blocks of several train steps
        per_marked = getattr(self.loop, "train_steps_per_marked_step", lambda _steps: 1)(steps)
        _, summary = profiling.profile_window(Path(logdir), lambda: self._run(steps, marked=True), per_marked, steps)
        self.profile_summary = {"steps": steps, "first_step": start, **summary}
        return self.profile_summary

    def result(self) -> dict[str, Any]:
        """The record saved in benchmark.extra_info (names are stable: report/compare read them)."""
        if self.first is None or not self.windows:
            raise RuntimeError("result() before warmup() and at least one window()")
        memory_record = self.memory.record()  # read before evaluation and the matmul peak allocate their own
        samples = self.loop.samples_per_step
        stats = window_stats([w.seconds for w in self.windows], [self.steps_per_window] * len(self.windows), samples)
        return record.finish(
            {**self._timing(stats), **self._quality(), **self._compute(stats), **self._environment(memory_record)}
        )

    def _timing(self, stats: Any) -> dict[str, Any]:
        """The case, how long it trained and how fast: the timed windows' figures."""
        return {
            "workload": self.workload.name,
            "api": self.api,
            "loop": self.loop.name,
            "loop_description": self.loop.description,
            "dataset": dict(self.dataset.provenance),
            "batch_size": self.config.batch_size,
            "samples_per_step": self.loop.samples_per_step,
            "steps": self.steps_per_window,
            "rounds": len(self.windows),
            "rounds_planned": self.rounds_planned,
            "rounds_reason": self.rounds_reason,
            "window_steps_source": self.sizing.source,
            "calibration": self.sizing.calibration,
            "warmup_steps": self.config.warmup_steps,
            "settle_steps": self.settle_steps,
            "steps_total": self.position,
            "epochs": round(self.position / self.plan.steps_per_epoch, 4),
            "seed": self.config.seed,
            "jit_compile": self.config.jit_compile,
            **stats.record(),  # samples_per_sec (min, max), cv, noisy, step_time_ms (p90)
            "window_s": [w.seconds for w in self.windows],
            "first_step_s": self.first.seconds,
            "setup_s": statistics.median(w.setup_s for w in self.windows),
            "build_s": self.setup_build_s,
            "epoch_s": stats.window_s_median if self.config.epochs else None,
            "traces": self.loop.trace_count(),
        }

    def _quality(self) -> dict[str, Any]:
        """What it learned: losses, test accuracy, and the two tiers' inputs (analysis/equivalence.py): a compact image
        of the weights before and after, the tolerance this loop's arithmetic allows, per-sample correctness."""
        if self.evaluation is None:
            self._evaluate()
        acc, loss, correct = self.evaluation
        return {
            "eval_steps": self.eval_steps,  # the steps trained when the test set was evaluated
            "train_loss": self.windows[-1].loss,
            "test_accuracy": acc,
            "test_loss": loss,
            "init_fingerprint": self.init_fingerprint,
            "final_fingerprint": build.weights_fingerprint(self.model),
            "init_weights": self.init_weights,
            "weights_checkpoint": self.checkpoint,  # what the weight tier judges: {"step": n, "sketch", "norm"}
            "weights": build.weights_image(self.model),  # final
            "weight_tier": self.loop.weight_tier(build.random_layers(self.model)),
            "test_samples": len(correct),
            "test_correct": equivalence.pack_correct(correct),
        }

    def _compute(self, stats: Any) -> dict[str, Any]:
        """Parameters, FLOPs and MFU: against the peak of the loop's own compute precision (bf16/fp16 for `mixed`),
        measured once per dtype."""
        flops = build.flops_per_sample(self.workload)
        return {
            "params": build.param_count(self.model),
            "flops_per_sample": flops.train if flops else None,
            "flops_per_sample_forward": flops.forward if flops else None,
            # gflops_per_sec, mfu (/ peak_gflops of peak_dtype), mfu_error, compute_dtype, peak_matmul_n
            **peak.mfu_record(flops.train if flops else None, stats.samples_per_sec, peak.compute_dtype(self.model)),
        }

    def _environment(self, memory_record: dict[str, Any]) -> dict[str, Any]:
        """Where and how it ran: the device, its memory, the precision, the profile, the loop's own keys, versions."""
        return {
            "device": envinfo.device(),
            **memory_record,  # peak_memory_bytes (device memory, every GPU), peak_memory (per device, or host)
            "mixed_precision": self.config.mixed_precision,
            **loss_scale_record(self.loop.ctx.optimizer),  # float16: the loss scale at the end
            "profile": self.profile_summary,
            **self.loop.info(),
            **{k: envinfo.versions()[k] for k in ("tf_version", "keras_version")},
        }


Rounds = Callable[[Callable[[], float], int], None]


def _own_rounds(window: Callable[[], float], rounds: int) -> None:
    for _ in range(rounds):
        window()


def run_case(
    run: BenchmarkRun,
    *,
    repeat: int = 0,
    rounds: Rounds = _own_rounds,
    profile_dir: Path | None = None,
    case_id: str = "",
    warn_stacklevel: int = 2,
    result: bool = True,
) -> dict[str, Any] | None:
    """The one run sequence every entry point uses: warm-up -> timed rounds -> [profile window] -> evaluate -> record.

    ``rounds(window, n)`` runs the n timed windows: the suite hands them to pytest-benchmark (which times them on
    the windows' own clock), the Python API and the multi-worker chief just call them. A noisy result warns
    (NoisyMeasurementWarning), the same way for every entry point. ``result=False`` stops after the rounds (a
    multi-worker run's other workers train in lockstep with the chief, which alone records the result).
    """
    run.warmup()
    rounds(run.window, run.rounds)
    if profile_dir is not None:
        run.profile(profile_dir)
    if not result:
        return None
    info = {**run.result(), "repeat": repeat}
    if info["noisy"]:
        warnings.warn(
            NoisyMeasurementWarning(
                f"{noisy_message(case_id or run.case_id, info['cv'])}; use --repeat or --preset rigorous before "
                "trusting this figure"
            ),
            stacklevel=warn_stacklevel,
        )
    return info


def machine_record() -> dict[str, Any]:
    """tf2bench's part of a run's machine_info: versions, device, and every matmul peak measured (MFU's divisors)."""
    return {
        **envinfo.machine_info(),
        "peak_matmul": peak.peak().as_dict(),  # float32, for readers from before the per-dtype peaks
        "peaks": peak.peaks(),  # every precision measured; a result's compute_dtype keys it
    }
