"""Clusters simulated on one machine: the SLURM template run with SLURM's variables, its requeue signal and the resume;
two torchrun "nodes" against two processes on one node."""

import os
import signal
import stat
import subprocess
from pathlib import Path

import torch

from tests.conftest import CPU, QUICK, REPO, read_summary
from tests.research.test_ddp import free_port
from tests.research.test_resume import ARGS, rows
from tests.wandb_records import logged

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
    env = {**os.environ, **slurm, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(REPO),
           "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
           "SCONTROL_LOG": str(tmp_path / "scontrol.log")}  # fmt: skip
    env.pop("MEDLAB_RUN_DIR", None)
    if signal_at:
        env |= {"MEDLAB_TEST_KILL_AT": signal_at, "MEDLAB_TEST_SIGNAL": "SIGUSR1"}
    args = ["--config", CPU, *QUICK, *ARGS, f"--experiment.runs_dir={tmp_path / runs}"]
    return subprocess.run(["bash", str(TEMPLATE), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_the_sbatch_template_parses() -> None:
    subprocess.run(["bash", "-n", str(TEMPLATE)], check=True)


def test_a_requeued_slurm_job_resumes_from_its_signal_checkpoint_to_the_uninterrupted_metrics(tmp_path: Path) -> None:
    fake_slurm_commands(tmp_path / "bin")
    whole = sbatch(tmp_path, "uninterrupted")
    assert whole.returncode == 0, whole.stderr[-3000:]
    (uninterrupted,) = (tmp_path / "uninterrupted" / "quickstart").iterdir()
    assert uninterrupted.name == "job4242-seed42"

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
