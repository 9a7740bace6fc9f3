"""A callback that signals its own process at a chosen training batch, for the resume tests.

It acts only when ``MEDLAB_TEST_KILL_AT=<epoch>:<batch>`` is set, so the same config runs uninterrupted without it;
``MEDLAB_TEST_SIGNAL`` names the signal (default SIGKILL; SIGUSR1 is SLURM's requeue signal).
"""

import os
import signal
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class KillMidEpoch(Callback):
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        at = os.environ.get("MEDLAB_TEST_KILL_AT")
        if at and (trainer.current_epoch, batch_idx) == tuple(int(part) for part in at.split(":")):
            os.kill(os.getpid(), signal.Signals[os.environ.get("MEDLAB_TEST_SIGNAL", "SIGKILL")])


class FailAtStart(Callback):
    """Raises as training starts, after the run folder exists: what a failure mid-run leaves behind."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise RuntimeError("the GPU caught fire")
