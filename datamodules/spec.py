"""The contract from data to task: what every DataModule declares (``spec``) and ``medlab`` links into the task."""

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

TaskType = Literal["binary", "multiclass", "multilabel", "segmentation", "regression", "registration"]
"""What is learnt; decides the loss and the metrics. The one definition medlab has."""


@dataclass(frozen=True)
class DataSpec:
    """What a task needs to know of its data, declared once by the DataModule (its ``spec`` property).

    ``medlab``'s CLI hands it to the task (``model.init_args.data``) as plain data, so it is stored with the
    checkpoint's hyperparameters and the run's config; no task or callback reads the DataModule while training.

    Args:
        task: what is learnt (``binary``, ``multiclass``, ``multilabel``, ``segmentation``, ``regression``).
        num_outputs: classes (background included for segmentation and for registration's evaluated labels), labels
            (multi-label) or predicted values (regression: the forecast horizon).
        in_channels: channels of an input image or signal.
        spatial_dims: 1 for signals, 2 for images, 3 for volumes.
        class_names: a name per class, in label order; empty for regression.
        patch_size: the training patch, which the task uses as its sliding window at evaluation; none when whole
            inputs are batched.
        class_weights: inverse training-class frequencies (mean 1), for a class-weighted loss; none when the data
            does not provide them.
        table_features: the names of the encoded table columns each input comes with (``datamodules.Multimodal``);
            none for images or signals alone.
    """

    task: TaskType
    num_outputs: int
    in_channels: int
    spatial_dims: int
    class_names: list[str]
    patch_size: list[int] | None = None
    class_weights: list[float] | None = None
    table_features: list[str] | None = None

    def __post_init__(self) -> None:
        if self.task not in get_args(TaskType):
            raise ValueError(f"DataSpec.task: {self.task!r} is not one of {', '.join(get_args(TaskType))}")
        for name in ("num_outputs", "in_channels"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"DataSpec.{name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.spatial_dims not in (1, 2, 3):
            raise ValueError(f"DataSpec.spatial_dims: expected 1, 2 or 3, got {self.spatial_dims!r}")
        named = 0 if self.task == "regression" else self.num_outputs
        if len(self.class_names) != named:
            raise ValueError(f"DataSpec.class_names: {len(self.class_names)} names for a {self.task} task of "
                             f"{self.num_outputs} outputs; expected {named}")  # fmt: skip
        if self.class_weights is not None and len(self.class_weights) != self.num_outputs:
            raise ValueError(
                f"DataSpec.class_weights: {len(self.class_weights)} weights for {self.num_outputs} classes"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DataSpec":
        """The spec a task was given (a plain dict in its hyperparameters); a missing or unknown field is named."""
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"model.init_args.data: unknown fields {unknown}; a DataSpec has {list(cls.__dataclass_fields__)}"
            )
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (lists, strings, numbers): what the CLI links, safe to store in a checkpoint."""
        return asdict(self)


def inverse_frequencies(targets: Any, num_classes: int) -> list[float]:
    """Class weights for an imbalance-weighted loss: inverse class frequencies of ``targets`` (class indices), mean 1
    over the classes present; 0 for a class absent from them."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.tolist()
