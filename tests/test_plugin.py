"""The pytest plugin as pytest users know it: registered by its entry point, inactive where tf2bench is not used,
a fixture and a marker for a user's own model, a hook that changes the saved record, the old imports kept."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_pytest

from tf2bench.analysis import runs

# A project's conftest.py that writes what its pytest process looked like at the end (the test reads it).
STATE_CONFTEST = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    def pytest_sessionfinish(session):
        plugins = session.config.pluginmanager
        modules = ("tensorflow", "keras", "tf2bench.loops", "tf2bench.workloads", "tf2bench.suite.options")
        state = {
            "loaded": [m for m in modules if m in sys.modules],
            "plugin": plugins.get_plugin("tf2bench") is not None,  # the entry point registered it
            "active": plugins.get_plugin("tf2bench-session") is not None,
            "storage": str(plugins.get_plugin("pytest-benchmark").storage.path),
            "items": [item.nodeid for item in session.items],
        }
        Path(session.config.rootpath, "state.json").write_text(json.dumps(state))
""")

TINY_WORKLOAD = textwrap.dedent("""
    import numpy as np
    import tf2bench

    def build():
        import keras

        dense = keras.layers.Dense
        return keras.Sequential([keras.Input((6,)), dense(8, activation="relu"), dense(3, activation="softmax")])

    def data():
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, size=320)
        x = (np.eye(3, 6)[y] + rng.normal(scale=0.5, size=(320, 6))).astype("float32")
        return (x[:256], y[:256]), (x[256:], y[256:])

    workload = tf2bench.Workload(name="tiny_mlp", model=build, data=data, loss="sparse_categorical_crossentropy")
""")


