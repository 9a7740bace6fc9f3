"""``predictions.csv``: what ``medlab predict`` writes for classifiers and sequence models."""

import csv
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


class ClassPredictionWriter(BasePredictionWriter):
    """One row per predicted item: its index in the predict split, the predicted class name and one probability
    column per class (``p_<class>``), in ``<trainer.default_root_dir>/predictions/predictions.csv`` (for a checkpoint
    inside a run folder, that run's folder). Regression rows hold the predicted values.

    Args:
        class_names: a name per class, in output order; none for regression.
    """

    def __init__(self, class_names: list[str] | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.class_names = class_names

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        if not trainer.is_global_zero or not predictions:
            return
        batches = predictions[0] if isinstance(predictions[0], list) else predictions  # one dataloader
        outputs = torch.cat([batch.detach().float().cpu() for batch in batches])
        outputs = outputs[:, None] if outputs.ndim == 1 else outputs
        names = self.class_names or [str(i) for i in range(outputs.shape[1])]
        folder = Path(trainer.default_root_dir) / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "predictions.csv"
        classification = self.class_names is not None
        if classification and outputs.shape[1] == 1:  # binary: the probability of class 1
            outputs = torch.cat([1 - outputs, outputs], dim=1)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            if classification:
                writer.writerow(["index", "predicted", *[f"p_{name}" for name in names]])
                for index, row in enumerate(outputs.tolist()):
                    writer.writerow([index, names[int(torch.tensor(row).argmax())], *[f"{p:.6f}" for p in row]])
            else:
                writer.writerow(["index", *[f"y_{j}" for j in range(outputs.shape[1])]])
                for index, row in enumerate(outputs.tolist()):
                    writer.writerow([index, *[f"{v:.6f}" for v in row]])
        print(f"medlab predict: {len(outputs)} predictions written to {path}")
