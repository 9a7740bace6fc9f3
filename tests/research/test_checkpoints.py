"""Checkpoints of a run: the best by the monitor, and ``last.ckpt`` every epoch for resuming."""

import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from research.callbacks import LastCheckpoint
from research.callbacks.checkpoints import LIGHTNING_PRIVATE_NAMES, last_written
from research.runs import SafeCheckpointIO


class ScriptedScore(BoringModel):
    """Logs a given validation score per epoch, so the best epoch is known in advance."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log("val/score", self.scores[self.current_epoch])


def fit(folder: Path, scores: list[float]) -> tuple[Path, Path]:
    best = ModelCheckpoint(dirpath=folder, filename="best-epoch{epoch:03d}", auto_insert_metric_name=False,
                           monitor="val/score", mode="max")  # fmt: skip
    trainer = Trainer(max_epochs=len(scores), callbacks=[best, LastCheckpoint(best, dirpath=folder)],
                      plugins=[SafeCheckpointIO(background=True)], logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_train_batches=2, limit_val_batches=1)  # fmt: skip
    trainer.fit(ScriptedScore(scores))
    return Path(best.best_model_path), folder / "last.ckpt"


def epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def test_last_links_to_the_best_written_in_the_same_epoch(tmp_path: Path) -> None:
    best, last = fit(tmp_path, [0.1, 0.5])
    assert best.name == "best-epoch001.ckpt" and os.path.samefile(best, last)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-epoch001.ckpt", "last.ckpt"]


def test_last_is_written_every_epoch_and_never_changes_the_best(tmp_path: Path) -> None:
    best, last = fit(tmp_path, [0.1, 0.5, 0.3, 0.2])
    assert best.name == "best-epoch001.ckpt" and epoch(best) == 1
    assert epoch(last) == 3 and not os.path.samefile(best, last)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-epoch001.ckpt", "last.ckpt"]


def test_the_private_lightning_names_of_the_one_adapter_still_exist(tmp_path: Path) -> None:
    """``research.callbacks.checkpoints.LIGHTNING_PRIVATE_NAMES``: a Lightning release that renames one breaks
    ``last.ckpt``; this names which."""
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="max")
    trainer = Trainer(max_epochs=1, callbacks=[best], logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_train_batches=2, limit_val_batches=1)  # fmt: skip
    trainer.fit(ScriptedScore([0.5]))
    missing = [name for name in LIGHTNING_PRIVATE_NAMES if not hasattr(best, name)]
    assert not missing, f"Lightning no longer has ModelCheckpoint.{missing}: update research/callbacks/checkpoints.py"
    assert last_written(best, trainer.global_step) == best.best_model_path
    assert last_written(best, trainer.global_step + 1) is None


def test_background_writes_keep_the_state_of_the_moment_and_the_order_they_were_asked_in(tmp_path: Path) -> None:
    writer = SafeCheckpointIO(background=True)
    state = {"state_dict": {"w": torch.zeros(512, 512)}, "epoch": 0}
    writer.save_checkpoint(state, tmp_path / "a.ckpt")
    state["state_dict"]["w"] += 1  # training goes on while the file is written
    writer.link(tmp_path / "a.ckpt", tmp_path / "last.ckpt")  # queued after the write it links to
    writer.save_checkpoint(state, tmp_path / "b.ckpt")
    writer.remove_checkpoint(tmp_path / "b.ckpt")  # removed after its write, so it stays removed
    writer.wait()
    assert torch.equal(torch.load(tmp_path / "a.ckpt", weights_only=True)["state_dict"]["w"], torch.zeros(512, 512))
    assert os.path.samefile(tmp_path / "a.ckpt", tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt", "last.ckpt"]

    (tmp_path / "file").write_text("not a folder")
    writer.save_checkpoint(state, tmp_path / "file" / "c.ckpt")  # fails on the writer thread
    with pytest.raises(OSError):
        writer.wait()
    writer.teardown()
