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


def nifti_affine(affine: np.ndarray) -> np.ndarray:
    """A 4x4 NIfTI affine from MONAI's (D+1)x(D+1) one (a 2D image's 3x3 gets a unit third axis)."""
    dims = affine.shape[0] - 1
    if dims == 3:
        return affine
    full = np.eye(4)
    full[:2, :2], full[:2, 3] = affine[:2, :2], affine[:2, 2]
    return full


class RegistrationWriter(BasePredictionWriter):
    """Writes, per registered pair, into ``<output_dir>/<pair>/``: ``warped.nii.gz`` (the moving image's own
    intensities, warped), ``warped_label.nii.gz`` (its label map, nearest neighbour, raw label values) and
    ``displacement.nii.gz`` (RAS millimetres, shape (*spatial, 1, D), NIfTI intent ``vector``: the fixed voxel at x
    matches the moving image's world point x + u(x)). All three on the fixed image's grid, with its affine.

    Args:
        output_dir: the folder (default ``<trainer.default_root_dir>/predictions``).
        label_values: the raw value of each label class 1..K (none: the class indices are written).
    """

    def __init__(self, output_dir: str | None, label_values: list[int] | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir, self.label_values = output_dir, label_values

    def write_on_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, prediction: Any, batch_indices: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        import nibabel as nib

        from datamodules.registration import to_mm

        root = Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")
        for i, name in enumerate(prediction["pair"]):
            affine = prediction["affine"][i].double()
            folder = root / str(name)
            folder.mkdir(parents=True, exist_ok=True)
            header_affine = nifti_affine(affine.cpu().numpy())
            outputs = {"warped": prediction["warped"][i, 0].float()}
            if "warped_label" in prediction:
                label = prediction["warped_label"][i, 0].long()
                values = torch.as_tensor([0, *(self.label_values or range(1, int(label.max()) + 1))])
                outputs["warped_label"] = values[label].to(torch.int16 if values.max() > 255 else torch.uint8)
            displacement = to_mm(prediction["ddf"][i : i + 1].double(), affine[None])[0].float()
            outputs["displacement"] = displacement.movedim(0, -1).unsqueeze(-2)  # (*spatial, 1, D)
            for key, array in outputs.items():
                image = nib.Nifti1Image(array.cpu().numpy(), header_affine)
                image.set_qform(header_affine, code=1)
                image.set_sform(header_affine, code=1)
                if key == "displacement":
                    image.header.set_intent("vector")
                nib.save(image, folder / f"{key}.nii.gz")
        print(f"medlab predict: {len(prediction['pair'])} pairs written to {root}")
