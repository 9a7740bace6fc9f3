"""Semantic segmentation (2D or 3D): DiceCE loss on patches, sliding-window inference on whole images,
per-class Dice and 95th-percentile Hausdorff distance aggregated with torchmetrics (DDP-correct)."""

from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.cli import OptimizerCallable
from monai.data.utils import affine_to_spacing
from monai.inferers import SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.utils import one_hot
from monai.utils import convert_to_tensor
from torch import Tensor, nn
from torchmetrics import CatMetric

from research.callbacks.segmentation import SegmentationFigures
from research.tasks.base import NetBuilder, Task


def _spacing(image: Tensor) -> list[float] | None:
    """Voxel size from the image's affine, so HD95 is in physical units (mm for NIfTI/DICOM); else voxels."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return None
    affine = affine[0] if affine.ndim == 3 else affine
    return [float(s) for s in affine_to_spacing(affine, r=image.ndim - 2)]


class Segmenter(Task):
    """Segments with any network from ``research.models`` (``UNet``, ``BasicUNet``, ``SegResNet``).

    Learns only ``segmentation`` data, so a classification DataModule cannot be paired with it by mistake.
    ``roi_size`` defaults to the data's training patch. ``val/dice`` and ``val/hd95`` average the foreground classes
    (1..n-1); ``val/dice_<class>`` and ``val/hd95_<class>`` are logged for every class, background included.

    Args:
        net: network builder ``(in_channels, num_classes) -> nn.Module`` (``UNet``, ``BasicUNet``, ``SegResNet``).
        roi_size: sliding-window size at evaluation (default: the data's training patch).
        sw_batch_size: windows evaluated at once.
        overlap: overlap of neighbouring windows (gaussian blending).
        tta_flip: average the predictions of each axis flipped.
        **kwargs: ``data``, ``optimizer`` (default ``AdamW``), ``lr_scheduler``, ``scheduler_interval``, ``monitor``,
            ``mode`` (``research.tasks.Task``).
    """

    learns = ("segmentation",)

    def __init__(
        self,
        net: NetBuilder,
        roi_size: list[int] | None = None,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        tta_flip: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        **kwargs: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **kwargs)
        self.num_classes = self.data.num_outputs
        self.net = net(self.data.in_channels, self.num_classes)
        self.roi_size = roi_size or self.data.patch_size
        self.sw_batch_size, self.overlap, self.tta_flip = sw_batch_size, overlap, tta_flip
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        # Per-image, per-class scores gathered from every process; NaN (class absent) is kept and skipped later.
        self.scores = nn.ModuleDict(
            {
                f"{stage}_{name}": CatMetric(nan_strategy="disable")
                for stage in ("val", "test")
                for name in ("dice", "hd95")
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def inferer(self, image: Tensor) -> SlidingWindowInferer:
        roi = self.roi_size or list(image.shape[2:])
        return SlidingWindowInferer(
            roi_size=roi, sw_batch_size=self.sw_batch_size, overlap=self.overlap, mode="gaussian"
        )

    def infer(self, image: Tensor) -> Tensor:
        """Logits for whole images by sliding window; with ``tta_flip`` averaged over flips of each axis."""
        inferer = self.inferer(image)
        logits = inferer(image, self.net)
        if self.tta_flip:
            axes = list(range(2, image.ndim))
            for axis in axes:
                logits = logits + inferer(image.flip(axis), self.net).flip(axis)
            logits = logits / (len(axes) + 1)
        return logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss_fn(self(batch["image"]), batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        """Dice and HD95 per image and class (NaN where the class is in neither mask), gathered for the epoch, and
        the predicted mask."""
        image, label = batch["image"], convert_to_tensor(batch["label"], track_meta=False)
        # Plain tensors from here: MONAI metadata must not reach logged values (and so checkpoints).
        logits = convert_to_tensor(self.infer(image), track_meta=False)
        self.losses[stage].update(self.loss_fn(logits, label), weight=len(image))
        prediction = logits.argmax(dim=1, keepdim=True)
        pred_1h, label_1h = one_hot(prediction, self.num_classes), one_hot(label, self.num_classes)
        dice = compute_dice(pred_1h, label_1h, include_background=True, num_classes=self.num_classes)
        spacing = _spacing(image)
        hd95 = compute_hausdorff_distance(pred_1h, label_1h, include_background=True, percentile=95, spacing=spacing)
        self.scores[f"{stage}_dice"].update(dice)
        # A class missing from the ground truth is skipped (NaN); one the prediction misses scores the worst
        # distance there is, the image diagonal, so a missed organ cannot improve the mean HD95.
        in_label, in_prediction = label_1h.flatten(2).any(-1), pred_1h.flatten(2).any(-1)
        size = torch.tensor(image.shape[2:], dtype=torch.float32) * torch.tensor(spacing or 1.0)
        hd95 = torch.where(in_label & ~in_prediction, size.norm(), hd95.float())
        hd95 = torch.where(in_label, hd95, torch.nan)
        self.scores[f"{stage}_hd95"].update(hd95)
        return {"dice": dice, "hd95": hd95, "prediction": prediction}

    def _log_scores(self, stage: str) -> None:
        values: dict[str, Tensor] = {}
        for metric in ("dice", "hd95"):
            per_class = torch.nanmean(self.scores[f"{stage}_{metric}"].compute().reshape(-1, self.num_classes), dim=0)
            values[f"{stage}/{metric}"] = torch.nanmean(per_class[1:])
            values.update({f"{stage}/{metric}_{name}": per_class[i] for i, name in enumerate(self.class_names)})
            self.scores[f"{stage}_{metric}"].reset()
        self.log_epoch(values, stage)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "test")  # per case, for test_predictions.csv

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"image": batch["image"], "pred": self.infer(batch["image"]).argmax(dim=1, keepdim=True)}

    def configure_callbacks(self) -> list[Callback]:
        return [SegmentationFigures()]
