"""What moves a GPU's figures, read from ``nvidia-smi``: driver, SM clock now and at most, application clocks (set or
default), power limit. Recorded in every run's machine_info, shown in the report's header, compared by
``tf2bench compare``, checked by ``tf2bench doctor``.

Reading never fails a run: no ``nvidia-smi`` on PATH gives None (a machine without an NVIDIA driver), and one that
fails, hangs or prints something else gives ``{"error": <why>, "gpus": []}``.

Locked clocks, the rule used here: ``nvidia-smi --query-gpu`` reports the application clocks (set with
``nvidia-smi -ac MEM,GRAPHICS``) and their defaults; a GPU whose ``clocks.applications.graphics`` differs from
``clocks.default_applications.graphics`` has its clocks set ("locked"), one where they are equal runs at the defaults
and boosts with heat and power ("not locked"), one that reports neither (GeForce cards: ``[N/A]``) is "unknown".
A lock set with ``nvidia-smi -lgc`` has no field in ``--query-gpu`` (``nvidia-smi --help-query-gpu``), so it reads
as not locked: lock with ``-ac`` for the record to show it. The current SM clock is recorded but never compared:
it follows the load from second to second.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from typing import Any

TIMEOUT_S = 10.0  # nvidia-smi answers in well under a second; a hung driver must not hang a benchmark run
# --query-gpu fields (names from `nvidia-smi --help-query-gpu`), each with the key it is recorded under. Only fields
# every driver branch of the last years knows: one unknown field makes nvidia-smi refuse the whole query.
FIELDS = {
    "index": "index",
    "name": "name",
    "uuid": "uuid",
    "driver_version": "driver",
    "persistence_mode": "persistence",  # application clocks and power limits reset without it when the GPU idles
    "clocks.sm": "sm_mhz",
    "clocks.max.sm": "max_sm_mhz",
    "clocks.max.memory": "max_memory_mhz",
    "clocks.applications.graphics": "app_mhz",
    "clocks.default_applications.graphics": "default_app_mhz",
    "power.limit": "power_limit_w",
    "power.default_limit": "default_power_limit_w",
}
COMMAND = ("--query-gpu=" + ",".join(FIELDS), "--format=csv,noheader,nounits")
_TEXT = {"index", "name", "uuid", "driver", "persistence"}
_MISSING = {"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]"}


def query(timeout: float = TIMEOUT_S) -> dict[str, Any] | None:
    """Every GPU nvidia-smi lists, with its clocks and power limit; None without nvidia-smi on PATH.

    ``{"gpus": [{"index", "name", ..., "clocks_locked"}, ...], "summary": str}``, or ``{"error": str, "gpus": []}``
    when nvidia-smi is there but gives no usable answer (no driver loaded, no device, a timeout, other output).
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *COMMAND], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return _failed(f"nvidia-smi did not answer within {timeout:g} s (a hung driver?)")
    except OSError as exc:
        return _failed(f"nvidia-smi could not be started: {exc}")
    if proc.returncode != 0:
        said = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        return _failed(f"nvidia-smi exited with code {proc.returncode}" + (f": {said[0].strip()}" if said else ""))
    try:
        gpus = parse(proc.stdout)
    except ValueError as exc:
        return _failed(f"nvidia-smi's answer could not be read: {exc}")
    return {"gpus": gpus, "summary": summary(gpus)}


def _failed(why: str) -> dict[str, Any]:
    return {"error": why, "gpus": []}


def parse(text: str) -> list[dict[str, Any]]:
    """The rows of ``--format=csv,noheader,nounits`` output, one dict per GPU; ValueError if it is not that."""
    gpus = []
    for n, row in enumerate(csv.reader(line for line in text.splitlines() if line.strip()), 1):
        if len(row) != len(FIELDS):
            raise ValueError(f"line {n} has {len(row)} fields, {len(FIELDS)} were asked for: {','.join(row)[:80]!r}")
        gpu: dict[str, Any] = {}
        for key, raw in zip(FIELDS.values(), row, strict=True):
            value = raw.strip()
            if value.lower() in _MISSING:
                gpu[key] = None
            elif key in _TEXT:
                gpu[key] = int(value) if key == "index" and value.isdigit() else value
            else:
                try:
                    number = float(value)
                except ValueError:
                    raise ValueError(f"line {n}: {key} is {value!r}, not a number") from None
                gpu[key] = int(number) if key.endswith("_mhz") else number
        gpu["clocks_locked"] = clocks_locked(gpu)
        gpus.append(gpu)
    if not gpus:
        raise ValueError("no GPU rows")
    return gpus


def clocks_locked(gpu: dict[str, Any]) -> bool | None:
    """True when the application clocks are set away from their defaults, False at the defaults, None unknown."""
    app, default = gpu.get("app_mhz"), gpu.get("default_app_mhz")
    if app is None or default is None:
        return None
    return app != default