def project(root: Path, files: dict[str, str]) -> Path:
    """A repository of its own: an empty pytest.ini (its rootdir) and ``files``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def saved(storage: Path) -> list[Path]:
    return sorted(storage.glob("*/*.json"))


def test_a_project_that_does_not_use_tf2bench_is_untouched(tmp_path):
    root = project(tmp_path / "other", {
        "conftest.py": STATE_CONFTEST,
        "test_plain.py": "def test_sum(benchmark):\n    assert benchmark(sum, range(100)) == 4950\n",
    })  # fmt: skip
    result = run_pytest("-q", "--benchmark-autosave", cwd=root, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = json.loads((root / "state.json").read_text())
    assert state["plugin"]  # installed and registered ...
    assert not state["active"]  # ... and inactive: no session, no hooks of its own
    assert state["loaded"] == []  # neither TensorFlow nor tf2bench's loops, workloads or options were imported
    assert state["items"] == ["test_plain.py::test_sum"]  # no tf2bench items
    assert state["storage"] == str(root / ".benchmarks")  # pytest-benchmark's default storage
    assert not (root / "results").exists()
    (run,) = saved(root / ".benchmarks")
    doc = json.loads(run.read_text())
    assert "tf2bench" not in doc  # no run record
    assert "tf2bench" not in doc["machine_info"]  # no machine probe (TensorFlow's devices, matmul peaks)
    (bench,) = doc["benchmarks"]
    assert bench["options"]["timer"] == "perf_counter"  # pytest-benchmark's own clock
    assert "data" not in bench["stats"]  # round data only with --benchmark-save-data, as always


def test_the_short_option_names_stay_free_for_other_projects(tmp_path):
    """A project whose conftest owns --seed and --profile (common names): installed, tf2bench takes neither; typed,
    they are the project's (pytest warns that tf2bench's are --tf2bench-seed ...), and tf2bench stays inactive."""
    root = project(tmp_path / "other", {
        "conftest.py": STATE_CONFTEST + textwrap.dedent("""
            def pytest_addoption(parser):
                parser.addoption("--seed", default="none")
                parser.addoption("--profile", action="store_true")
        """),
        "test_seed.py": "def test_seed(request):\n    assert request.config.getoption('seed') == '7'\n",
    })  # fmt: skip
    plain = run_pytest("-q", cwd=root, timeout=120)
    assert plain.returncode == 1, plain.stdout[-2000:]  # the project's own default ("none"), not a clash
    typed = run_pytest("-q", "--seed", "7", "--profile", cwd=root, timeout=120)
    assert typed.returncode == 0, typed.stdout[-3000:] + typed.stderr[-3000:]
    assert "--seed, --profile belong to another plugin here" in typed.stdout
    assert not json.loads((root / "state.json").read_text())["active"]


def test_each_option_also_has_its_prefixed_name(tmp_path):
    """--tf2bench-loop is --loop: the same check, the same one-line error and exit code."""
    root = project(tmp_path / "repo", {"test_bench.py": "def test_train(tf2bench_case):\n    tf2bench_case()\n"})
    for flag in ("--loop", "--tf2bench-loop"):
        bad = run_pytest("-q", flag, "nope", cwd=root, timeout=120)
        assert bad.returncode == 4, bad.stdout[-2000:] + bad.stderr[-2000:]  # pytest's usage error
        assert "unknown loop 'nope'; valid: eager, fit," in bad.stderr


@pytest.mark.slow
def test_a_repository_with_one_test_file_runs_its_own_workload(tmp_path):
    """No conftest.py, no tf2bench option: the fixture alone activates tf2bench (at collection)."""
    test_file = TINY_WORKLOAD + textwrap.dedent("""
        import pytest

        @pytest.mark.tf2bench(workload=workload)
        def test_tiny(tf2bench_case):
            record = tf2bench_case(workload)
            assert record["samples_per_sec"] > 0
    """)
    root = project(tmp_path / "user", {"test_bench.py": test_file})
    # -k (pytest's own selection, not a tf2bench option) keeps two of the default loops: fit and tf_function
    result = run_pytest("-k", "model-fit] or tf_function", "--benchmark-autosave", cwd=root, timeout=400)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "[1/2, " in out  # progress over the selected benchmarks
    assert "[2/2]" in out
    assert "steady-state throughput" in out
    assert not (root / ".benchmarks").exists()  # pytest-benchmark's empty default folder removed
    (run,) = saved(root / "results" / "benchmarks")
    assert run.name.startswith("0001_")
    doc = json.loads(run.read_text())
    assert [b["extra_info"]["loop"] for b in doc["benchmarks"]] == ["fit", "tf_function"]
    for bench in doc["benchmarks"]:
        assert bench["name"] == f"test_tiny[{bench['params']['tf2bench_case']}]"
        assert bench["extra_info"]["workload"] == "tiny_mlp"
        assert bench["options"]["timer"] == "bench_clock"  # the per-test marker: the windows' own clock
        assert bench["stats"]["data"] == pytest.approx(bench["extra_info"]["window_s"])  # no --benchmark-save-data
    assert doc["tf2bench"]["preset"] == "quick"
    assert doc["machine_info"]["tf2bench"]["peaks"]["float32"]["gflops"] > 0
    assert runs.load(run, require_round_data=True).has_round_data  # what compare's significance test needs
    report = subprocess.run(
        [sys.executable, "-m", "tf2bench.cli", "report", str(run), "--out", str(tmp_path / "reports")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert "tiny_mlp" in report.stdout


@pytest.mark.slow
def test_a_conftest_hook_changes_the_saved_record(tmp_path):
    root = project(tmp_path / "user", {
        "tiny.py": TINY_WORKLOAD,
        "conftest.py": """
            def pytest_tf2bench_update_record(config, case, record):
                record["ci_job"] = f"job-42 {case.loop}"
                record["test_accuracy_pct"] = 100 * record["test_accuracy"]
        """,
        "test_bench.py": "def test_train(tf2bench_case):\n    tf2bench_case()\n",
    })  # fmt: skip
    storage = tmp_path / "benchmarks"
    result = run_pytest(
        "--tf2bench-workload", "tiny:workload", "--preset", "smoke", "--loop", "fit,tf_data", "--benchmark-autosave",
        f"--benchmark-storage=file://{storage}", cwd=root, timeout=300, env={"PYTHONPATH": str(root)},
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run,) = saved(storage)
    infos = [b["extra_info"] for b in json.loads(run.read_text())["benchmarks"]]
    assert [i["ci_job"] for i in infos] == ["job-42 fit", "job-42 tf_data"]
    assert [i["test_accuracy_pct"] for i in infos] == pytest.approx([100 * i["test_accuracy"] for i in infos])
    assert not (root / "results").exists()  # --benchmark-storage given: used as given


def test_a_test_that_does_not_declare_its_workload_fails_with_the_remedy(tmp_path):
    """The cases are parametrized at collection: the marker narrows, a wrong argument fails in one line, a marker
    with other arguments is a collection error naming what it takes. Nothing here trains (no TensorFlow)."""
    root = project(tmp_path / "user", {
        "test_marks.py": """
            import pytest

            @pytest.mark.tf2bench(workload="cifar100")
            def test_not_selected(tf2bench_case):
                tf2bench_case()

            def test_wrong_workload(tf2bench_case):
                tf2bench_case("cifar100")
        """,
        "test_bad_marker.py": """
            import pytest

            @pytest.mark.tf2bench(model="mine")
            def test_bad(tf2bench_case):
                tf2bench_case()
        """,
    })  # fmt: skip
    args = ["-rs", "--continue-on-collection-errors", "--workload", "mnist", "--api", "functional", "--loop", "fit"]
    result = run_pytest(*args, cwd=root, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "1 failed, 1 skipped, 1 error" in out
    assert "--workload mnist selects none of this test's: cifar100" in out
    assert (
        "tf2bench_case('cifar100') in a benchmark of 'mnist': the cases are chosen when pytest collects the test, "
        "from the --workload selection; declare the workload on the test: @pytest.mark.tf2bench(workload=cifar100)"
    ) in out
    assert "@pytest.mark.tf2bench takes workload=W (W or a list of them); got model" in out


def test_the_old_imports_still_work_and_warn():
    with pytest.warns(DeprecationWarning, match="the tf2bench plugin now registers itself"):
        from tf2bench.pytest_plugin import test_train
    assert test_train.__name__ == "test_train"
    namespace: dict = {}
    with pytest.warns(DeprecationWarning, match="remove `from tf2bench.pytest_plugin import ...`"):
        exec("from tf2bench.pytest_plugin import *", namespace)
    assert [n for n in namespace if not n.startswith("__")] == ["test_train"]  # no hooks: registered once, elsewhere


def test_an_old_style_repository_still_collects(tmp_path):
    root = project(tmp_path / "old", {
        "conftest.py": "from tf2bench.pytest_plugin import *  # noqa: F403\n",
        "test_tf2bench.py": "from tf2bench.pytest_plugin import test_train  # noqa: F401\n",
    })  # fmt: skip
    result = run_pytest(
        "--collect-only", "-q", "--workload", "mnist", "--api", "functional", "--loop", "fit,tf_data", cwd=root,
        timeout=120, env={"PYTHONWARNINGS": "default::DeprecationWarning"},
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "test_tf2bench.py::test_train[r0-s0-mnist-functional-fit]" in out
    assert "test_tf2bench.py::test_train[r0-s0-mnist-functional-tf_data]" in out
    assert out.count("DeprecationWarning: tf2bench.pytest_plugin is deprecated") == 2  # the conftest and the module


def test_bisect_keeps_the_plugin_out_of_a_checkout_from_before_it(tmp_path):
    """tf2bench bisect measures old commits in worktrees: one whose tf2bench has no plugin/ (0.1: its bench/conftest.py
    imports the hooks) runs with -p no:tf2bench; a checkout with the plugin, or a user's own package, runs as is."""
    from tf2bench.plugin.options import keep_out_of

    old, new, user = tmp_path / "old", tmp_path / "new", tmp_path / "user"
    (old / "tf2bench").mkdir(parents=True)
    (new / "tf2bench" / "plugin").mkdir(parents=True)
    (user / "mypkg").mkdir(parents=True)
    assert keep_out_of(old) == ["-p", "no:tf2bench"]
    assert keep_out_of(new) == []
    assert keep_out_of(user) == []


def test_a_checkout_from_before_the_plugin_runs_with_it_kept_out(tmp_path):
    """What the rule is for: with this plugin installed, a tree whose tf2bench has no plugin/ cannot start pytest
    (the entry point finds no tf2bench.plugin there) unless it is kept out."""
    (tmp_path / "tf2bench").mkdir()
    (tmp_path / "tf2bench" / "__init__.py").write_text("")
    (tmp_path / "tf2bench" / "suite.py").write_text("")  # 0.1's tf2bench.suite was a module, not a package
    (tmp_path / "test_old.py").write_text("def test_ok():\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {"PYTHONPATH": str(tmp_path)}
    broken = run_pytest("-q", cwd=tmp_path, timeout=120, env=env)
    assert broken.returncode != 0
    from tf2bench.plugin.options import keep_out_of

    kept = run_pytest("-q", *keep_out_of(tmp_path), cwd=tmp_path, timeout=120, env=env)
    assert kept.returncode == 0, kept.stdout[-2000:] + kept.stderr[-2000:]
