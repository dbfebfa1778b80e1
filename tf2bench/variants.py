"""The import path of tf2bench 0.1 (``tf2bench.variants.train_step`` and friends): the loops now live in
``tf2bench.loops``. Kept so scripts written against it keep working."""

from tf2bench.loops import *  # noqa: F403
from tf2bench.loops import __all__  # noqa: F401
