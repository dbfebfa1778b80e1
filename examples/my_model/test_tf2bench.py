"""This repository's benchmark: my model through the training loops the options select (``--loop``, ``--api``,
``--repeat``, ...). tf2bench's pytest plugin registers itself when tf2bench is installed: no conftest.py.

    pytest --benchmark-autosave
"""

import pytest
from my_model import workload


@pytest.mark.tf2bench(workload=workload)
def test_my_model(tf2bench_case):
    tf2bench_case()
