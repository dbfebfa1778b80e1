"""The import path of tf2bench 0.1 (``tf2bench.distribute.configure_devices``): the distributed loops now live
in ``tf2bench.loops.distributed``. Kept so scripts written against it keep working."""

from tf2bench.loops.distributed import DevicesTooLateError, configure_devices, replica_devices, split_batch

__all__ = ["DevicesTooLateError", "configure_devices", "replica_devices", "split_batch"]
