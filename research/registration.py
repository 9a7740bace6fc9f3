"""What a registration is measured by, for learned and classical methods alike: warps of images and labels by a
displacement (MONAI's ``Warp``), Dice of warped labels, target registration error, end-point error, folding (the
Jacobian determinant), image similarity.

Displacements ``ddf`` are (B, D, *spatial) in voxels of the fixed grid: ``warped(x) = moving(x + ddf(x))``.
"""

import numpy as np
import torch
from monai.losses import GlobalMutualInformationLoss
from monai.networks.blocks import Warp
from scipy.ndimage import map_coordinates
from torch import Tensor

from datamodules.registration import to_mm


def warp_image(moving: Tensor, ddf: Tensor) -> Tensor:
    return Warp(mode="bilinear", padding_mode="border")(moving, ddf)


def warp_label(label: Tensor, ddf: Tensor) -> Tensor:
    """Class indices warped by nearest neighbour (no new values between classes)."""
    return Warp(mode="nearest", padding_mode="border")(label.float(), ddf).round().long()


def compose(first: Tensor, then: Tensor) -> Tensor:
    """The displacement of warping by ``first`` and then warping the result by ``then``:
    ``moving(x + then(x) + first(x + then(x)))``."""
    return then + warp_image(first, then)


def label_dice(warped: Tensor, fixed: Tensor, num_classes: int) -> Tensor:
    """Dice per pair and class (B, num_classes), background first; NaN for a class in neither map. Counted with one
    ``bincount`` per pair (one-hot maps of 31 labels at 1 mm would take gigabytes)."""
    scores = []
    for w, f in zip(warped.flatten(1).long(), fixed.flatten(1).long(), strict=True):
        counts = torch.bincount(w * num_classes + f, minlength=num_classes**2).reshape(num_classes, num_classes)
        total = (counts.sum(0) + counts.sum(1)).double()
        scores.append(torch.where(total > 0, 2 * counts.diagonal().double() / total.clamp_min(1), torch.nan))
    return torch.stack(scores).float()


def jacobian_determinant(ddf: Tensor) -> Tensor:
    """det(I + grad ddf) at every voxel (B, *spatial), central differences; spacing cancels out of its sign."""
    dims = ddf.shape[1]
    grads = [torch.gradient(ddf[:, i], dim=list(range(1, dims + 1))) for i in range(dims)]  # grads[i][j] = du_i/dx_j
    jac = [[grads[i][j] + (1.0 if i == j else 0.0) for j in range(dims)] for i in range(dims)]
    if dims == 2:
        return jac[0][0] * jac[1][1] - jac[0][1] * jac[1][0]
    return (
        jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
        - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
        + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0])
    )


def folding_percent(ddf: Tensor) -> Tensor:
    """Percentage of voxels where the transform folds (Jacobian determinant <= 0), per pair."""
    return (jacobian_determinant(ddf) <= 0).flatten(1).float().mean(1) * 100


def ncc(a: Tensor, b: Tensor) -> Tensor:
    """Global normalised cross-correlation (Pearson) per pair, in [-1, 1]."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)).float()


def mutual_information(a: Tensor, b: Tensor) -> Tensor:
    """Mutual information (nats, Parzen-window histograms of MONAI's loss, 23 bins) per pair of [0, 1] images."""
    loss = GlobalMutualInformationLoss(reduction="none")
    return torch.stack([-loss(a[i : i + 1].float(), b[i : i + 1].float()).flatten()[0] for i in range(len(a))])


def world_to_voxel(points: Tensor, affine: Tensor) -> Tensor:
    dims = points.shape[-1]
    inverse = torch.linalg.inv(affine.double())
    return points.double() @ inverse[:dims, :dims].T + inverse[:dims, dims]


def voxel_to_world(points: Tensor, affine: Tensor) -> Tensor:
    dims = points.shape[-1]
    affine = affine.double()
    return points.double() @ affine[:dims, :dims].T + affine[:dims, dims]


def sample_field(ddf: Tensor, voxels: Tensor) -> Tensor:
    """The displacement (N, D) at voxel positions (N, D) of one pair's field (D, *spatial), linear interpolation."""
    field = ddf.detach().cpu().double().numpy()
    coords = voxels.detach().cpu().numpy().T
    return torch.as_tensor(np.stack([map_coordinates(c, coords, order=1, mode="nearest") for c in field], axis=1))


def target_registration_error(ddf: Tensor, fixed_points: Tensor, moving_points: Tensor, affine: Tensor) -> Tensor:
    """Mean distance (mm) between each moving landmark and where the transform maps its fixed landmark, for one pair
    (``ddf`` (D, *spatial) voxels, points (N, D) RAS mm)."""
    voxels = world_to_voxel(fixed_points, affine)
    mapped = voxel_to_world(voxels + sample_field(ddf, voxels), affine)
    return (mapped - moving_points.double()).norm(dim=1).mean().float()


def end_point_error(ddf: Tensor, true_ddf: Tensor, affine: Tensor, mask: Tensor | None) -> Tensor:
    """Mean distance (mm) between the found and the true displacement per pair, over ``mask`` (B, 1, *spatial) where
    given."""
    error = to_mm(ddf - true_ddf, affine).norm(dim=1)
    if mask is None:
        return error.flatten(1).mean(1)
    mask = mask[:, 0].bool()
    return torch.stack([e[m].mean() if m.any() else e.mean() for e, m in zip(error, mask, strict=True)])
