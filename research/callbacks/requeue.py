"""SLURM's requeue signal answered at a batch boundary: the checkpoint a requeued job resumes from exactly."""

import signal
import subprocess
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from research.runs import REQUEUE_CHECKPOINT, launch_id

BATCHES_STEPPED = "_batches_that_stepped"
"""Lightning's (2.6) key for the count of batches that stepped the optimizers in the epoch loop's checkpointed state,
the one private name this callback reads; the SLURM requeue test in ``tests/research/test_resume.py`` fails (a KeyError
naming it) if a release renames it."""


class SlurmRequeue(Callback):
    """Lightning's SLURM auto-requeue, with the checkpoint written where a resume repeats the uninterrupted run.

    Lightning's own handler saves the moment the signal arrives (``#SBATCH --signal=SIGUSR1@120``), which may be in
    the middle of an optimizer step, and closes the loggers while training goes on. This callback installs its handler
    first (Lightning then leaves the signal to it) and only notes the signal. At the start of the next training batch
    (agreed by every rank; the last batch's metrics are logged, the new batch has not trained) it writes
    ``<run>/checkpoints/hpc_ckpt_<n>.ckpt`` (Lightning's name) and asks SLURM to requeue the job (``scontrol
    requeue``, as Lightning does). Training goes on until SLURM stops the job; the requeued job
    (``SLURM_RESTART_COUNT`` > 0) finds the checkpoint in its job's run folder and resumes there, in the same W&B run.
    Active only under SLURM with ``auto_requeue`` (Lightning's ``SLURMEnvironment``, the default there).

    Args:
        dirpath: the folder of the run's checkpoints.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.requested = False
        self.active = False
        self.saving = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        environment = getattr(trainer.strategy, "cluster_environment", None)  # a single device's strategy has none
        if environment is None and SLURMEnvironment.detect():
            environment = SLURMEnvironment()  # what Lightning uses there
        self.active = stage == "fit" and isinstance(environment, SLURMEnvironment) and environment.auto_requeue
        if self.active:  # before Lightning registers its handlers (after the setup hooks), so it keeps this one
            signal.signal(environment.requeue_signal or signal.SIGUSR1, self.note_signal)

    def note_signal(self, signum: int, frame: Any) -> None:
        self.requested = True

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Lightning adds one to its count of stepped batches when it restarts within an epoch, as its own checkpoints
        are written at a batch's end, before that count moves; this one is written at a batch's start, where the count
        is exact, so it is stored one lower (the logged steps then continue as the uninterrupted run's)."""
        if self.saving:
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"][BATCHES_STEPPED] -= 1

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self.active or not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        self.requested, self.active = False, False
        saved = [int(p.stem.rsplit("_", 1)[1]) for p in self.dirpath.glob(REQUEUE_CHECKPOINT.format("*"))]
        path = self.dirpath / REQUEUE_CHECKPOINT.format(max(saved, default=0) + 1)
        self.saving = True
        try:
            trainer.save_checkpoint(path)
        finally:
            self.saving = False
        wait = getattr(trainer.strategy.checkpoint_io, "wait", None)
        if wait is not None:  # on disk before the job is requeued (and stopped)
            wait()
        if trainer.is_global_zero:
            job = launch_id()
            rank_zero_info(f"medlab: requeue signal: saved {path}; requeueing SLURM job {job}")
            result = subprocess.run(["scontrol", "requeue", job], check=False)
            if result.returncode != 0:
                rank_zero_warn(f"scontrol requeue {job} failed (exit {result.returncode}); the job will not restart")
