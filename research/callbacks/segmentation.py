"""Segmentation figures: image / ground truth / prediction of the first test images."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.loggers import WandbLogger  # noqa: E402
from torch import Tensor  # noqa: E402


def _slice(volume: Tensor, mask: Tensor) -> np.ndarray:
    """2D as is; 3D at the slice (last axis) with the most foreground in ``mask``."""
    array = volume.detach().cpu().float().numpy()
    if array.ndim == 2:
        return array
    index = int(mask.detach().cpu().reshape(-1, mask.shape[-1]).gt(0).sum(0).argmax())
    return array[..., index]


class SegmentationFigures(Callback):
    """Saves ``figures/segmentation_overlay.png`` for the first test images and logs it to W&B."""

    def __init__(self, max_images: int = 4) -> None:
        self.max_images = max_images
        self.rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.is_global_zero and len(self.rows) < self.max_images:
            label = batch["label"][0, 0]
            self.rows.append(
                tuple(_slice(t, label) for t in (batch["image"][0, 0], label, outputs["prediction"][0, 0]))
            )

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "figures"
        if not trainer.is_global_zero or not self.rows:
            return
        figure, axes = plt.subplots(len(self.rows), 3, figsize=(9, 3 * len(self.rows)), squeeze=False)
        classes = max(pl_module.num_classes - 1, 1)
        for row, (image, label, prediction) in zip(axes, self.rows, strict=True):
            for ax, mask, title in zip(
                row, (None, label, prediction), ("image", "ground truth", "prediction"), strict=True
            ):
                ax.imshow(image.T, cmap="gray")
                if mask is not None:
                    ax.imshow(np.ma.masked_equal(mask.T, 0), cmap="tab10", vmin=0, vmax=max(classes, 9), alpha=0.5)
                ax.set_title(title)
                ax.axis("off")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "segmentation_overlay.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="test/segmentation_overlay", images=[str(path)])
