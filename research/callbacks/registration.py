"""Registration figures: fixed, moving, warped, the differences before and after, and the deformed grid."""

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from torch import Tensor  # noqa: E402

from research.callbacks.figures import figures_folder, log_figure  # noqa: E402


def middle_slice(volume: Tensor) -> np.ndarray:
    """A 2D image as is; a volume's middle slice across its last axis (axial for RAS volumes)."""
    array = volume.detach().cpu().float().numpy()
    return array if array.ndim == 2 else array[..., array.shape[-1] // 2]


def draw_grid(axis: Any, ddf: np.ndarray, every: int) -> None:
    """The fixed grid's lines, every ``every`` voxels, moved by the in-plane displacement (D>=2, H, W)."""
    rows, cols = np.meshgrid(np.arange(ddf.shape[1]), np.arange(ddf.shape[2]), indexing="ij")
    x, y = rows + ddf[0], cols + ddf[1]
    for i in range(0, ddf.shape[1], every):
        axis.plot(x[i, :], y[i, :], color="tab:blue", linewidth=0.6)
    for j in range(0, ddf.shape[2], every):
        axis.plot(x[:, j], y[:, j], color="tab:blue", linewidth=0.6)
    axis.set_xlim(0, ddf.shape[1] - 1)
    axis.set_ylim(ddf.shape[2] - 1, 0)
    axis.set_aspect("equal")


class RegistrationFigures(Callback):
    """Saves ``figures/registration.png`` (the first test pairs: fixed, moving, warped, |fixed - moving|,
    |fixed - warped|, deformed grid; 3D: the middle slice across the last axis) and logs it to W&B.

    Args:
        max_pairs: pairs shown.
    """

    def __init__(self, max_pairs: int = 3) -> None:
        self.max_pairs = max_pairs
        self.rows: list[tuple[str, list[np.ndarray], np.ndarray]] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if not trainer.is_global_zero or len(self.rows) >= self.max_pairs or not isinstance(outputs, dict):
            return
        fixed, moving, warped = (middle_slice(t[0, 0]) for t in (batch["fixed"], batch["moving"], outputs["warped"]))
        ddf = outputs["ddf"][0]
        field = np.stack([middle_slice(ddf[i]) for i in range(2)])
        self.rows.append((str(batch["pair"][0]), [fixed, moving, warped, np.abs(fixed - moving),
                                                   np.abs(fixed - warped)], field))  # fmt: skip

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = figures_folder(trainer)
        if not trainer.is_global_zero or not self.rows:
            return
        titles = ["fixed", "moving", "warped", "|fixed - moving|", "|fixed - warped|", "deformed grid"]
        figure, axes = plt.subplots(len(self.rows), 6, figsize=(16, 2.9 * len(self.rows)), squeeze=False)
        for row, (name, images, field) in zip(axes, self.rows, strict=True):
            for axis, image, title in zip(row, images, titles, strict=False):
                axis.imshow(image.T, cmap="gray", vmin=0, vmax=1)
                axis.set_title(title, fontsize=9)
            draw_grid(row[5], field, every=max(2, field.shape[1] // 24))
            row[5].set_title(titles[5], fontsize=9)
            row[0].set_ylabel(name, fontsize=8)
            for axis in row:
                axis.set_xticks([])
                axis.set_yticks([])
        figure.tight_layout()
        log_figure(trainer, folder, figure, "registration", "test/registration")
        plt.close(figure)
