"""metalearn._runtime: the entry point's re-exec with the tuned glibc allocator."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from metalearn._runtime import TUNABLES, tuned_environment

SNIPPET = (
    "import os; from metalearn._runtime import reexec_with_tuned_allocator; "
    "reexec_with_tuned_allocator(); print(os.environ.get('GLIBC_TUNABLES', ''))"
)


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "METALEARN_TUNED_RUNTIME", "METALEARN_NO_TUNE")}
    env.update(extra)
    return env


def test_tuned_environment_keeps_user_settings():
    env = tuned_environment({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1", "X": "1"})
    items = env["GLIBC_TUNABLES"].split(":")
    assert "glibc.malloc.trim_threshold=1" in items
    assert "glibc.malloc.trim_threshold=4294967296" not in items
    assert f"glibc.malloc.mmap_threshold={TUNABLES['glibc.malloc.mmap_threshold']}" in items
    assert env["X"] == "1"


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc tunables exist only on glibc Linux")
def test_reexec_sets_tunables_once_and_can_be_disabled():
    out = subprocess.run([sys.executable, "-c", SNIPPET], env=_env(), capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == tuned_environment({})["GLIBC_TUNABLES"]
    off = subprocess.run([sys.executable, "-c", SNIPPET], env=_env(METALEARN_NO_TUNE="1"),
                         capture_output=True, text=True, check=True).stdout.strip()
    assert off == ""


def test_auto_task_mode_picks_vmap_for_fully_connected_nets_on_cpu():
    from metalearn.algorithms.task_map import resolve_task_mode
    from metalearn.models import MLP, Conv4

    cpu = torch.device("cpu")
    assert resolve_task_mode("auto", cpu, MLP(1, [8, 8], 1)) == "vmap"
    per_task = "threads" if torch.get_num_threads() > 1 else "loop"  # second order: on all cores
    assert resolve_task_mode("auto", cpu, MLP(1, [8, 8], 1, norm="transductive")) == "loop"
    assert resolve_task_mode("auto", cpu, Conv4(in_channels=1, hidden=4, out_features=2)) == "loop"
    assert resolve_task_mode("auto", cpu, Conv4(in_channels=1, hidden=4), second_order=True) == per_task
    assert resolve_task_mode("auto", cpu) == "loop"
    assert resolve_task_mode("auto", torch.device("cuda"), Conv4(in_channels=1, hidden=4)) == "vmap"
    assert resolve_task_mode("loop", cpu, MLP(1, [8], 1)) == "loop"
