"""``last.ckpt`` at the end of every epoch, so a killed run resumes from its latest epoch."""

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from research.runs import link_atomic


class LastCheckpoint(ModelCheckpoint):
    """Every epoch's full state as ``<dirpath>/last.ckpt``.

    Lightning's ``save_last`` follows the best checkpoint (it skips the epochs that do not improve), hence a
    callback of its own. In an epoch where ``best`` has just written the same state, ``last.ckpt`` becomes a hard
    link to that file instead of a second serialisation: for ResNet-18 (28) with Adam that is 135 MB and about
    0.35 s (on 2 CPU cores) saved per improving epoch. Checkpoints are always replaced by rename, never rewritten
    in place, so the link never changes the best checkpoint.
    """

    def __init__(self, best: ModelCheckpoint, dirpath: str | Path) -> None:
        super().__init__(dirpath=dirpath, filename="last", enable_version_counter=False)
        self.best = best

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # Lightning keeps no public record of the step a checkpoint callback last wrote.
        written = self.best._last_checkpoint_saved
        if self.best._last_global_step_saved != trainer.global_step or not written:
            super()._save_checkpoint(trainer, filepath)
            return
        if trainer.is_global_zero:
            link_atomic(Path(written), Path(filepath))
        trainer.strategy.barrier()
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
