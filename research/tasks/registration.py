"""Image registration: a learned network (MONAI's ``LocalNet``, ``VoxelMorphUNet``, ``GlobalNet``) and a classical
baseline (elastix), measured the same way (``research.registration``) in the same run folder, so ``medlab compare``
sets them side by side."""

import tempfile
import time
from abc import abstractmethod
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from lightning.pytorch.cli import OptimizerCallable
from monai.data.utils import affine_to_spacing
from monai.losses import (
    BendingEnergyLoss,
    DiceLoss,
    DiffusionLoss,
    GlobalMutualInformationLoss,
    LocalNormalizedCrossCorrelationLoss,
)
from monai.networks.blocks import DVF2DDF
from monai.networks.utils import one_hot
from torch import Tensor, nn
from torchmetrics import CatMetric

from datamodules.registration import refine_field
from research.callbacks.registration import RegistrationFigures
from research.registration import (
    compose,
    end_point_error,
    folding_percent,
    label_dice,
    mutual_information,
    ncc,
    target_registration_error,
    warp_image,
    warp_label,
)
from research.tasks.base import NetBuilder, Task

PER_PAIR = ("dice_before", "dice", "ncc_before", "ncc", "mi_before", "mi", "tre_before_mm", "tre_mm",
            "epe_before_mm", "epe_mm", "folding_pct", "seconds_per_pair")  # fmt: skip
"""What every evaluated pair is measured by, where its data allows (labels, landmarks, a known displacement)."""


