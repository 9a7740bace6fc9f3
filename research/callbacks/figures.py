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

    ``ImageClassifier`` and ``SequenceClassifier`` add it themselves. Plotting computes the module's
    ``test_confusion_matrix`` and ``test_roc`` torchmetrics, which syncs across DDP processes, so every rank plots and
    only rank zero writes.

    Args:
        class_names: a name per class, in label order.
        train_batch: also save the first training batch (images only; sequences have no picture of their batch).
    """

    def __init__(self, class_names: list[str], train_batch: bool = True) -> None:
        self.class_names, self.train_batch = class_names, train_batch

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if not self.train_batch or trainer.current_epoch != 0 or batch_idx != 0:
            return
        folder = figures_folder(trainer)
        if trainer.is_global_zero:
            inputs, targets = batch[0], batch[-1]
            images = inputs[0] if isinstance(inputs, (list, tuple)) else inputs  # a multimodal batch's images
            figure = batch_figure(images, targets, self.class_names)
            log_figure(trainer, folder, figure, "train_batch", "train/batch")
            plt.close(figure)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        confusion_matrix, roc = pl_module.test_confusion_matrix, pl_module.test_roc
        names = self.class_names
        figures = {
            "confusion_matrix": confusion_matrix.plot(labels=names)[0],
            "roc": roc.plot(score=True)[0]
            if pl_module.data.task == "binary"
            else roc.plot(score=True, labels=names)[0],
        }
        folder = figures_folder(trainer)
        if trainer.is_global_zero:
            for name, figure in figures.items():
                log_figure(trainer, folder, figure, name, f"test/{name}")
        for figure in figures.values():
            plt.close(figure)


class ForecastFigures(Callback):
    """Saves ``figures/forecast.png`` (and W&B ``test/forecast``): the first test sequences with the true and the
    predicted continuation, for regression tasks whose ``test_step`` returns its predictions (``predicted``).

    Args:
        count: how many test sequences to draw.
    """

    def __init__(self, count: int = 4) -> None:
        self.count = count
        self.rows: list[tuple[Any, Any, Any]] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        signals, lengths, targets = batch
        for i in range(len(signals)):
            if len(self.rows) < self.count:
                length = int(lengths[i])
                self.rows.append(
                    (signals[i, 0, :length].cpu(), targets[i].cpu(), outputs["predicted"][i].detach().cpu())
                )

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = figures_folder(trainer)
        if not trainer.is_global_zero or not self.rows:
            return
        figure, axes = plt.subplots(len(self.rows), 1, figsize=(7, 1.8 * len(self.rows)), squeeze=False)
        for axis, (signal, target, prediction) in zip(axes[:, 0], self.rows, strict=False):
            steps = range(len(signal), len(signal) + len(target))
            axis.plot(range(len(signal)), signal.numpy(), color="0.5", lw=0.8, label="input")
            axis.plot(steps, target.numpy(), color="tab:blue", label="true")
            axis.plot(steps, prediction.numpy(), color="tab:orange", ls="--", label="predicted")
        axes[0, 0].legend(loc="upper left", fontsize=7)
        figure.tight_layout()
        log_figure(trainer, folder, figure, "forecast", "test/forecast")
        plt.close(figure)


class FeatureFigures(Callback):
    """A classical pipeline's choice and what it relied on, after testing: ``candidates.csv`` (every pipeline's
    validation metrics), ``feature_importance.csv`` and ``figures/feature_importance.png`` (the drop of the
    monitored metric on validation when a descriptor group is shuffled), also logged to W&B. ``FeatureClassifier``
    adds it itself."""

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = figures_folder(trainer)
        if not trainer.is_global_zero or not pl_module.importance:
            return
        pl_module.write_candidates(folder.parent / "candidates.csv")
        pl_module.write_importance(folder.parent / "feature_importance.csv")
        ranked = sorted(pl_module.importance.items(), key=lambda item: item[1][0])[-20:]
        figure, axis = plt.subplots(figsize=(6, 0.3 * len(ranked) + 1.2))
        axis.barh([name for name, _ in ranked], [m for _, (m, _) in ranked], xerr=[s for _, (_, s) in ranked])
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel(f"drop of {pl_module.monitor} when shuffled (validation)")
        axis.set_title("Permutation importance by descriptor group")
        figure.tight_layout()
        log_figure(trainer, folder, figure, "feature_importance", "test/feature_importance")
        plt.close(figure)
