"""Image classification: loss and metrics follow the dataset's task type, the network comes from config."""

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection, classification

from datamodules.spec import TaskType
from research.callbacks import ClassificationFigures
from research.tasks.base import NetBuilder, Task


def build_metrics(task: TaskType, num_classes: int) -> MetricCollection:
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


def curve_metrics(task: TaskType, num_classes: int) -> tuple[Metric, Metric]:
    c = classification
    if task == "binary":
        return c.BinaryConfusionMatrix(), c.BinaryROC()
    if task == "multiclass":
        return c.MulticlassConfusionMatrix(num_classes), c.MulticlassROC(num_classes)
    return c.MultilabelConfusionMatrix(num_classes), c.MultilabelROC(num_classes)


def class_results(task: TaskType, probs: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Each test item's true and predicted classes and probabilities, as the metrics decide them (binary: class 1
    above 0.5; multi-label: each label above 0.5), for ``test_predictions.csv``."""
    if task == "binary":
        return {"true": targets, "predicted": (probs > 0.5).long(), "p": torch.stack([1 - probs, probs], dim=1)}
    predicted = (probs > 0.5).long() if task == "multilabel" else probs.argmax(dim=1)
    return {"true": targets, "predicted": predicted, "p": probs}


class ImageClassifier(Task):
    """Classifies images with any network from ``research.models``.

    Binary tasks use two logits and cross-entropy (as the MedMNIST benchmark does); multi-label tasks use
    BCE-with-logits. ``channels_last`` keeps a 2D network and its inputs NHWC, which ``precision: bf16-mixed`` needs
    to be fast (GPU, AMX CPUs).

    Args:
        net: network builder ``(in_channels, num_classes) -> nn.Module`` from ``research.models``.
        channels_last: NHWC network and inputs (fast with ``precision: bf16-mixed`` on GPUs and AMX CPUs).
        class_weighting: weight the cross-entropy by the data's class weights (inverse training-class frequencies;
            DataModules that provide them: MIT-BIH, CinC 2017 and their multimodal joins).
        **kwargs: ``data``, ``optimizer``, ``lr_scheduler``, ``scheduler_interval``, ``monitor``, ``mode``
            (``research.tasks.Task``).
    """

    learns = ("binary", "multiclass", "multilabel")

    def __init__(
        self, net: NetBuilder, channels_last: bool = False, class_weighting: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        task, num_classes = self.data.task, self.data.num_outputs
        self.task = task
        self.net = self.build_net(net)
        # NHWC convolutions: with bf16-mixed they reach the CPU's AMX / the GPU's tensor cores without transposes.
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        if class_weighting and (self.data.class_weights is None or task == "multilabel"):
            raise ValueError("model.class_weighting: the DataModule provides no class weights for this task")
        weights = torch.tensor(self.data.class_weights) if class_weighting else None
        self.loss_fn = nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss(weight=weights)

        self.train_acc = build_metrics(task, num_classes)["acc"]
        self.val_metrics = build_metrics(task, num_classes).clone(prefix="val/")
        self.test_metrics = build_metrics(task, num_classes).clone(prefix="test/")
        self.test_confusion_matrix, self.test_roc = curve_metrics(task, num_classes)

    def build_net(self, net: NetBuilder) -> nn.Module:
        return net(self.data.in_channels, self.data.num_outputs)

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
        self.losses["val"].update(loss, weight=len(targets))

    def on_validation_epoch_end(self) -> None:
        self.log_epoch(self.val_metrics.compute(), "val")
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        self.test_confusion_matrix.reset()
        self.test_roc.reset()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        loss, probs, targets = self._shared_step(batch)
        self.test_metrics.update(probs, targets)
        self.test_confusion_matrix.update(probs, targets)
        self.test_roc.update(probs, targets)
        self.losses["test"].update(loss, weight=len(targets))
        return class_results(self.task, probs, targets)

    def on_test_epoch_end(self) -> None:
        self.log_epoch(self.test_metrics.compute(), "test")
        self.test_metrics.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.probabilities(self(images))

    def configure_callbacks(self) -> list[Callback]:
        return [ClassificationFigures(self.class_names, train_batch=self.data.spatial_dims > 1)]  # signals: no picture


class FusionClassifier(ImageClassifier):
    """Classifies an input with its table row (``datamodules.Multimodal``: batches ``((inputs, rows), labels)``)
    through a fusion network (``research.models.FusionNet``); loss, metrics and figures are ``ImageClassifier``'s.
    A table cell still missing (NaN, ``data.missing: keep``) is an error naming its column before it reaches a loss.

    Args:
        net: fusion builder ``(in_channels, table_features, num_classes) -> nn.Module`` (``research.models.FusionNet``).
        **kwargs: ``channels_last``, ``class_weighting`` (``ImageClassifier``), ``data``, ``optimizer``,
            ``lr_scheduler``, ``scheduler_interval``, ``monitor``, ``mode`` (``research.tasks.Task``).
    """

    def __init__(self, net: Callable[[int, int, int], nn.Module], **kwargs: Any) -> None:
        super().__init__(net, **kwargs)

    def build_net(self, net: Callable[[int, int, int], nn.Module]) -> nn.Module:
        if not self.data.table_features:
            raise ValueError("FusionClassifier needs a table: use a datamodules.Multimodal DataModule")
        return net(self.data.in_channels, len(self.data.table_features), self.data.num_outputs)

    def forward(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
        images, rows = inputs
        if torch.isnan(rows).any():
            columns = [self.data.table_features[j] for j in torch.isnan(rows).any(0).nonzero().flatten().tolist()]
            raise ValueError(f"table columns {columns} hold NaN: a network needs data.missing: impute")
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images, rows)