class PairRegistration(Task):
    """Registers each evaluated pair (``register``) and measures it: Dice of the warped labels (per label and mean
    over the labels), target registration error (mm) with landmarks, end-point error (mm) against a known
    displacement, folding (% of voxels with a non-positive Jacobian determinant), global NCC and mutual information
    before and after, and seconds per pair. Means over pairs are logged as ``<stage>/<name>``; ``test_step`` returns
    each pair's values, so ``test_predictions.csv`` has a row per pair.
    """

    learns = ("registration",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = self.data.num_outputs
        self.scores = nn.ModuleDict(
            {f"{stage}_{name}": CatMetric(nan_strategy="disable") for stage in ("val", "test") for name in PER_PAIR}
            | {f"{stage}_dice_per_label": CatMetric(nan_strategy="disable") for stage in ("val", "test")}
        )

    @abstractmethod
    def register(self, fixed: Tensor, moving: Tensor, affine: Tensor) -> Tensor:
        """The displacement (B, D, *spatial), in voxels of the fixed grid, that warps ``moving`` onto ``fixed``."""

    def evaluate(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        fixed, moving, affine = batch["fixed"], batch["moving"], batch["affine"]
        start = time.perf_counter()
        ddf = self.register(fixed, moving, affine).detach()
        seconds = torch.full((len(fixed),), time.perf_counter() - start)
        warped = warp_image(moving, ddf)
        values = {
            "ncc_before": ncc(moving, fixed), "ncc": ncc(warped, fixed),
            "mi_before": mutual_information(moving, fixed), "mi": mutual_information(warped, fixed),
            "folding_pct": folding_percent(ddf), "seconds_per_pair": seconds,
        }  # fmt: skip
        if "fixed_label" in batch:
            fine = batch["fixed_label"].shape[2:]
            label_ddf = refine_field(ddf, int(batch["label_factor"][0]), fine) if "label_factor" in batch else ddf
            before = label_dice(batch["moving_label"], batch["fixed_label"], self.num_classes)
            after = label_dice(warp_label(batch["moving_label"], label_ddf), batch["fixed_label"], self.num_classes)
            values |= {
                "dice_before": before[:, 1:].nanmean(1),
                "dice": after[:, 1:].nanmean(1),
                "dice_per_label": after,
            }
        if "true_ddf" in batch:
            mask = fixed > 0.05  # the imaged object: the background's displacement is not observable
            zero = torch.zeros_like(ddf)
            values["epe_before_mm"] = end_point_error(zero, batch["true_ddf"], affine, mask)
            values["epe_mm"] = end_point_error(ddf, batch["true_ddf"], affine, mask)
        if "fixed_points" in batch:
            pairs = range(len(fixed))
            points = [(batch["fixed_points"][i], batch["moving_points"][i], affine[i]) for i in pairs]
            values["tre_before_mm"] = torch.stack([target_registration_error(ddf[i] * 0, *points[i]) for i in pairs])
            values["tre_mm"] = torch.stack([target_registration_error(ddf[i], *points[i]) for i in pairs])
        for name, value in values.items():
            self.scores[f"{stage}_{name}"].update(value.float().cpu())
        return {**values, "ddf": ddf, "warped": warped}

    def log_scores(self, stage: str) -> None:
        means: dict[str, Tensor] = {}
        for name in (*PER_PAIR, "dice_per_label"):
            metric = self.scores[f"{stage}_{name}"]
            if metric.update_count:
                value = metric.compute()
                if name == "dice_per_label":
                    per_label = value.reshape(-1, self.num_classes).nanmean(0)
                    means |= {f"{stage}/dice_{label}": per_label[i] for i, label in enumerate(self.class_names) if i}
                else:
                    means[f"{stage}/{name}"] = value.nanmean()
            metric.reset()
        self.log_epoch(means, stage)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        values = self.evaluate(batch, "val")
        self.losses["val"].update(1 - values["ncc"].mean(), weight=len(values["ncc"]))

    def on_validation_epoch_end(self) -> None:
        self.log_scores("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        values = self.evaluate(batch, "test")
        self.losses["test"].update(1 - values["ncc"].mean(), weight=len(values["ncc"]))
        if "dice" in values:  # test_predictions.csv names per-class Dice dice_<class>, as a segmenter's
            means = {"mean_dice": values.pop("dice"), "mean_dice_before": values.pop("dice_before")}
            values = {**means, **values, "dice": values.pop("dice_per_label")}
        return values  # per pair, for test_predictions.csv (fields and images are left out of it)

    def on_test_epoch_end(self) -> None:
        self.log_scores("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        ddf = self.register(batch["fixed"], batch["moving"], batch["affine"]).detach()
        moving = batch.get("moving_original", batch["moving"])  # the moving file's own intensities, where read
        out = {"pair": batch["pair"], "affine": batch["affine"], "ddf": ddf, "warped": warp_image(moving, ddf)}
        if "moving_label" in batch:
            out["warped_label"] = warp_label(batch["moving_label"], ddf)
        return out

    def configure_callbacks(self) -> list[Callback]:
        return [RegistrationFigures()]


class Registration(PairRegistration):
    """Learned registration: ``net`` reads the moving and fixed images (two channels) and outputs a displacement (or,
    with ``integration_steps``, a stationary velocity integrated by scaling and squaring, which folds far less);
    ``affine_net`` (``GlobalNet``) aligns globally first. Trained by image similarity + smoothness, and, where the
    pairs have label maps and ``label_weight > 0``, the Dice of the warped labels (weak supervision).

    Args:
        net: deformable network builder ``(in_channels, out_channels) -> nn.Module`` (``LocalNet``,
            ``VoxelMorphUNet``); none: affine only.
        affine_net: affine network builder (``GlobalNet``); none: deformable only.
        integration_steps: 0: ``net`` outputs the displacement; n > 0: a velocity integrated in n squaring steps.
        similarity: ``lncc`` (local normalised cross-correlation), ``mi`` (global mutual information, for
            multi-modal pairs) or ``mse``.
        lncc_kernel: window of ``lncc``, in voxels.
        smoothness: ``bending`` (bending energy) or ``diffusion`` (squared gradient) of the displacement.
        smoothness_weight: weight of the smoothness term.
        label_weight: weight of the warped-label Dice loss (0: unsupervised).
        size_divisor: inputs are zero-padded to a multiple of this (the network's total downsampling).
        instance_steps: gradient steps refining each evaluated pair's displacement (instance optimisation; 0: off).
        instance_lr: Adam's learning rate of those steps (voxels).
        **kwargs: ``data``, ``optimizer``, ``lr_scheduler``, ``scheduler_interval``, ``monitor``, ``mode``
            (``research.tasks.Task``).
    """

    def __init__(
        self,
        net: NetBuilder | None = None,
        affine_net: NetBuilder | None = None,
        integration_steps: int = 0,
        similarity: Literal["lncc", "mi", "mse"] = "lncc",
        lncc_kernel: int = 7,
        smoothness: Literal["bending", "diffusion"] = "diffusion",
        smoothness_weight: float = 1.0,
        label_weight: float = 0.0,
        size_divisor: int = 16,
        instance_steps: int = 0,
        instance_lr: float = 0.1,
        optimizer: OptimizerCallable = torch.optim.Adam,
        **kwargs: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **kwargs)
        if net is None and affine_net is None:
            raise ValueError("model.net and model.affine_net are both unset; give at least one")
        dims = self.data.spatial_dims
        self.net = None if net is None else start_at_identity(net(2 * self.data.in_channels, dims))
        self.affine_net = None if affine_net is None else affine_net(2 * self.data.in_channels, dims)
        self.integrate = DVF2DDF(num_steps=integration_steps) if integration_steps else None
        self.similarity = {
            "lncc": lambda: LocalNormalizedCrossCorrelationLoss(spatial_dims=dims, kernel_size=lncc_kernel),
            "mi": GlobalMutualInformationLoss,
            "mse": nn.MSELoss,
        }[similarity]()
        self.smoothness = {"bending": BendingEnergyLoss, "diffusion": DiffusionLoss}[smoothness]()
        self.smoothness_weight, self.label_weight, self.size_divisor = smoothness_weight, label_weight, size_divisor
        self.label_loss = DiceLoss(include_background=False)
        self.instance_steps, self.instance_lr = instance_steps, instance_lr

    def forward(self, fixed: Tensor, moving: Tensor) -> Tensor:
        """The displacement (B, D, *spatial) in voxels; inputs are padded to ``size_divisor`` and the field cropped
        back."""
        shape = fixed.shape[2:]
        padding = [p for s in reversed(shape) for p in (0, -s % self.size_divisor)]
        fixed, moving = F.pad(fixed, padding), F.pad(moving, padding)
        ddf = None
        if self.affine_net is not None:
            ddf = self.affine_net(torch.cat([moving, fixed], dim=1))
            moving = warp_image(moving, ddf)
        if self.net is not None:
            field = self.net(torch.cat([moving, fixed], dim=1))
            field = self.integrate(field) if self.integrate is not None else field
            ddf = field if ddf is None else compose(ddf, field)
        return ddf[(..., *[slice(0, s) for s in shape])]

    def loss(self, fixed: Tensor, moving: Tensor, ddf: Tensor, batch: dict[str, Any]) -> Tensor:
        loss = self.similarity(warp_image(moving, ddf), fixed) + self.smoothness_weight * self.smoothness(ddf)
        if self.label_weight and "fixed_label" in batch:
            warped = warp_image(one_hot(batch["moving_label"], self.num_classes), ddf)
            loss = loss + self.label_weight * self.label_loss(warped, one_hot(batch["fixed_label"], self.num_classes))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self.loss(batch["fixed"], batch["moving"], self(batch["fixed"], batch["moving"]), batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["fixed"]))
        return loss

    def register(self, fixed: Tensor, moving: Tensor, affine: Tensor) -> Tensor:
        if not self.instance_steps:
            return self(fixed, moving)
        # instance optimisation: the displacement itself refined by gradient steps on this pair's unsupervised loss
        with torch.inference_mode(False), torch.enable_grad():
            fixed, moving = fixed.clone(), moving.clone()
            ddf = nn.Parameter(self(fixed, moving).detach().clone())
            optimizer = torch.optim.Adam([ddf], lr=self.instance_lr)
            for _ in range(self.instance_steps):
                optimizer.zero_grad()
                self.loss(fixed, moving, ddf, {}).backward()
                optimizer.step()
        return ddf.detach()


def start_at_identity(net: nn.Module) -> nn.Module:
    """Zero the network's last convolution, so that training starts from the identity transform rather than from a
    random field it must first unlearn (VoxelMorph draws its flow layer from N(0, 1e-5) for the same reason)."""
    kinds = nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d
    convolutions = [m for m in net.modules() if isinstance(m, kinds)]
    if convolutions:
        nn.init.zeros_(convolutions[-1].weight)
        if convolutions[-1].bias is not None:
            nn.init.zeros_(convolutions[-1].bias)
    return net


ELASTIX_TRANSFORMS = ("translation", "rigid", "affine", "bspline")


class ClassicalRegistration(PairRegistration):
    """The classical baseline: elastix (``itk-elastix``) with its default parameter maps in sequence (e.g. affine,
    then B-spline), Mattes mutual information, multi-resolution. Nothing is trained: ``medlab run`` passes one
    empty training step, validates, tests, and writes the same run folder as a learned model. The displacement
    comes from transformix on the fixed grid and is measured by the same code as the learned model's.

    Args:
        transforms: elastix default maps applied in turn (``translation``, ``rigid``, ``affine``, ``bspline``).
        resolutions: pyramid levels of each map.
        grid_spacing_mm: final B-spline control-point spacing.
        iterations: optimiser iterations per level (None: elastix's default).
        **kwargs: ``data``, ``monitor``, ``mode`` (``research.tasks.Task``).
    """

    def __init__(
        self,
        transforms: list[str] | None = None,
        resolutions: int = 4,
        grid_spacing_mm: float = 16.0,
        iterations: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.transforms = list(transforms or ["affine", "bspline"])
        unknown = [t for t in self.transforms if t not in ELASTIX_TRANSFORMS]
        if unknown:
            raise ValueError(f"model.transforms: {unknown} unknown; expected some of {', '.join(ELASTIX_TRANSFORMS)}")
        self.resolutions, self.grid_spacing_mm, self.iterations = resolutions, grid_spacing_mm, iterations
        self.automatic_optimization = False  # nothing to optimise

    def configure_optimizers(self) -> None:
        return None

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        return None

    def parameter_object(self) -> Any:
        import itk

        parameters = itk.ParameterObject.New()
        for name in self.transforms:
            grid = self.grid_spacing_mm
            values = parameters.GetDefaultParameterMap(name, self.resolutions, grid)
            if self.iterations is not None:
                values["MaximumNumberOfIterations"] = [str(self.iterations)]
            values["WriteResultImage"] = ["false"]
            parameters.AddParameterMap(values)
        return parameters

    def register(self, fixed: Tensor, moving: Tensor, affine: Tensor) -> Tensor:
        import itk

        fields, dims, parameters = [], fixed.ndim - 2, self.parameter_object()
        for i in range(len(fixed)):
            spacing = affine_to_spacing(affine[i], r=dims).tolist()
            images = []
            for image in (fixed[i, 0], moving[i, 0]):
                # ITK indexes (x, y, z) = our axes (0, 1, 2): numpy's reversed order, hence the transpose
                itk_image = itk.image_from_array(np.ascontiguousarray(image.detach().cpu().float().numpy().T))
                itk_image.SetSpacing(spacing)
                images.append(itk_image)
            _, transform = itk.elastix_registration_method(
                images[0], images[1], parameter_object=parameters, log_to_console=False
            )
            with tempfile.TemporaryDirectory() as folder:  # transformix writes deformationField.nii there
                field = itk.transformix_deformation_field(images[1], transform, output_directory=folder)
                field = itk.array_from_image(field)  # (z, y, x, D), mm
            field = np.moveaxis(field.transpose(*reversed(range(dims)), dims), -1, 0) / np.array(spacing).reshape(
                -1, *[1] * dims
            )
            fields.append(torch.as_tensor(field, dtype=torch.float32))
        return torch.stack(fields).to(fixed.device)
