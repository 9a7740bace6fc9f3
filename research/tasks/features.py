"""The classical baseline of a classification experiment: hand-made descriptors (``research.features``) and a
scikit-learn classifier chosen on the validation split, measured by the same torchmetrics as ``ImageClassifier``."""

import csv
import warnings
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback
from sklearn.pipeline import Pipeline
from torch import Tensor

from research.callbacks import ClassificationFigures, FeatureFigures
from research.features.classifiers import build_pipeline, candidates, describe_candidate
from research.features.descriptors import FeatureSettings
from research.features.extraction import FeatureExtractor
from research.runs import atomic_file
from research.tables import print_table
from research.tasks.base import Task
from research.tasks.classification import build_metrics, class_results, curve_metrics

DEFAULT_CLASSIFIERS = {
    "logistic_regression": {"C": [0.01, 0.1, 1.0]},
    "svm": {"C": [1.0, 10.0]},
    "random_forest": {"n_estimators": [500]},
    "gradient_boosting": {"learning_rate": [0.1]},
}


def split_inputs(batch: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A batch's images, table rows (``((images, table), targets)`` from ``datamodules.Multimodal``; else none) and
    targets, as numpy."""
    inputs, targets = batch[0], batch[-1]
    images, table = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
    return images.cpu().numpy(), None if table is None else table.cpu().numpy(), targets.cpu().numpy()


class FeatureClassifier(Task):
    """Descriptors of each image (and the table's columns, with multimodal data), then the scikit-learn pipeline of
    the grid with the best ``monitor`` on the validation split. Nothing is learnt by gradient: ``medlab run`` passes
    one epoch over the training split to collect it, fits every candidate on it at the end of that epoch, picks the
    best on validation, then tests the chosen one, writing the same run folder as a network (metrics, ROC, confusion
    matrix, ``test_predictions.csv``) plus ``candidates.csv`` (every pipeline's validation metrics) and
    ``figures/feature_importance.png`` (permutation importance of each descriptor group on the validation split).

    The fitted pipeline lives in memory only (nothing medlab reads is unpickled, so no checkpoint holds it): the run
    repeats it exactly from its config and seed, in seconds from the cached features.

    Args:
        features: the descriptors and their settings (``research.features.FeatureSettings``); ``descriptors: []``
            uses the table's columns only.
        classifiers: the grid: a classifier (``logistic_regression``, ``svm``, ``random_forest``,
            ``gradient_boosting``) -> its scikit-learn options -> the values to try.
        select_k: feature-selection settings to try with every classifier: keep the ``k`` features of highest ANOVA F
            on the training split; ``null`` keeps all.
        use_table: use the table's columns when the data has them.
        cache_dir: where features are cached (default ``$MEDLAB_CACHE/features`` or ``~/.cache/medlab/features``).
        importance_repeats: permutations per descriptor group for the importance figure.
        **kwargs: ``data``, ``monitor``, ``mode`` (``research.tasks.Task``).
    """

    learns = ("binary", "multiclass")

    def __init__(
        self,
        features: FeatureSettings = FeatureSettings(),
        classifiers: dict[str, dict[str, list[Any]]] | None = None,
        select_k: list[int | None] | None = None,
        use_table: bool = True,
        cache_dir: str | None = None,
        importance_repeats: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False  # nothing to optimise by gradient
        self.extractor = FeatureExtractor(features, cache_dir)
        self.candidates = candidates(classifiers or DEFAULT_CLASSIFIERS, select_k or [None])
        if not self.candidates:
            raise ValueError("model.classifiers: the grid is empty; name at least one classifier")
        if not features.descriptors and not (use_table and self.data.table_features):
            raise ValueError("model.features.descriptors is empty and the data has no table: nothing to classify")
        self.use_table, self.importance_repeats = use_table, importance_repeats
        self.task, num_classes = self.data.task, self.data.num_outputs
        self.val_metrics = build_metrics(self.task, num_classes).clone(prefix="val/")
        self.test_metrics = build_metrics(self.task, num_classes).clone(prefix="test/")
        self.test_confusion_matrix, self.test_roc = curve_metrics(self.task, num_classes)
        self.collected: dict[str, list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]] = {"train": [], "val": []}
        self.pipeline: Pipeline | None = None
        self.feature_names: list[str] = []
        self.scores: list[dict[str, Any]] = []  # each candidate's validation metrics
        self.importance: dict[str, tuple[float, float]] = {}  # descriptor group -> (mean, std) drop of the monitor
        self.group_sizes: dict[str, int] = {}  # descriptor group -> its columns

    def configure_optimizers(self) -> None:
        return None

    def features(self, images: np.ndarray, table: np.ndarray | None) -> np.ndarray:
        """The descriptors of ``images`` (cached), then the table's columns (NaN kept: the pipeline imputes)."""
        described, names = self.extractor(images)
        if table is not None and self.use_table:
            described = np.concatenate([described, table.astype(np.float32)], axis=1)
            names = [*names, *(f"table/{name}" for name in self.data.table_features or [])]
        self.feature_names = names
        return described

    def split_features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        parts = self.collected[split]
        images = np.concatenate([p[0] for p in parts])
        table = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        return self.features(images, table), np.concatenate([p[2] for p in parts])

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self.trainer.world_size > 1:
            raise RuntimeError("FeatureClassifier fits on one process: run it without DDP (trainer: cpu)")
        if self.pipeline is None:  # one pass collects the split; later epochs have nothing to add
            self.collected["train"].append(split_inputs(batch))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.collected["val"].append(split_inputs(batch))

    def probabilities(self, pipeline: Pipeline, features: np.ndarray) -> Tensor:
        """Scores the metrics take: p(class 1) for binary tasks, every class's probability for multi-class."""
        probs = torch.zeros(len(features), self.data.num_outputs)
        probs[:, pipeline.classes_] = torch.from_numpy(pipeline.predict_proba(features)).float()  # a class unseen in
        return probs[:, 1] if self.task == "binary" else probs  # training keeps its column, at probability 0

    def score(self, probs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        metrics = self.val_metrics.clone()
        metrics.reset()
        return {**metrics(probs, targets), "val/loss": self.nll(probs, targets).mean()}

    def nll(self, probs: Tensor, targets: Tensor) -> Tensor:
        """Each item's cross-entropy, the loss a network is measured by (``val/loss``, ``test/loss``)."""
        p = torch.where(targets == 1, probs, 1 - probs) if self.task == "binary" else probs.gather(1, targets[:, None])
        return -p.clamp(min=1e-7).log().flatten()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or (self.pipeline is None and not self.collected["train"]):
            self.collected["val"] = []
            return
        features, targets = self.split_features("val")
        if self.pipeline is None:
            self.choose(features, targets)
        probs, targets = self.probabilities(self.pipeline, features), torch.from_numpy(targets)
        self.val_metrics.update(probs, targets)
        self.losses["val"].update(self.nll(probs, targets))
        self.log_epoch(self.val_metrics.compute(), "val")
        self.val_metrics.reset()
        self.collected["val"] = []

    def choose(self, val_x: np.ndarray, val_y: np.ndarray) -> None:
        """Fit every candidate on the training split and keep the best on validation (the first of equals)."""
        train_x, train_y = self.split_features("train")
        seed = int(torch.randint(2**31, ()))  # from seed_everything's generator, so the run's seed decides it
        if self.monitor not in ("val/loss", *self.val_metrics.keys()):
            raise ValueError(
                f"experiment.monitor: {self.monitor!r} is not one of val/loss, {', '.join(self.val_metrics)}"
            )
        sign = 1 if self.mode == "max" else -1
        best = None
        self.scores = []
        for candidate in self.candidates:
            pipeline = build_pipeline(candidate, seed, train_x.shape[1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # ANOVA F of a constant feature (an empty LBP bin)
                warnings.simplefilter("ignore", RuntimeWarning)
                pipeline.fit(train_x, train_y)
            values = self.score(self.probabilities(pipeline, val_x), torch.from_numpy(val_y))
            self.scores.append({"pipeline": describe_candidate(candidate), **{k: float(v) for k, v in values.items()}})
            value = sign * float(values[self.monitor])
            if best is None or value > best[0]:
                best = (value, pipeline, len(self.scores) - 1)
        self.pipeline = best[1]
        self.scores[best[2]]["chosen"] = True
        self.importance = self.group_importance(val_x, val_y, seed, sign * best[0])
        self.collected["train"] = []
        if self.trainer.is_global_zero:
            metric = self.monitor
            rows = [[s["pipeline"], f"{s[metric]:.4f}", "yes" if s.get("chosen") else ""] for s in self.scores]
            title = f"Classical pipelines: {metric} on the validation split ({train_x.shape[1]} features)"
            print_table(title, ["pipeline", metric, "chosen"], rows)

    def group_importance(
        self, features: np.ndarray, targets: np.ndarray, seed: int, reference: float
    ) -> dict[str, tuple[float, float]]:
        """How much the monitored metric drops from ``reference`` (the chosen pipeline's, on validation) when one
        descriptor group's columns are shuffled together across items (permutation importance by group: a group's
        columns are strongly correlated)."""
        groups: dict[str, list[int]] = {}
        for column, name in enumerate(self.feature_names):
            group = name if name.startswith("table/") else name.rsplit("/", 1)[0]
            groups.setdefault(group, []).append(column)
        self.group_sizes = {group: len(columns) for group, columns in groups.items()}
        sign = 1 if self.mode == "max" else -1
        rng = np.random.default_rng(seed)
        importance = {}
        for group, columns in groups.items():
            drops = []
            for _ in range(self.importance_repeats):
                shuffled = features.copy()
                shuffled[:, columns] = features[rng.permutation(len(features))][:, columns]
                probs = self.probabilities(self.pipeline, shuffled)
                drops.append(sign * (reference - float(self.score(probs, torch.from_numpy(targets))[self.monitor])))
            importance[group] = (float(np.mean(drops)), float(np.std(drops)))
        return importance

    def fitted(self) -> Pipeline:
        if self.pipeline is None:
            raise RuntimeError("FeatureClassifier: no pipeline is fitted; it is fitted and tested by `medlab run`")
        return self.pipeline

    def on_test_epoch_start(self) -> None:
        self.fitted()
        self.test_confusion_matrix.reset()
        self.test_roc.reset()

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        images, table, targets = split_inputs(batch)
        probs, targets = self.probabilities(self.pipeline, self.features(images, table)), torch.from_numpy(targets)
        for metric in (self.test_metrics, self.test_confusion_matrix, self.test_roc):
            metric.update(probs, targets)
        self.losses["test"].update(self.nll(probs, targets))
        return class_results(self.task, probs, targets)

    def on_test_epoch_end(self) -> None:
        self.log_epoch(self.test_metrics.compute(), "test")
        self.test_metrics.reset()

    def write_candidates(self, path: Any) -> None:
        """Every candidate's validation metrics as CSV, the chosen one marked."""
        header = ["pipeline", *[k for k in self.scores[0] if k not in ("pipeline", "chosen")], "chosen"]
        with atomic_file(path) as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in self.scores:
                writer.writerow([row["pipeline"], *[f"{row[k]:.6f}" for k in header[1:-1]], row.get("chosen", "")])

    def write_importance(self, path: Any) -> None:
        """Each descriptor group's columns and permutation importance (mean and std of the monitor's drop) as CSV."""
        with atomic_file(path) as handle:
            writer = csv.writer(handle)
            writer.writerow(["group", "columns", "importance_mean", "importance_std"])
            for group, (mean, std) in self.importance.items():
                writer.writerow([group, self.group_sizes[group], f"{mean:.6f}", f"{std:.6f}"])

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, table, _ = split_inputs(batch)
        return self.probabilities(self.fitted(), self.features(images, table))

    def configure_callbacks(self) -> list[Callback]:
        return [ClassificationFigures(self.class_names, train_batch=False), FeatureFigures()]
