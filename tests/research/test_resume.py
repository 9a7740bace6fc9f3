"""A run killed with SIGKILL mid-epoch and resumed from its last checkpoint ends exactly like an uninterrupted run."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import CPU, EXPERIMENTS, QUICK, REPO, read_summary
from tests.wandb_records import logged

ARGS = [
    "--data.num_train=256", "--data.num_val=64", "--data.num_test=64", "--data.batch_size=32",
    "--trainer.max_epochs=4", "--trainer.log_every_n_steps=2",
    "--trainer.callbacks+=tests.killer.KillMidEpoch",
]  # fmt: skip


def medlab(tmp_path: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MEDLAB_RUN_DIR", None)
    if kill_at:
        env["MEDLAB_TEST_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "research.cli", "run", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def test_a_run_killed_mid_epoch_resumes_to_the_same_metrics_in_the_same_folder_and_wandb_run(tmp_path: Path) -> None:
    config = ["--config", CPU, "--config", str(EXPERIMENTS / "quickstart.yaml"), *QUICK, *ARGS]
    whole = medlab(tmp_path, *config, "--experiment.runs_dir=uninterrupted")
    assert whole.returncode == 0, whole.stderr[-3000:]
    (uninterrupted,) = (tmp_path / "uninterrupted" / "quickstart").iterdir()

    killed = medlab(tmp_path, *config, "--experiment.runs_dir=killed", kill_at="2:3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run_dir,) = (tmp_path / "killed" / "quickstart").iterdir()
    assert not (run_dir / "summary.json").exists()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1  # epochs 0 and 1 were checkpointed, epoch 2 was cut after 3 batches
    wandb_id = checkpoint["medlab"]["wandb_run_id"]
    assert max(int(r["epoch"]) for r in rows(run_dir)) == 2  # the CSV holds what was logged until the kill

    resumed = medlab(tmp_path, "--config", str(run_dir / "config.yaml"), "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list((tmp_path / "killed" / "quickstart").iterdir()) == [run_dir]  # no new run folder

    assert read_summary(run_dir)["test"] == read_summary(uninterrupted)["test"]
    assert read_summary(run_dir)["best_epoch"] == read_summary(uninterrupted)["best_epoch"]
    assert rows(run_dir) == rows(uninterrupted)  # every logged value, epoch 2 logged once
    assert (run_dir / "metrics.interrupted.csv").is_file()  # what the killed process wrote is kept

    wandb_runs = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(wandb_runs) == 2 and all(path.name.endswith(f"-{wandb_id}") for path in wandb_runs)
    resumed_run = logged(next(wandb_runs[1].glob("run-*.wandb")))
    assert resumed_run["summary"]["test/acc"] == read_summary(run_dir)["test"]["test/acc"]
