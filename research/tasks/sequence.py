"""Sequence classification and regression (e.g. ECG beats or records, forecasting) over padded batches."""

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection, classification, regression

from research.callbacks import ClassificationFigures, ClassPredictionWriter, ForecastFigures
from research.tasks.optimization import configure_optimization

SequenceNet = Callable[[int, int], nn.Module]
"""Builds ``net(signals, lengths) -> outputs`` from ``(in_channels, num_outputs)``: ``research.models.RecurrentNet``."""


def build_sequence_metrics(task: str, num_classes: int) -> MetricCollection:
    if task == "regression":
        return MetricCollection({"mae": regression.MeanAbsoluteError(), "mse": regression.MeanSquaredError()})
    return MetricCollection(
        {
            "acc": classification.MulticlassAccuracy(num_classes, average="micro"),
            "f1": classification.MulticlassF1Score(num_classes, average="macro"),
            "auc": classification.MulticlassAUROC(num_classes),
            "recall": classification.MulticlassRecall(num_classes, average="none"),
            "f1_per_class": classification.MulticlassF1Score(num_classes, average="none"),
        }
    )


class SequenceClassifier(LightningModule):
    """Classifies (cross-entropy, weighted by inverse class frequency when ``class_weighting``) or regresses (MSE)
    whole sequences. Logs macro F1, AUROC, accuracy, per-class recall and F1 (``val/recall_<class>``,
    ``val/f1_<class>``), or MAE/MSE.

    Args:
        net: network builder ``(in_channels, num_outputs)`` taking ``(signals, lengths)``:
            ``research.models.RecurrentNet``.
        num_classes: classes, or the forecast horizon for regression (linked).
        in_channels: signal channels (linked).
        task: ``multiclass`` or ``regression`` (linked).
        class_weighting: weight the cross-entropy by inverse training-class frequencies.
        optimizer: optimizer class and its arguments (``class_path``/``init_args``); the task passes the parameters.
        lr_scheduler: learning-rate scheduler (e.g. ``OneCycleLR``: its ``total_steps`` comes from the Trainer when left
            out).
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
    """

    def __init__(
        self,
        net: SequenceNet,
        num_classes: int = 2,
        in_channels: int = 1,
        task: Literal["multiclass", "regression"] = "multiclass",
        class_weighting: bool = True,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
    ) -> None:
        super().__init__()
        if task not in ("multiclass", "regression"):
            raise ValueError(f"SequenceClassifier needs a sequence DataModule (multiclass or regression), got {task!r}")
        self.save_hyperparameters()
        self.task, self.num_classes, self.class_weighting = task, num_classes, class_weighting
        self.net = net(in_channels, num_classes)
        self.optimizer, self.lr_scheduler, self.scheduler_interval = optimizer, lr_scheduler, scheduler_interval
        self.metrics = nn.ModuleDict(
            {stage: build_sequence_metrics(task, num_classes).clone(prefix=f"{stage}/") for stage in ("val", "test")}
        )
        self.losses = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        if task == "multiclass":  # for the test figures
            self.test_confusion_matrix = classification.MulticlassConfusionMatrix(num_classes)
            self.test_roc = classification.MulticlassROC(num_classes)
        self.register_buffer("class_weights", None, persistent=False)

    def setup(self, stage: str) -> None:
        weights = getattr(self.trainer.datamodule, "class_weights", None) if self.class_weighting else None
        self.class_weights = None if weights is None else weights.to(self.device)

    def forward(self, signals: Tensor, lengths: Tensor) -> Tensor:
        return self.net(signals, lengths)

    def _step(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        signals, lengths, targets = batch
        outputs = self(signals, lengths)
        if self.task == "regression":
            return F.mse_loss(outputs, targets), outputs, targets
        return F.cross_entropy(outputs, targets, weight=self.class_weights), outputs.softmax(dim=1), targets

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _, targets = self._step(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(targets))
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor, Tensor], stage: str) -> Tensor:
        loss, outputs, targets = self._step(batch)
        self.losses[stage].update(loss, weight=len(targets))
        self.metrics[stage].update(outputs, targets)
        if stage == "test" and self.task == "multiclass":
            self.test_confusion_matrix.update(outputs, targets)
            self.test_roc.update(outputs, targets)
        return outputs

    def _log(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        names = getattr(self.trainer.datamodule, "class_names", None) or [str(i) for i in range(self.num_classes)]
        for metric, prefix in (("recall", "recall"), ("f1_per_class", "f1")):
            per_class = values.pop(f"{stage}/{metric}", None)
            if per_class is not None:
                values.update({f"{stage}/{prefix}_{name}": per_class[i] for i, name in enumerate(names)})
        values[f"{stage}/loss"] = self.losses[stage].compute()
        self.log_dict(values)
        self.metrics[stage].reset()
        self.losses[stage].reset()

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log("val")

    def on_test_epoch_start(self) -> None:
        if self.task == "multiclass":
            self.test_confusion_matrix.reset()
            self.test_roc.reset()

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log("test")

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch)[1]

    def configure_callbacks(self) -> list[Callback]:
        figures = ForecastFigures() if self.task == "regression" else ClassificationFigures(train_batch=False)
        return [figures, ClassPredictionWriter()]

    def configure_optimizers(self) -> Any:
        return configure_optimization(self)
