"""tf2bench's pytest plugin, registered by the ``pytest11`` entry point ``tf2bench`` (pyproject.toml): installing
tf2bench is all a repository needs; a test module with an ordinary test runs the benchmarks::

    def test_train(tf2bench_case):          # one benchmark per case the options select
        tf2bench_case()

    @pytest.mark.tf2bench(workload=my_workload)  # your own model: these cases train it
    def test_my_model(tf2bench_case):
        tf2bench_case()

Lazy, so that it changes no other project's run: this module imports pytest only; its hooks register the options,
the ``tf2bench`` marker and the hooks a conftest.py may implement (tf2bench.plugin.hookspec), and nothing else
happens until tf2bench is used. It becomes active (tf2bench.plugin.session) when a tf2bench option or a
``TF2BENCH_*`` variable is given (at configure, so bad input stops the run at once with a one-line usage error) or
when a collected test asks for ``tf2bench_case`` or ``tf2bench_session``. Only then are TensorFlow's neighbours
imported, results/benchmarks made the default storage, and tf2bench's benchmarks timed on the windows' clock.
"""

from __future__ import annotations

from typing import Any

import pytest

FIXTURES = frozenset({"tf2bench_case", "tf2bench_session"})


def pytest_addoption(parser: pytest.Parser) -> None:
    from tf2bench.plugin import options

    options.add(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> Any:
    """After the initial conftests added their options: the short spellings of the tf2bench options this run types
    (``--loop``, ``--seed``...). Only then, so that installing tf2bench takes no option name from another project."""
    result = yield
    from tf2bench.plugin import options

    taken = options.add_typed(parser, args)
    if taken:
        early_config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"tf2bench: {', '.join(taken)} belong to another plugin here: use --tf2bench-NAME for tf2bench's"
            ),
            stacklevel=2,
        )
    return result


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from tf2bench.plugin import hookspec

    pluginmanager.add_hookspecs(hookspec)


@pytest.hookimpl(tryfirst=True)  # bad input fails before other plugins start work
def pytest_configure(config: pytest.Config) -> None:
    from tf2bench.plugin import options

    config.addinivalue_line("markers", options.MARKER_HELP)
    options.note_default_storage(config)
    if options.given(config):
        from tf2bench.plugin.session import activate

        activate(config, at_configure=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not FIXTURES & set(metafunc.fixturenames):
        return
    from tf2bench.plugin.session import activate

    session = activate(metafunc.config, at_configure=False)
    if "tf2bench_case" in metafunc.fixturenames:
        session.parametrize(metafunc)


@pytest.fixture(scope="session")
def tf2bench_session(pytestconfig: pytest.Config) -> Any:
    """This run's tf2bench session (tf2bench.plugin.session.Session): ``options``, ``planner`` (cases, data,
    benchmarks ready to run), ``say(line)``, ``process``/``processes`` and ``overhead``."""
    from tf2bench.plugin.session import activate

    return activate(pytestconfig, at_configure=False)


@pytest.fixture
def tf2bench_case(request: pytest.FixtureRequest, benchmark: Any, tf2bench_session: Any) -> Any:
    """One benchmark of the selected cases (parametrized at collection): call it, ``tf2bench_case()``, to run it;
    ``tf2bench_case(workload)`` checks that the case trains ``workload`` (declare it with
    ``@pytest.mark.tf2bench(workload=...)``). Returns the record it stores in ``benchmark.extra_info``."""
    from tf2bench.plugin.case import CaseRun

    return CaseRun(tf2bench_session, request, benchmark)
