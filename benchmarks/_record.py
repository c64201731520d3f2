"""Shared by every benchmark: print one JSON line per figure and append it to results.jsonl.

Each record carries the date, the git commit (with ``-dirty`` when the tree has uncommitted
changes other than the results files themselves, which every record appends to), the machine
(CPU model, cores, torch version) and the command that produced it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.jsonl"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=RESULTS.parent, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def commit() -> str:
    sha = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no") or ""
    results = ("benchmarks/results.jsonl", "benchmarks/RESULTS.md")
    dirty = [line for line in status.splitlines() if line.split(maxsplit=1)[-1] not in results]
    return sha + ("-dirty" if dirty else "")


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def record(name: str, value: float, unit: str, *, baseline: str | None = None,
           baseline_value: float | None = None, higher_is_better: bool = True,
           extra: dict | None = None, results: Path | None = None) -> dict:
    """Print ``{"name", "value", "unit", ...}`` as one JSON line and append it to results.jsonl.

    When ``baseline_value`` is given, ``ratio`` is value / baseline_value if higher is better,
    else baseline_value / value, so a ratio above 1 always means metalearn is ahead.
    """
    row: dict = {"name": name, "value": round(float(value), 6), "unit": unit}
    if baseline is not None and baseline_value is not None:
        row["baseline"] = baseline
        row["baseline_value"] = round(float(baseline_value), 6)
        ratio = value / baseline_value if higher_is_better else baseline_value / value
        row["ratio"] = round(float(ratio), 4)
    if extra:
        row.update(extra)
    print(json.dumps(row), flush=True)
    full = dict(row)
    full.update(
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        commit=commit(),
        machine=machine(),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
    )
    path = results or RESULTS
    with open(path, "a") as f:
        f.write(json.dumps(full) + "\n")
    return row
