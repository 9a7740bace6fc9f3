"""A run killed with SIGKILL mid-epoch and resumed from its last checkpoint, and a SLURM job requeued by its signal and
resumed from the checkpoint it wrote then (the SLURM template run with SLURM's variables), end exactly like an
uninterrupted run."""

import csv
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import wandb

from research.cli import cli
from research.tracking import finish_wandb
from tests.conftest import CPU, EXPERIMENTS, QUICK, REPO, read_summary
from tests.research.test_ddp import environment, free_port
from tests.wandb_records import logged

ARGS = [
    "--data.num_train=256", "--data.num_val=64", "--data.num_test=64", "--data.batch_size=32",
    "--trainer.max_epochs=4", "--trainer.log_every_n_steps=2",
    "--trainer.callbacks+=tests.killer.KillMidEpoch",
]  # fmt: skip


def medlab(tmp_path: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = environment()
    if kill_at:
        env["MEDLAB_TEST_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "research.cli", "run", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run both interrupted runs are compared with (in this process: the same computation, without the imports)."""
    runs = tmp_path_factory.mktemp("uninterrupted")
    try:
        cli(["run", "--config", CPU, "--config", str(EXPERIMENTS / "quickstart.yaml"), *QUICK, *ARGS,
             f"--experiment.runs_dir={runs}"])  # fmt: skip
    finally:
        finish_wandb()
        wandb.teardown()  # its service would otherwise serve the commands run next
    (run_dir,) = (runs / "quickstart").iterdir()
    return run_dir


def test_a_run_killed_mid_epoch_resumes_to_the_same_metrics_in_the_same_folder_and_wandb_run(
    tmp_path: Path, uninterrupted: Path
) -> None:
    config = ["--config", CPU, "--config", str(EXPERIMENTS / "quickstart.yaml"), *QUICK, *ARGS]

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


TEMPLATE = REPO / "cluster" / "slurm.sbatch"


def fake_slurm_commands(folder: Path) -> Path:
    """``srun`` that runs its command as the one task, ``scontrol`` that records its arguments and then stops the
    job the way a requeue does (SIGKILL after SIGTERM's grace)."""
    folder.mkdir()
    (folder / "srun").write_text('#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\nexec "$@"\n')
    (folder / "scontrol").write_text('#!/bin/bash\necho "$@" >> "$SCONTROL_LOG"\nkill -KILL $PPID\n')
    for command in folder.iterdir():
        command.chmod(command.stat().st_mode | stat.S_IXUSR)
    return folder


def sbatch(tmp_path: Path, runs: str, restart: int = 0, signal_at: str | None = None) -> subprocess.CompletedProcess:
    """The template as SLURM would run it on one node with one task (job 4242), with the variables SLURM sets."""
    slurm = {
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "medlab", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1", "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_RESTART_COUNT": str(restart), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
    }  # fmt: skip
    env = environment() | slurm | {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
                                   "SCONTROL_LOG": str(tmp_path / "scontrol.log")}  # fmt: skip
    if signal_at:
        env |= {"MEDLAB_TEST_KILL_AT": signal_at, "MEDLAB_TEST_SIGNAL": "SIGUSR1"}
    # One device, as in the uninterrupted run (the template's DDP over one process would shard the batches otherwise).
    args = ["--config", CPU, *QUICK, *ARGS, "--trainer.strategy=auto", f"--experiment.runs_dir={tmp_path / runs}"]
    return subprocess.run(["bash", str(TEMPLATE), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_the_sbatch_template_parses() -> None:
    subprocess.run(["bash", "-n", str(TEMPLATE)], check=True)


def test_a_requeued_slurm_job_resumes_from_its_signal_checkpoint_to_the_uninterrupted_metrics(
    tmp_path: Path, uninterrupted: Path
) -> None:
    fake_slurm_commands(tmp_path / "bin")

    # SIGUSR1 before batch 3 of epoch 2: a checkpoint as that batch starts, then `scontrol requeue 4242`, which stops
    # the job.
    first = sbatch(tmp_path, "requeued", signal_at="2:3")
    assert first.returncode == 128 + signal.SIGKILL, first.stderr[-3000:]
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    run_dir = tmp_path / "requeued" / "quickstart" / "job4242-seed42"
    checkpoint = torch.load(run_dir / "checkpoints" / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (2, 8 + 8 + 3)  # 8 batches an epoch
    assert not (run_dir / "summary.json").exists()

    second = sbatch(tmp_path, "requeued", restart=1)  # the requeued job: same job id, SLURM_RESTART_COUNT=1
    assert second.returncode == 0, second.stderr[-3000:]
    assert list((tmp_path / "requeued" / "quickstart").iterdir()) == [run_dir]
    assert read_summary(run_dir)["test"] == read_summary(uninterrupted)["test"]
    # Every logged value, each once; except the training metrics averaged over the interrupted epoch, which Lightning
    # does not checkpoint: they cover the batches after the resume (validation, weights and test are the same).
    epoch_averages = ("train/acc", "train/loss_epoch")
    resumed, whole_rows = rows(run_dir), rows(uninterrupted)
    assert [(r["epoch"], r["step"]) for r in resumed] == [(r["epoch"], r["step"]) for r in whole_rows]
    for row, expected in zip(resumed, whole_rows, strict=True):
        differing = {key for key in row if row[key] != expected[key]}
        assert differing <= (set(epoch_averages) if row["epoch"] == "2" else set()), (row, expected)
    wandb_runs = sorted(run_dir.glob("wandb/offline-run-*"))
    wandb_id = checkpoint["medlab"]["wandb_run_id"]
    assert len(wandb_runs) == 2 and all(path.name.endswith(f"-{wandb_id}") for path in wandb_runs)
    assert (
        logged(next(wandb_runs[1].glob("run-*.wandb")))["summary"]["test/acc"]
        == read_summary(run_dir)["test"]["test/acc"]
    )
