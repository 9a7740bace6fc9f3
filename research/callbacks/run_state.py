"""What a resumed run needs beyond Lightning's own checkpoint (the W&B run id, the random number generators, the wall
time so far), and the mark a failed run leaves in its folder."""

import random
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger


def rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python generator states, in types a ``weights_only`` load accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, keys.tolist(), position, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


class RunState(Callback):
    """Writes ``checkpoint["medlab"]``: the W&B run id (so a resumed run continues the same W&B run), the RNG
    states at the checkpoint, put back when training restarts so the resumed batches and augmentations are those
    the uninterrupted run would have drawn, and the wall time so far, so a resumed run's total counts every part.
    A run that fails leaves ``error.txt`` (the error and its traceback) in its folder.

    The states go back in ``on_train_start``, after the sanity check, whose data loaders draw from torch's RNG.

    Args:
        started: when the run (this process) started, ``time.time()``.
        run_dir: the run folder, for ``error.txt``.
    """

    def __init__(self, started: float, run_dir: Path) -> None:
        self.started, self.run_dir = started, run_dir
        self.restored: dict[str, Any] | None = None
        self.earlier_wall_time = 0.0  # of the runs this one resumes
        self.test_time = 0.0  # seconds of the last test epoch: the inference time a comparison reports

    def wall_time(self) -> float:
        return self.earlier_wall_time + time.time() - self.started

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_started = time.perf_counter()

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_time = time.perf_counter() - self.test_started

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        wandb = next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)
        checkpoint["medlab"] = {
            "wandb_run_id": wandb.version if wandb else None,
            "rng": rng_states(),
            "wall_time_s": self.wall_time(),
        }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != "fit":  # testing the best checkpoint restores no run state
            return
        state = checkpoint.get("medlab", {})
        self.restored = state.get("rng")
        self.earlier_wall_time = float(state.get("wall_time_s", 0.0))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.restored is not None:
            set_rng_states(self.restored)
            self.restored = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.is_global_zero and self.run_dir.is_dir():
            trace = "".join(traceback.format_exception(exception))
            (self.run_dir / "error.txt").write_text(f"{type(exception).__name__}: {exception}\n\n{trace}")
