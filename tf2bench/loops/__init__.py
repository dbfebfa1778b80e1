"""The training loops. Each module holds one family; this file registers them in one explicit order,
the order a suite runs them and reports show them (fit first: every speed-up and verdict is against it)."""

from tf2bench.loops.base import (
    LOOPS,
    BatchPlan,
    Loop,
    RunConfig,
    TrainContext,
    WindowResult,
    compile_step,
    get_loop,
    loss_scale_record,
    loss_scaled,
    register_loop,
    train_step,
)
from tf2bench.loops.compiled import GraphLoop, GraphXla, TfData, TfFunction, Xla
from tf2bench.loops.distributed import FitMirrored, Mirrored, MultiWorker
from tf2bench.loops.eager import Eager, Tutorial
from tf2bench.loops.fit import Fit, FitSpe, FitXla
from tf2bench.loops.mixed import GraphMixed, Mixed

for _loop in (
    Fit, Eager, Tutorial, TfFunction, TfData, FitXla, FitSpe, Xla, GraphLoop, GraphXla, Mixed, GraphMixed,
    Mirrored, FitMirrored, MultiWorker,
):  # fmt: skip
    register_loop(_loop)

__all__ = [
    "LOOPS",
    "BatchPlan",
    "RunConfig",
    "TrainContext",
    "Loop",
    "WindowResult",
    "compile_step",
    "get_loop",
    "loss_scale_record",
    "loss_scaled",
    "register_loop",
    "train_step",
]
