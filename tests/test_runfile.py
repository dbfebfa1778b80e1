"""tf2bench's run writer (tf2bench.saved.runfile): numbered after what is there, never over an earlier run, different
numbers for saves at the same time, and files that tf2bench's readers load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import STORAGE

from tf2bench.analysis import runs
from tf2bench.saved import runfile
from tf2bench.suite.options import Case

MACHINE = "Linux-CPython-3.11-64bit"
TAG = "abc1234_20261205_010203"


def doc(loop: str = "fit") -> dict:
    """A run document of one benchmark with the fields report and compare need (saved.record.REQUIRED)."""
    info = {"workload": "mnist", "api": "functional", "loop": loop, "samples_per_sec": 1000.0, "steps": 10,
            "samples_per_step": 32, "test_accuracy": 0.9, "window_s": [0.32, 0.33, 0.31], "repeat": 0}  # fmt: skip
    case = Case(0, 0, "mnist", "functional", loop)
    bench = runfile.benchmark_json(case, info["window_s"], info, "tf2bench.api")
    return runfile.run_json([bench], {"preset": "quick", "source": "tf2bench.benchmark"}, {"tf_version": "x"})


def test_a_run_is_numbered_after_the_highest_already_there(tmp_path):
    folder = tmp_path / MACHINE
    folder.mkdir()
    for name in ("0001_a_20260101_000000.json", "0007_b_20260102_000000.json", "notes.txt"):
        (folder / name).write_text("{}")
    (tmp_path / "Other-Machine" / "0042_c.json").parent.mkdir()
    (tmp_path / "Other-Machine" / "0042_c.json").write_text("{}")  # another machine's numbers are its own
    path = runfile.save(doc(), tmp_path, TAG, machine_id=MACHINE)
    assert path == folder / f"0008_{TAG}.json"
    assert runfile.save(doc(), tmp_path, "later", machine_id=MACHINE).name == "0009_later.json"
    assert not list(folder.glob(".*"))  # no claim left behind


def test_a_save_never_replaces_a_run_that_took_its_number_meanwhile(tmp_path, monkeypatch):
    first = runfile.save(doc(), tmp_path, TAG, machine_id=MACHINE)
    before = first.read_bytes()
    real, listings = runfile.numbers, []

    def stale_first(folder: Path) -> list[int]:  # the first listing is stale: it misses the run saved since
        listings.append(folder)
        return [] if len(listings) == 1 else real(folder)

    monkeypatch.setattr(runfile, "numbers", stale_first)
    second = runfile.save(doc("eager"), tmp_path, TAG, machine_id=MACHINE)  # the very same name, were it 0001
    assert (first.name, second.name) == (f"0001_{TAG}.json", f"0002_{TAG}.json")
    assert first.read_bytes() == before
    assert json.loads(second.read_text())["benchmarks"][0]["extra_info"]["loop"] == "eager"
    assert len(listings) == 2  # it found its number taken, and listed again


SAVER = """
import sys
from pathlib import Path
from tf2bench.saved import runfile
storage, who = Path(sys.argv[1]), sys.argv[2]
for i in range(int(sys.argv[3])):
    runfile.save({"benchmarks": [], "by": who, "i": i}, storage, f"{who}{i}", machine_id="m")
"""


def test_saves_at_the_same_time_get_different_numbers(tmp_path):
    """Two processes saving 25 runs each into one folder, with tags of their own (so no name clashes: only the
    claims keep their numbers apart)."""
    n = 25
    procs = [
        subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path), who, str(n)], stderr=subprocess.PIPE)
        for who in ("a", "b")
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert len(names) == 2 * n  # every run saved, nothing else left (no claims)
    assert sorted(int(name[:4]) for name in names) == list(range(1, 2 * n + 1))  # each number once
    for who in ("a", "b"):  # each process's runs in its own order
        mine = [name for name in names if name[5] == who]
        assert [json.loads((tmp_path / "m" / name).read_text())["i"] for name in mine] == list(range(n))


def test_a_saved_run_loads_as_every_reader_loads_it(tmp_path):
    path = runfile.save(doc(), tmp_path, TAG)  # pytest-benchmark's machine id, as autosave's folder
    run = runs.load(path, require_round_data=True)
    assert (run.number, run.suite["source"]) == ("0001", "tf2bench.benchmark")
    (bench,) = run.benchmarks
    assert bench["stats"]["data"] == [0.32, 0.33, 0.31]  # the rounds, for compare's tests
    assert bench["stats"]["rounds"] == 3
    assert bench["fullname"] == "tf2bench.api::test_train[r0-s0-mnist-functional-fit]"
    assert runs.saved_runs(tmp_path) == [path]
    assert runs.resolve("1", storage=tmp_path) == [path]


def test_the_committed_runs_still_load_and_a_new_one_follows_them(tmp_path):
    shutil.copytree(STORAGE, tmp_path / "benchmarks")
    storage = tmp_path / "benchmarks"
    (machine,) = [p.name for p in storage.iterdir()]
    old = runs.saved_runs(storage)
    assert sorted(runs.load(p).number for p in old) == ["0001", "0002", "0003"]
    path = runfile.save(doc(), storage, TAG, machine_id=machine)
    assert path.name == f"0004_{TAG}.json"
    assert runs.load(path).benchmarks[0]["extra_info"]["loop"] == "fit"
    assert [Path(p).read_bytes() for p in old] == [(STORAGE / machine / p.name).read_bytes() for p in old]
