"""Image classification: loss and metrics follow the dataset's task type, the network comes from config."""

from collections.abc import Callable
from typing import Any, Literal

import torch
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics import CatMetric, Metric, MetricCollection, classification
from torchmetrics.functional import classification as functional

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


ThresholdRule = Literal["fixed", "youden", "f1"]


def choose_threshold(scores: Tensor, targets: Tensor, rule: ThresholdRule) -> Tensor:
    """The score cut-off (predict positive at ``score >= cut-off``) with the highest Youden's J (sensitivity +
    specificity - 1) or F1 on ``(scores, targets)``; one per label for (N, labels) scores."""
    if scores.ndim == 2:
        return torch.stack([choose_threshold(scores[:, j], targets[:, j], rule) for j in range(scores.shape[1])])
    targets = targets.long()
    if rule == "youden":
        fpr, tpr, thresholds = functional.binary_roc(scores, targets)
        gain = tpr - fpr
    else:
        precision, recall, thresholds = functional.binary_precision_recall_curve(scores, targets)
        precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
        gain = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return thresholds[gain.argmax()].clamp(0, 1)


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
            single-label tasks). ``data.balanced`` is the other answer to imbalance: balanced batches, unweighted loss.
        decision_threshold: binary and multi-label tasks: ``fixed`` predicts positive above 0.5; ``youden`` or ``f1``
            also choose, after every validation epoch, the cut-off with the best Youden's J or F1 on the validation
            split (per label), kept with the checkpoint, and report the test's threshold-dependent metrics at it
            (``test/acc@val_threshold``...) beside the 0.5 ones, with ``test/val_threshold``.
        tta_flip: at evaluation and prediction, average the logits of each image and its left-right mirror (the flip
            ``flip_rotate`` and ``shift_flip`` train with); training is unchanged.
        **kwargs: ``data``, ``optimizer``, ``lr_scheduler``, ``scheduler_interval``, ``monitor``, ``mode``
            (``research.tasks.Task``).
    """

    learns = ("binary", "multiclass", "multilabel")

    def __init__(
        self,
        net: NetBuilder,
        channels_last: bool = False,
        class_weighting: bool = False,
        decision_threshold: ThresholdRule = "fixed",
        tta_flip: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        task, num_classes = self.data.task, self.data.num_outputs
        self.task, self.tta_flip = task, tta_flip
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
        self.decision_threshold = decision_threshold
        if decision_threshold != "fixed":
            if task == "multiclass":
                raise ValueError("model.decision_threshold: a multi-class prediction is the argmax; thresholds apply "
                                 "to binary and multi-label tasks")  # fmt: skip
            self.val_scores, self.val_targets = CatMetric(), CatMetric()
            # persistent: the best checkpoint holds the cut-off chosen on its own validation epoch
            self.register_buffer("val_threshold", torch.full((num_classes if task == "multilabel" else 1,), 0.5))
            at_threshold = {k: m for k, m in build_metrics(task, num_classes).items() if k != "auc"}
            self.test_at_threshold = MetricCollection(at_threshold).clone(prefix="test/", postfix="@val_threshold")

    def build_net(self, net: NetBuilder) -> nn.Module:
        return net(self.data.in_channels, self.data.num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(self.layout(x))
        if self.tta_flip and not self.training:
            logits = (logits + self.net(self.layout(x.flip(-1)))) / 2
        return logits

    def layout(self, images: Tensor) -> Tensor:
        """2D images NHWC when ``channels_last``, as the network's weights are."""
        if self.channels_last and images.ndim == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

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
        if self.decision_threshold != "fixed":
            self.val_scores.update(probs)
            self.val_targets.update(targets)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        if self.decision_threshold != "fixed":
            if not self.trainer.sanity_checking:
                scores, targets = self.val_scores.compute(), self.val_targets.compute()
                self.val_threshold.copy_(choose_threshold(scores, targets, self.decision_threshold).reshape(-1))
                values["val/threshold"] = self.val_threshold.mean()
            self.val_scores.reset()
            self.val_targets.reset()
        self.log_epoch(values, "val")

    def on_test_epoch_start(self) -> None:
        self.test_confusion_matrix.reset()
        self.test_roc.reset()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        loss, probs, targets = self._shared_step(batch)
        self.test_metrics.update(probs, targets)
        self.test_confusion_matrix.update(probs, targets)
        self.test_roc.update(probs, targets)
        self.losses["test"].update(loss, weight=len(targets))
        if self.decision_threshold != "fixed":
            cut = self.val_threshold if self.task == "multilabel" else self.val_threshold[0]
            self.test_at_threshold.update((probs >= cut).long(), targets)
        return class_results(self.task, probs, targets)

    def on_test_epoch_end(self) -> None:
        values = self.test_metrics.compute()
        self.test_metrics.reset()
        if self.decision_threshold != "fixed":
            values = {**values, **self.test_at_threshold.compute(), "test/val_threshold": self.val_threshold.mean()}
            self.test_at_threshold.reset()
        self.log_epoch(values, "test")

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
        **kwargs: ``channels_last``, ``class_weighting``, ``decision_threshold`` (``ImageClassifier``), ``data``,
            ``optimizer``, ``lr_scheduler``, ``scheduler_interval``, ``monitor``, ``mode`` (``research.tasks.Task``).
    """

    def __init__(self, net: Callable[[int, int, int], nn.Module], **kwargs: Any) -> None:
        if kwargs.get("tta_flip"):
            raise ValueError("model.tta_flip: FusionClassifier does not mirror its inputs (a table has no sides)")
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
        return self.net(self.layout(images), rows)
