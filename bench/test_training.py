"""The suite: every workload x model API x training loop, timed by pytest-benchmark.

Written as any repository writes it: the tf2bench plugin (registered when tf2bench is installed) parametrizes the
test by the cases the options select (--workload, --api, --loop, --seed, --seeds, --repeat, ...).
"""


def test_train(tf2bench_case):
    tf2bench_case()
