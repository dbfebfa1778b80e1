"""multi_worker: the launcher (``launch``, ``launch_scaling``) and one worker process (``run_worker``), run as
``python -m tf2bench.multiworker launch|worker``. The launcher picks ports and each worker's GPUs without
initialising CUDA; a worker trains its replicas in lockstep with the others and the chief saves the run."""

from tf2bench.multiworker.launch import launch, launch_scaling, main
from tf2bench.multiworker.worker import WorkerFailedError, WorkerSpec, run_worker

__all__ = ["WorkerFailedError", "WorkerSpec", "launch", "launch_scaling", "main", "run_worker"]
