"""report.html in a real browser engine: headless Chromium (the system package; `.ci/run` installs it when missing).

The page checks itself (an inline script in tf2bench/analysis/templates/report.html.j2): it records every error
while loading, then counts the charts that decoded and the verdict cells that are coloured, and writes the result
into ``<body data-check=...>``. Chromium's --dump-dom gives the DOM after that ran. Without Chromium these tests
skip, saying so; they never pass unchecked.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import edited, fixture

from tf2bench.analysis import html, render, report, runs

pytestmark = pytest.mark.slow  # a browser process per test (a second or two each)

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update", "--hide-scrollbars", "--disable-dev-shm-usage",
]  # fmt: skip


def chromium() -> str:
    found = [p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium") if p]
    path = next((p for p in found if Path(p).is_file()), None)
    if path is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium; .ci/run installs it): report.html unchecked")
    return path


def browse(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, int, Path]:
    """report.html of two real runs (so with history.png), one benchmark of them with a profiler trace."""
    chromium()  # skip before rendering when there is none
    tmp = tmp_path_factory.mktemp("browser")
    trace = tmp / "traces" / "20261129-230659" / "cifar100-functional-fit"

    def add_trace(doc):
        for bench in doc["benchmarks"]:
            if bench["extra_info"]["loop"] == "fit":
                bench["extra_info"]["profile"] = {"steps": 5, "first_step": 30, "trace_dir": str(trace)}

    loaded = [runs.load(edited(fixture("0001"), tmp / "runs", add_trace)), runs.load(fixture("0002"))]
    df = report.build(loaded)
    written = render.write(df, loaded, tmp / "reports")
    return written.directory / "report.html", len(df), trace


def test_the_page_loads_without_errors_and_shows_its_charts_header_verdicts_and_traces(page, tmp_path):
    path, rows, trace = page
    proc = browse(path, tmp_path, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body, f"no <body> in Chromium's DOM dump: {proc.stdout[:500]!r}"
    check = re.search(r'data-check="([^"]*)"', body.group(0))
    assert check, "the page's own check did not run (no data-check on <body>)"
    # 5 charts: speed-up, throughput, accuracy, history (several runs), step time; every verdict cell coloured
    assert check.group(1) == f"ok imgs=5/5 errors=0 verdicts={rows}/{rows}", body.group(0)
    dom = proc.stdout
    for text in ("AMD EPYC, 2 cores", "TensorFlow 2.21.0", "Keras 3.15.1", "preset smoke", "commit bcd7cca040",
                 "2026-11-29 23:09:52 UTC", "Speed-up vs fit", "Throughput over the runs"):  # fmt: skip
        assert text in dom, text
    verdicts = re.findall(r'<td [^>]*class="[^"]*\bverdict (v-\w+)"', dom)
    assert len(verdicts) == rows
    assert set(verdicts) == {"v-ref", "v-ok", "v-warn"}  # fit grey, equivalent green, the tutorial amber
    # the one benchmark with a trace: its row, and its run's trace directory in the runs table
    assert dom.count(f"tf2bench tensorboard --logdir {trace}<") == 1
    assert dom.count(f"traces: tf2bench tensorboard --logdir {trace.parent}<") == 1
    assert "no traces" in dom  # the other run
    assert dom.count(html.NO_TRACE) == rows - 1
    assert not re.search(r'(src|href)="(https?:)?//', dom)  # nothing fetched from the network


def test_the_page_renders_to_a_full_screenshot(page, tmp_path):
    path, _, _ = page
    shot = tmp_path / "report.png"
    proc = browse(path, tmp_path, f"--screenshot={shot}", "--window-size=1400,2400")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 2400)
    assert len(data) > 100_000, f"a {len(data)}-byte screenshot: a blank or unstyled page?"
