"""Figures a reviewer asks for first: what the network was fed (a training batch), the test confusion matrix and
the ROC curve."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.loggers import WandbLogger  # noqa: E402


def figures_folder(trainer: Trainer) -> Path:
    """``<run>/figures``; ``trainer.log_dir`` is a broadcast under DDP, so every process must call this."""
    return Path(trainer.log_dir or trainer.default_root_dir) / "figures"


def log_figure(trainer: Trainer, folder: Path, figure: plt.Figure, name: str, key: str) -> None:
    """Saves ``folder/<name>.png`` and logs it to W&B under ``key`` (call on rank zero)."""
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / f"{name}.png", dpi=120, bbox_inches="tight")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(folder / f"{name}.png")])


def batch_figure(images: Any, targets: Any, names: list[str] | None, count: int = 16) -> plt.Figure:
    """Up to ``count`` images of a batch with their labels; volumes show their middle slice."""
    images, targets = images[:count].detach().float().cpu(), targets[:count].cpu()
    if images.ndim == 5:  # (B, C, D, H, W)
        images = images[:, :, images.shape[2] // 2]
    columns = min(8, len(images))
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, target in zip(axes.flat, images, targets, strict=False):
        picture = image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy()
        low, high = picture.min(), picture.max()
        axis.imshow((picture - low) / (high - low + 1e-8), cmap="gray")
        label = target.tolist()
        axis.set_title(names[label] if names and isinstance(label, int) else str(label), fontsize=7)
    figure.tight_layout()
    return figure


class ClassificationFigures(Callback):
    """Saves ``figures/train_batch.png`` (the first training batch, as augmented), ``figures/confusion_matrix.png``
    and ``figures/roc.png`` (after testing) and logs them to W&B.

    ``ImageClassifier`` adds it itself. Plotting computes the module's ``test_confusion_matrix`` and ``test_roc``
    torchmetrics, which syncs across DDP processes, so every rank plots and only rank zero writes.
    """

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.current_epoch != 0 or batch_idx != 0:
            return
        folder = figures_folder(trainer)
        if trainer.is_global_zero:
            figure = batch_figure(*batch[:2], getattr(trainer.datamodule, "class_names", None))
            log_figure(trainer, folder, figure, "train_batch", "train/batch")
            plt.close(figure)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        confusion_matrix, roc = pl_module.test_confusion_matrix, pl_module.test_roc
        names = getattr(trainer.datamodule, "class_names", None)
        figures = {
            "confusion_matrix": confusion_matrix.plot(labels=names)[0],
            "roc": roc.plot(score=True)[0] if pl_module.task == "binary" else roc.plot(score=True, labels=names)[0],
        }
        folder = figures_folder(trainer)
        if trainer.is_global_zero:
            for name, figure in figures.items():
                log_figure(trainer, folder, figure, name, f"test/{name}")
        for figure in figures.values():
            plt.close(figure)
