"""Semantic segmentation (2D or 3D): DiceCE loss on patches, sliding-window inference on whole images,
per-class Dice and 95th-percentile Hausdorff distance aggregated with torchmetrics (DDP-correct)."""

from collections.abc import Callable
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from monai.data.utils import affine_to_spacing
from monai.inferers import SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.utils import one_hot
from monai.utils import convert_to_tensor
from torch import Tensor, nn
from torchmetrics import CatMetric, MaxMetric, MeanMetric

from research.callbacks.segmentation import SegmentationFigures, SegmentationWriter
from research.tasks.optimization import configure_optimization

NetBuilder = Callable[[int, int], nn.Module]


def _spacing(image: Tensor) -> list[float] | None:
    """Voxel size from the image's affine, so HD95 is in physical units (mm for NIfTI/DICOM); else voxels."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return None
    affine = affine[0] if affine.ndim == 3 else affine
    return [float(s) for s in affine_to_spacing(affine, r=image.ndim - 2)]


class Segmenter(LightningModule):
    """Segments with any network from ``research.models`` (``UNet``, ``BasicUNet``, ``SegResNet``).

    ``num_classes``, ``in_channels`` and ``task`` come from the DataModule; ``task`` must be ``segmentation``,
    so a classification DataModule cannot be paired with it by mistake. ``roi_size`` defaults to the
    DataModule's training patch. ``val/dice`` and ``val/hd95`` average the foreground classes (1..n-1);
    ``val/dice_<class>`` and ``val/hd95_<class>`` are logged for every class, background included.

    Args:
        net: network builder ``(in_channels, num_classes) -> nn.Module`` (``UNet``, ``BasicUNet``, ``SegResNet``).
        num_classes: classes, background included (linked).
        in_channels: image channels (linked).
        task: must be ``segmentation`` (linked), so a classification DataModule is refused.
        roi_size: sliding-window size at evaluation (default: the DataModule's training patch).
        sw_batch_size: windows evaluated at once.
        overlap: overlap of neighbouring windows (gaussian blending).
        tta_flip: average the predictions of each axis flipped.
        optimizer: optimizer class and its arguments (``class_path``/``init_args``); the task passes the parameters.
        lr_scheduler: learning-rate scheduler (e.g. ``OneCycleLR``: its ``total_steps`` comes from the Trainer when left
            out).
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
    """

    def __init__(
        self,
        net: NetBuilder,
        num_classes: int = 2,
        in_channels: int = 1,
        task: Literal["segmentation"] = "segmentation",
        roi_size: list[int] | None = None,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        tta_flip: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
    ) -> None:
        super().__init__()
        if task != "segmentation":
            raise ValueError(f"Segmenter needs a segmentation DataModule, got one whose task is {task!r}")
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.net = net(in_channels, num_classes)
        self.roi_size = roi_size
        self.sw_batch_size, self.overlap, self.tta_flip = sw_batch_size, overlap, tta_flip
        self.optimizer, self.lr_scheduler, self.scheduler_interval = optimizer, lr_scheduler, scheduler_interval
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        # Per-image, per-class scores gathered from every process; NaN (class absent) is kept and skipped later.
        self.scores = nn.ModuleDict(
            {
                f"{stage}_{name}": CatMetric(nan_strategy="disable")
                for stage in ("val", "test")
                for name in ("dice", "hd95")
            }
        )
        self.losses = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self.val_dice_best = MaxMetric()
        self.val_dice_best.persistent(True)  # in the checkpoint, so a resumed run keeps its best so far

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def inferer(self, image: Tensor) -> SlidingWindowInferer:
        roi = self.roi_size or getattr(self.trainer.datamodule, "patch_size", None) or list(image.shape[2:])
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

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> Tensor:
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
        self.scores[f"{stage}_hd95"].update(torch.where(in_label, hd95, torch.nan))
        return prediction

    def _log_scores(self, stage: str) -> dict[str, Tensor]:
        names = getattr(self.trainer.datamodule, "class_names", None) or [str(i) for i in range(self.num_classes)]
        values: dict[str, Tensor] = {f"{stage}/loss": self.losses[stage].compute()}
        for metric in ("dice", "hd95"):
            per_class = torch.nanmean(self.scores[f"{stage}_{metric}"].compute().reshape(-1, self.num_classes), dim=0)
            values[f"{stage}/{metric}"] = torch.nanmean(per_class[1:])
            values.update({f"{stage}/{metric}_{name}": per_class[i] for i, name in enumerate(names)})
            self.scores[f"{stage}_{metric}"].reset()
        self.losses[stage].reset()
        self.log_dict(values)
        return values

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        values = self._log_scores("val")
        if not self.trainer.sanity_checking:
            self.val_dice_best(values["val/dice"])
            self.log("val/dice_best", self.val_dice_best.compute(), prog_bar=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"image": batch["image"], "pred": self.infer(batch["image"]).argmax(dim=1, keepdim=True)}

    def configure_callbacks(self) -> list[Callback]:
        return [SegmentationFigures(), SegmentationWriter()]

    def configure_optimizers(self) -> Any:
        return configure_optimization(self)
