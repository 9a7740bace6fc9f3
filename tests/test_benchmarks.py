"""Smoke tests of the benchmark scripts (their figures come from ``make bench``, never from the test suite). The
export-parity script is not here: ``tests/research/test_export.py`` runs its pieces (export in both formats, the
sliding-window Dice), and its loop over networks costs a minute of process start-ups."""

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from benchmarks import common
from tests.conftest import REPO


def bench_process(tmp_path: Path, module: str, *args: str) -> dict:
    """``python -m benchmarks.<module> ARGS`` as its own process: for a script that trains with W&B in its process
    (W&B cannot start again in a process whose W&B was torn down)."""
    env = {**os.environ, "MEDLAB_BENCH_RESULTS": str(tmp_path), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MEDLAB_RUN_DIR", None)
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / f"{module}.json").read_text())


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., dict]]:
    """``python -m benchmarks.<module> ARGS`` in this process (a start-up costs seconds the suite does not have), its
    results file in ``tmp_path``; the runs it starts as processes inherit offline W&B."""

    def run(module: str, *args: str) -> dict:
        monkeypatch.setattr(common, "RESULTS", tmp_path)
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_SILENT", "true")
        monkeypatch.delenv("MEDLAB_RUN_DIR", raising=False)
        monkeypatch.chdir(REPO)
        monkeypatch.setattr(sys, "argv", [f"benchmarks.{module}", *args])
        runpy.run_module(f"benchmarks.{module}", run_name="__main__")
        return json.loads((tmp_path / f"{module}.json").read_text())

    deterministic = torch.are_deterministic_algorithms_enabled()  # the overhead script sets it, as cpu.yaml does
    yield run
    torch.use_deterministic_algorithms(deterministic)


def test_overhead_every_rung_reaches_the_plain_loops_loss(tmp_path: Path) -> None:
    args = ["--epochs", "2", "--repeats", "1", "--cifar-per-batch", "100", "--cases", "LeNet", "--breakdown", "LeNet"]
    results = bench_process(tmp_path, "overhead", *args)
    rungs = results["results"]
    assert [r["side"] for r in rungs][-1] == "+ progress bar (= medlab)" and len(rungs) == 5
    assert all(r["loss_equal_5dp"] and r["ratio"] > 0 for r in rungs), rungs
    assert results["machine"]["cpu_count"] >= 1


def test_gpu_benchmark_says_what_it_measured(bench) -> None:
    (entry, *_) = bench("gpu", "--steps", "2")["results"]
    assert entry.get("measured", True) is torch.cuda.is_available()


def test_time_to_accuracy_runs_a_recipe_and_puts_it_beside_the_paper(bench, tmp_path: Path, shared_data: Path) -> None:
    # The fast recipe only (--paper-seeds with none): the paper recipe is the same `medlab run`, five times slower.
    args = ["--seeds", "0", "--paper-seeds", "--max-epochs", "1", "--limit-batches", "2", "--runs-dir",
            str(tmp_path / "runs")]  # fmt: skip
    (fast,) = bench("time_to_accuracy", *args)["results"]
    assert fast["experiment"] == "medmnist/breastmnist_fast"
    (run,) = fast["runs"]
    assert run["epochs"] == 1 and 0 <= run["auc"] <= 1 and run["wall_s"] > 0
    assert (Path(run["run"]) / "summary.json").is_file()
