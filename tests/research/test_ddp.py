import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch import Trainer

from datamodules import SyntheticLesions
from research.callbacks import TestResultsWriter
from research.tasks import ImageClassifier
from tests.conftest import CPU, EXPERIMENTS, QUICK, REPO, read_item_results, read_summary

# 101 test images: the two processes get 51 and 50, so a padding sampler would count one image twice.
DATA = {"num_train": 300, "num_val": 99, "num_test": 101}


def test_ddp_on_two_cpu_processes_gives_the_same_test_metrics_as_one_process(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "research.cli", "run",
        "--config", CPU, "--config", str(EXPERIMENTS / "quickstart.yaml"),
        "--config", str(EXPERIMENTS / "trainer" / "ddp.yaml"),
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.max_epochs=2",
        *[f"--data.{key}={value}" for key, value in DATA.items()],
        f"--experiment.runs_dir={tmp_path}", *QUICK,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MEDLAB_RUN_DIR", None)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "quickstart").iterdir()
    summary = read_summary(run_dir)
    assert "GLOBAL_RANK: 1" in result.stderr or "distributed_backend=gloo" in result.stderr

    model = ImageClassifier.load_from_checkpoint(run_dir / summary["best_checkpoint"])
    trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, deterministic=True,
        default_root_dir=tmp_path / "single",
    )  # fmt: skip
    trainer.callbacks.append(TestResultsWriter())
    single = trainer.test(model, datamodule=SyntheticLesions(**DATA), verbose=False)[0]
    assert set(single) == set(summary["test"])
    for name, value in single.items():
        assert summary["test"][name] == pytest.approx(value, abs=1e-6), name

    # Each test image's row, gathered from both processes in the test split's order, as one process writes it.
    rows, single_rows = read_item_results(run_dir), read_item_results(tmp_path / "single")
    assert [row["item"] for row in rows] == [str(i) for i in range(DATA["num_test"])]
    assert [(r["true"], r["predicted"]) for r in rows] == [(r["true"], r["predicted"]) for r in single_rows]
    for row, alone in zip(rows, single_rows, strict=True):
        assert float(row["p_lesion"]) == pytest.approx(float(alone["p_lesion"]), abs=1e-6)
    accuracy = sum(row["true"] == row["predicted"] for row in rows) / len(rows)
    assert accuracy == pytest.approx(summary["test"]["test/acc"], abs=1e-6)
