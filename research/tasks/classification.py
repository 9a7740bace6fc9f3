"""Image classification: loss and metrics follow the dataset's task type, the network comes from config."""

from collections.abc import Callable
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric, Metric, MetricCollection, classification

from research.callbacks import ClassificationFigures, ClassPredictionWriter
from research.tasks.optimization import configure_optimization

Task = Literal["binary", "multiclass", "multilabel"]
NetBuilder = Callable[[int, int], nn.Module]
"""Builds the network from ``(in_channels, num_classes)``: e.g. ``research.models.ResNet18``."""


def build_metrics(task: Task, num_classes: int) -> MetricCollection:
    """Accuracy, AUROC, F1, sensitivity and specificity for a task type.

    Binary tasks take class 1 as positive (MedMNIST's convention); the others are macro averages over classes.
    Accuracy is the plain fraction correct, as MedMNIST reports it.
    """
    c = classification
    if task == "binary":
        metrics = {
            "acc": c.BinaryAccuracy(),
            "auc": c.BinaryAUROC(),
            "f1": c.BinaryF1Score(),
            "sensitivity": c.BinaryRecall(),
            "specificity": c.BinarySpecificity(),
        }
    elif task == "multiclass":
        metrics = {
            "acc": c.MulticlassAccuracy(num_classes, average="micro"),
            "auc": c.MulticlassAUROC(num_classes),
            "f1": c.MulticlassF1Score(num_classes, average="macro"),
            "sensitivity": c.MulticlassRecall(num_classes, average="macro"),
            "specificity": c.MulticlassSpecificity(num_classes, average="macro"),
        }
    else:
        metrics = {
            "acc": c.MultilabelAccuracy(num_classes, average="micro"),
            "auc": c.MultilabelAUROC(num_classes),
            "f1": c.MultilabelF1Score(num_classes, average="macro"),
            "sensitivity": c.MultilabelRecall(num_classes, average="macro"),
            "specificity": c.MultilabelSpecificity(num_classes, average="macro"),
        }
    return MetricCollection(metrics)


def _curve_metrics(task: Task, num_classes: int) -> tuple[Metric, Metric]:
    c = classification
    if task == "binary":
        return c.BinaryConfusionMatrix(), c.BinaryROC()
    if task == "multiclass":
        return c.MulticlassConfusionMatrix(num_classes), c.MulticlassROC(num_classes)
    return c.MultilabelConfusionMatrix(num_classes), c.MultilabelROC(num_classes)


class ImageClassifier(LightningModule):
    """Classifies images with any network from ``research.models``.

    ``num_classes``, ``in_channels`` and ``task`` are linked from the DataModule by the CLI, so an experiment
    file never repeats what the dataset's metadata already says. Binary tasks use two logits and
    cross-entropy (as the MedMNIST benchmark does); multi-label tasks use BCE-with-logits. ``channels_last``
    keeps a 2D network and its inputs NHWC, which ``precision: bf16-mixed`` needs to be fast (GPU, AMX CPUs).

    Args:
        net: network builder ``(in_channels, num_classes) -> nn.Module`` from ``research.models``.
        num_classes: classes or labels (linked from the DataModule).
        in_channels: image channels (linked).
        task: ``binary``, ``multiclass`` or ``multilabel`` (linked): decides loss and metrics.
        optimizer: optimizer class and its arguments (``class_path``/``init_args``); the task passes the parameters.
        lr_scheduler: learning-rate scheduler (e.g. ``OneCycleLR``: its ``total_steps`` comes from the Trainer when left
            out).
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        channels_last: NHWC network and inputs (fast with ``precision: bf16-mixed`` on GPUs and AMX CPUs).
    """

    def __init__(
        self,
        net: NetBuilder,
        num_classes: int = 2,
        in_channels: int = 1,
        task: Task = "multiclass",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.task = task
        self.net = net(in_channels, num_classes)
        # NHWC convolutions: with bf16-mixed they reach the CPU's AMX / the GPU's tensor cores without transposes.
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.scheduler_interval = scheduler_interval
        self.loss_fn = nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss()

        self.train_acc = build_metrics(task, num_classes)["acc"]
        self.val_metrics = build_metrics(task, num_classes).clone(prefix="val/")
        self.test_metrics = build_metrics(task, num_classes).clone(prefix="test/")
        self.val_auc_best = MaxMetric()
        self.val_auc_best.persistent(True)  # in the checkpoint, so a resumed run keeps its best so far
        # Losses as metrics: summed over all samples of all processes, so DDP equals one process exactly.
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.test_confusion_matrix, self.test_roc = _curve_metrics(task, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Scores the metrics take: p(class 1) for binary, softmax for multi-class, sigmoid for multi-label."""
        if self.task == "multilabel":
            return logits.sigmoid()
        probs = logits.softmax(dim=1)
        return probs[:, 1] if self.task == "binary" else probs

    def _shared_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        images, targets = batch
        logits = self(images)
        loss = self.loss_fn(logits, targets.float() if self.task == "multilabel" else targets)
        return loss, self.probabilities(logits.detach()), targets

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, probs, targets = self._shared_step(batch)
        self.train_acc.update(probs, targets)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(targets))
        return loss

    # Metric objects are updated per step and logged once per epoch: `self.log(metric)` in a step costs about
    # 1 ms per call (Lightning moves the metric to the device each time), 10 % of a LeNet epoch on CPU.
    def on_train_epoch_end(self) -> None:
        self.log("train/acc", self.train_acc.compute(), sync_dist=False)
        self.train_acc.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, probs, targets = self._shared_step(batch)
        self.val_metrics.update(probs, targets)
        self.val_loss.update(loss, weight=len(targets))

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.log("val/loss", self.val_loss.compute(), prog_bar=True, sync_dist=False)
        self.log_dict(values, sync_dist=False)
        self.val_loss.reset()
        if not self.trainer.sanity_checking:  # the sanity check's couple of batches are not an epoch
            self.val_auc_best(values["val/auc"])
            self.log("val/auc_best", self.val_auc_best.compute(), prog_bar=True)
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        self.test_confusion_matrix.reset()
        self.test_roc.reset()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, probs, targets = self._shared_step(batch)
        self.test_metrics.update(probs, targets)
        self.test_confusion_matrix.update(probs, targets)
        self.test_roc.update(probs, targets)
        self.test_loss.update(loss, weight=len(targets))

    def on_test_epoch_end(self) -> None:
        self.log_dict({**self.test_metrics.compute(), "test/loss": self.test_loss.compute()}, sync_dist=False)
        self.test_metrics.reset()
        self.test_loss.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.probabilities(self(images))

    def configure_callbacks(self) -> list[Callback]:
        return [ClassificationFigures(), ClassPredictionWriter()]

    def configure_optimizers(self) -> Any:
        return configure_optimization(self)
