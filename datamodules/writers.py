"""Writers of predictions in the inputs' own formats, the mirror of ``datamodules.readers``."""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from monai import transforms as mt
from monai.data import decollate_batch

from datamodules.readers import mask_suffix


class MaskWriter(BasePredictionWriter):
    """Writes each predicted mask in its input's format and geometry (``datamodules.readers.mask_suffix``: the same
    suffix, PNG for JPEG/GIF, NIfTI for DICOM), with the source affine.

    The preprocessing (orientation, spacing) is inverted with MONAI's ``Invertd`` first, and class indices go back to
    the raw mask values. A segmentation DataModule makes it (``prediction_writer``) and
    ``medlab predict`` adds it to the Trainer.

    Args:
        preprocessing: the transform that read the inputs (the same instance: MONAI matches transforms by identity).
        output_dir: the folder of the masks (default ``<trainer.default_root_dir>/predictions``).
        label_values: the raw mask value of each class, in class order.
    """

    def __init__(self, preprocessing: mt.Compose, output_dir: str | None, label_values: list[int]) -> None:
        super().__init__(write_interval="batch")
        self.preprocessing, self.output_dir, self.label_values = preprocessing, output_dir, label_values

    def write_on_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, prediction: Any, batch_indices: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        folder = Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")
        invert = mt.Invertd(keys="pred", transform=self.preprocessing, orig_keys="image", nearest_interp=True)
        for item in decollate_batch(prediction):
            mask = invert(item)["pred"]
            mask = torch.as_tensor(self.label_values, dtype=torch.int64)[mask.long()].to(mask) * 1
            source = str(item["image"].meta["filename_or_obj"])
            largest = max(self.label_values)
            save = mt.SaveImage(
                output_dir=folder, output_postfix="seg", output_ext=mask_suffix(source),
                output_dtype=np.uint8 if largest < 256 else np.uint16,
                resample=False, separate_folder=False, print_log=False,
            )  # fmt: skip
            save(mask)
