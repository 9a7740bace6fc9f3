"""Segmentation figures (image / ground truth / prediction) and the writer behind ``medlab predict``."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import BasePredictionWriter  # noqa: E402
from lightning.pytorch.loggers import WandbLogger  # noqa: E402
from monai import transforms as mt  # noqa: E402
from monai.data import decollate_batch  # noqa: E402
from torch import Tensor  # noqa: E402

from datamodules.readers import mask_suffix  # noqa: E402


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
            self.rows.append(tuple(_slice(t, label) for t in (batch["image"][0, 0], label, outputs[0, 0])))

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


class SegmentationWriter(BasePredictionWriter):
    """Writes each predicted mask in its input's format and geometry (``datamodules.readers.mask_suffix``: the same
    suffix, PNG for JPEG/GIF, NIfTI for DICOM), with the source affine.

    Masks go to ``data.prediction_dir`` (default ``<trainer.default_root_dir>/predictions``). The DataModule's
    preprocessing (orientation, spacing) is inverted with MONAI's ``Invertd`` first, and class
    indices go back to the raw mask values (``data.label_values``) when those are configured.
    """

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def write_on_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, prediction: Any, batch_indices: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        data = trainer.datamodule
        folder = Path(data.prediction_dir or Path(trainer.default_root_dir) / "predictions")
        invert = mt.Invertd(keys="pred", transform=data.predict_transform, orig_keys="image", nearest_interp=True)
        for item in decollate_batch(prediction):
            mask = invert(item)["pred"]
            if data.label_values is not None:
                mask = torch.as_tensor(data.label_values, dtype=torch.int64)[mask.long()].to(mask) * 1
            source = str(item["image"].meta["filename_or_obj"])
            largest = max(data.label_values or [pl_module.num_classes - 1])
            save = mt.SaveImage(
                output_dir=folder, output_postfix="seg", output_ext=mask_suffix(source),
                output_dtype=np.uint8 if largest < 256 else np.uint16,
                resample=False, separate_folder=False, print_log=False,
            )  # fmt: skip
            save(mask)
