"""Sequence classification and regression (e.g. ECG beats or records, forecasting) over padded batches."""

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics import MetricCollection, classification, regression

from research.callbacks import ClassificationFigures, ForecastFigures
from research.tasks.base import Task

SequenceNet = Callable[[int, int], nn.Module]
"""Builds ``net(signals, lengths) -> outputs`` from ``(in_channels, num_outputs)``: ``research.models.RecurrentNet``,
``research.models.ResNet1d``."""


def build_sequence_metrics(task: str, num_classes: int) -> MetricCollection:
    if task == "regression":
        return MetricCollection({"mae": regression.MeanAbsoluteError(), "mse": regression.MeanSquaredError()})
    return MetricCollection(
        {
            "acc": classification.MulticlassAccuracy(num_classes, average="micro"),
            "f1": classification.MulticlassF1Score(num_classes, average="macro"),
            "auc": classification.MulticlassAUROC(num_classes),
            "recall": classification.MulticlassRecall(num_classes, average="none"),
            "precision": classification.MulticlassPrecision(num_classes, average="none"),
            "f1_per_class": classification.MulticlassF1Score(num_classes, average="none"),
        }
    )


class SequenceClassifier(Task):
    """Classifies (cross-entropy, weighted by the data's class weights when ``class_weighting``) or regresses (MSE)
    whole sequences. Logs macro F1, AUROC, accuracy, per-class recall (sensitivity, Se), precision (positive
    predictive value, +P) and F1 (``val/recall_<class>``, ``val/precision_<class>``, ``val/f1_<class>``), or MAE/MSE.

    Args:
        net: network builder ``(in_channels, num_outputs)`` taking ``(signals, lengths)``:
            ``research.models.RecurrentNet``, ``research.models.ResNet1d``.
        class_weighting: weight the cross-entropy by the data's class weights (inverse training-class frequencies).
        **kwargs: ``data``, ``optimizer``, ``lr_scheduler``, ``scheduler_interval``, ``monitor``, ``mode``
            (``research.tasks.Task``).
    """

    learns = ("multiclass", "regression")

    def __init__(self, net: SequenceNet, class_weighting: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task, self.num_classes, self.class_weighting = self.data.task, self.data.num_outputs, class_weighting
        self.net = net(self.data.in_channels, self.num_classes)
        self.metrics = nn.ModuleDict(
            {
                stage: build_sequence_metrics(self.task, self.num_classes).clone(prefix=f"{stage}/")
                for stage in ("val", "test")
            }
        )
        if self.task == "multiclass":  # for the test figures
            self.test_confusion_matrix = classification.MulticlassConfusionMatrix(self.num_classes)
            self.test_roc = classification.MulticlassROC(self.num_classes)
        weights = self.data.class_weights if class_weighting else None
        self.register_buffer("class_weights", None if weights is None else torch.tensor(weights), persistent=False)

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
        for metric, prefix in (("recall", "recall"), ("precision", "precision"), ("f1_per_class", "f1")):
            per_class = values.pop(f"{stage}/{metric}", None)
            if per_class is not None:
                values.update({f"{stage}/{prefix}_{name}": per_class[i] for i, name in enumerate(self.class_names)})
        self.log_epoch(values, stage)
        self.metrics[stage].reset()

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log("val")

    def on_test_epoch_start(self) -> None:
        if self.task == "multiclass":
            self.test_confusion_matrix.reset()
            self.test_roc.reset()

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Each item's result for ``test_predictions.csv``: true and predicted class with the probabilities, or the
        true and predicted values."""
        outputs, targets = self._evaluate(batch, "test"), batch[2]
        if self.task == "regression":
            return {"true": targets, "predicted": outputs}
        return {"true": targets, "predicted": outputs.argmax(dim=1), "p": outputs}

    def on_test_epoch_end(self) -> None:
        self._log("test")

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        """Class probabilities (or predicted values): new inputs have no targets to score."""
        outputs = self(batch[0], batch[1])
        return outputs if self.task == "regression" else outputs.softmax(dim=1)

    def configure_callbacks(self) -> list[Callback]:
        if self.task == "regression":
            return [ForecastFigures()]
        return [ClassificationFigures(self.class_names, train_batch=False)]