def clock_text(gpu: dict[str, Any]) -> str:
    """One GPU's clock setting, the way the record compares it (the current SM clock is left out: it moves)."""
    top = f"max {gpu['max_sm_mhz']} MHz" if gpu.get("max_sm_mhz") is not None else "max not reported"
    locked = gpu.get("clocks_locked")
    if locked is None:
        return f"application clocks not reported ({top})"
    if locked:
        return f"locked: application clocks {gpu['app_mhz']} MHz ({top})"
    return f"not locked: default application clocks {gpu['default_app_mhz']} MHz, boost to {top}"


def _watts(value: Any) -> str:
    return f"{value:g} W" if isinstance(value, (int, float)) else "not reported"


def _drivers(gpus: list[dict[str, Any]]) -> str:
    return ", ".join(sorted({str(g.get("driver")) for g in gpus}))


def _grouped(gpus: list[dict[str, Any]], text: Any) -> str:
    """``text(gpu)`` per GPU, GPUs with the same text named together ("GPU 0, 1: ...")."""
    groups: dict[str, list[str]] = {}
    for g in gpus:
        groups.setdefault(text(g), []).append(str(g.get("index", "?")))
    return "; ".join(f"GPU {', '.join(ids)}: {t}" for t, ids in groups.items())


def settings_text(gpus: list[dict[str, Any]]) -> str:
    """Each GPU's SM clock when read, clock setting and power limit (identical GPUs together)."""
    return _grouped(
        gpus,
        lambda g: (
            f"SM {g.get('sm_mhz', '?')} MHz when read, {clock_text(g)}, power limit {_watts(g.get('power_limit_w'))}"
        ),
    )


def summary(gpus: list[dict[str, Any]]) -> str:
    """One line: names, driver, then each GPU's settings_text."""
    names = _grouped(gpus, lambda g: g.get("name") or "?")
    return f"{names}; driver {_drivers(gpus)}; {settings_text(gpus)}"


def header(info: dict[str, Any] | None) -> tuple[str, str]:
    """(software, settings) for a report's header: "NVIDIA driver ..." and the settings_text; or ("", why) when
    nvidia-smi failed; ("", "") without it."""
    if not info:
        return "", ""
    if info.get("error") or not info.get("gpus"):
        return "", f"GPU clocks not recorded: {info.get('error') or 'nvidia-smi listed no GPU'}"
    gpus = info["gpus"]
    return f"NVIDIA driver {_drivers(gpus)}", settings_text(gpus)


def figure_settings(info: dict[str, Any] | None) -> dict[str, str]:
    """The GPU settings ``tf2bench compare`` warns about when two runs differ (envinfo.FIGURE_SETTINGS); empty
    without GPUs read, so runs from machines without nvidia-smi (and older records) compare as before."""
    gpus = (info or {}).get("gpus") or []
    if not gpus:
        return {}
    return {
        "gpu_driver": _drivers(gpus),
        "gpu_clocks": _grouped(gpus, clock_text),
        "gpu_power_limit": _grouped(gpus, lambda g: _watts(g.get("power_limit_w"))),
    }


def clock_note(info: dict[str, Any] | None) -> str | None:
    """What a reader of GPU figures must know about the clocks, or None (no nvidia-smi, or every clock locked)."""
    if not info:
        return None
    if info.get("error"):
        return f"GPU clocks not recorded: {info['error']}"
    gpus = info.get("gpus") or []
    loose = [g for g in gpus if g.get("clocks_locked") is False]
    unknown = [g for g in gpus if g.get("clocks_locked") is None]
    notes = []
    if loose:
        g = loose[0]
        pair = (
            f"{g['max_memory_mhz']},{g['max_sm_mhz']}"
            if g.get("max_memory_mhz") and g.get("max_sm_mhz")
            else "<memory MHz>,<graphics MHz>"
        )
        ids = ",".join(str(x.get("index")) for x in loose)
        notes.append(
            f"clocks not locked on GPU {ids}: figures move with boost clocks (heat, power, other load); lock them "
            f"with `sudo nvidia-smi -i {ids} -pm 1 && sudo nvidia-smi -i {ids} -ac {pair}` "
            "(a supported pair: `nvidia-smi -q -d SUPPORTED_CLOCKS`; undo with `nvidia-smi -rac`). A lock set with "
            "`nvidia-smi -lgc` does not show in nvidia-smi's query and reads as not locked here"
        )
    if unknown:
        notes.append(
            f"GPU {', '.join(str(x.get('index')) for x in unknown)} reports no application clocks (GeForce cards do "
            "not): whether its clocks are locked is unknown; figures may move with boost clocks"
        )
    return "; ".join(notes) or None
