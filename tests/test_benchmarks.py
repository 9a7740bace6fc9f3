"""Smoke tests of the benchmark scripts (their figures come from ``make bench``, never from the test suite)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def bench(tmp_path: Path, module: str, *args: str) -> dict:
    env = {**os.environ, "MEDLAB_BENCH_RESULTS": str(tmp_path), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MEDLAB_RUN_DIR", None)
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / f"{module}.json").read_text())


def test_export_parity_exports_and_says_the_difference(tmp_path: Path) -> None:
    # torch.export (pt2) is exported in process by tests/research/test_export.py; here the script's own loop, once.
    (entry,) = bench(tmp_path, "export_parity", "--only", "LeNet (quickstart)", "--formats", "onnx")["results"]
    assert entry["onnx"]["max_abs_difference"] <= 1e-4 and "pt2" not in entry
    assert entry["onnx"]["command_s"] > 0 and entry["onnx"]["inputs"] == [[8, 1, 32, 32], [3, 1, 32, 32]]


def test_overhead_every_rung_reaches_the_plain_loops_loss(tmp_path: Path) -> None:
    args = ["--epochs", "1", "--repeats", "1", "--cifar-per-batch", "100", "--cases", "LeNet", "--breakdown", "LeNet"]
    results = bench(tmp_path, "overhead", *args)
    rungs = results["results"]
    assert [r["side"] for r in rungs][-1] == "+ progress bar (= medlab)" and len(rungs) == 5
    assert all(r["loss_equal_5dp"] and r["ratio"] > 0 for r in rungs), rungs
    assert results["machine"]["cpu_count"] >= 1


def test_gpu_benchmark_says_what_it_measured(tmp_path: Path) -> None:
    (entry, *_) = bench(tmp_path, "gpu", "--steps", "2")["results"]
    import torch

    assert entry.get("measured", True) is torch.cuda.is_available()


def test_time_to_accuracy_runs_a_recipe_and_puts_it_beside_the_paper(tmp_path: Path, shared_data: Path) -> None:
    # The fast recipe only (--paper-seeds with none): the paper recipe is the same `medlab run`, five times slower.
    args = ["--seeds", "0", "--paper-seeds", "--max-epochs", "1", "--limit-batches", "2", "--runs-dir",
            str(tmp_path / "runs")]  # fmt: skip
    (fast,) = bench(tmp_path, "time_to_accuracy", *args)["results"]
    assert fast["experiment"] == "medmnist/breastmnist_fast"
    (run,) = fast["runs"]
    assert run["epochs"] == 1 and 0 <= run["auc"] <= 1 and run["wall_s"] > 0
    assert (Path(run["run"]) / "summary.json").is_file()
