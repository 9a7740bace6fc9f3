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


def test_export_parity_exports_both_formats_and_says_the_difference(tmp_path: Path) -> None:
    (entry,) = bench(tmp_path, "export_parity", "--only", "LeNet (quickstart)")["results"]
    assert entry["onnx"]["max_abs_difference"] <= 1e-4 and entry["pt2"]["max_abs_difference"] <= 1e-4
    assert entry["onnx"]["command_s"] > 0 and entry["onnx"]["inputs"] == [[8, 1, 32, 32], [3, 1, 32, 32]]


def test_overhead_every_rung_reaches_the_plain_loops_loss(tmp_path: Path) -> None:
    args = ["--epochs", "2", "--repeats", "1", "--cifar-per-batch", "100", "--cases", "LeNet", "--breakdown", "LeNet"]
    results = bench(tmp_path, "overhead", *args)
    rungs = results["results"]
    assert [r["side"] for r in rungs][-1] == "+ progress bar (= medlab)" and len(rungs) == 5
    assert all(r["loss_equal_5dp"] and r["ratio"] > 0 for r in rungs), rungs
    assert results["machine"]["cpu_count"] >= 1


def test_gpu_benchmark_says_what_it_measured(tmp_path: Path) -> None:
    (entry, *_) = bench(tmp_path, "gpu", "--steps", "2")["results"]
    import torch

    assert entry.get("measured", True) is torch.cuda.is_available()


def test_time_to_accuracy_runs_both_recipes_and_puts_them_beside_the_paper(tmp_path: Path, shared_data: Path) -> None:
    args = ["--seeds", "0", "--paper-seeds", "0", "--max-epochs", "1", "--runs-dir", str(tmp_path / "runs")]
    paper, fast = bench(tmp_path, "time_to_accuracy", *args)["results"]
    assert [paper["experiment"], fast["experiment"]] == ["medmnist/resnet18", "medmnist/breastmnist_fast"]
    for recipe in (paper, fast):
        (run,) = recipe["runs"]
        assert run["epochs"] == 1 and 0 <= run["auc"] <= 1 and run["wall_s"] > 0
        assert (Path(run["run"]) / "summary.json").is_file()
