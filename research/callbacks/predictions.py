"""What a model's predictions are written to: ``predictions.csv`` (``medlab predict``, classifiers and sequence
models) and ``test_predictions.csv`` (every test, each item's result)."""

import csv
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from research.runs import atomic_file


class ClassPredictionWriter(BasePredictionWriter):
    """``predictions.csv``: a row per predicted item, named by the columns the DataModule gives it (``input``: the
    file; an ECG beat's ``sample``; the conversions it needed) or else by its index, then the predicted class name and
    one probability column per class (``p_<class>``); then a row per input that could not be read, with the reason in
    ``error``. Regression rows hold the predicted values (``y_<j>``). Written into ``output_dir``, by default
    ``<trainer.default_root_dir>/predictions`` (for a checkpoint inside a run folder, that run's folder).

    Args:
        class_names: a name per class, in output order; none for regression.
        items: the columns naming each predicted item, in the predict split's order; none: its index.
        unreadable: the inputs that could not be read, with the reason.
        output_dir: where ``predictions.csv`` goes.
    """

    def __init__(
        self, class_names: list[str] | None = None, items: list[dict[str, Any]] | None = None,
        unreadable: dict[str, str] | None = None, output_dir: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(write_interval="epoch")
        self.class_names, self.items, self.unreadable, self.output_dir = class_names, items, unreadable, output_dir

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        if not trainer.is_global_zero or not predictions:
            return
        batches = predictions[0] if isinstance(predictions[0], list) else predictions  # one dataloader
        outputs = torch.cat([batch.detach().float().cpu() for batch in batches])
        outputs = outputs[:, None] if outputs.ndim == 1 else outputs
        classification = self.class_names is not None
        if classification and outputs.shape[1] == 1:  # binary: the probability of class 1
            outputs = torch.cat([1 - outputs, outputs], dim=1)
        items = self.items or [{"index": index} for index in range(len(outputs))]
        failed = [{"input": path, "error": reason} for path, reason in (self.unreadable or {}).items()]
        names = list(dict.fromkeys(key for row in items + failed for key in row if key != "error"))
        if classification:
            values = [f"p_{name}" for name in self.class_names]
            rows = [{"predicted": self.class_names[int(row.argmax())], **dict(zip(values, row.tolist(), strict=True))}
                    for row in outputs]  # fmt: skip
            values = ["predicted", *values]
        else:
            values = [f"y_{j}" for j in range(outputs.shape[1])]
            rows = [dict(zip(values, row.tolist(), strict=True)) for row in outputs]
        folder = Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "predictions.csv"
        with atomic_file(path) as handle:
            writer = csv.DictWriter(handle, fieldnames=[*names, *values, *(["error"] if failed else [])], restval="")
            writer.writeheader()
            for item, row in zip(items, rows, strict=True):
                writer.writerow({**item, **{k: format_value(v) for k, v in row.items()}})
            writer.writerows(failed)
        unread = f"; {len(failed)} inputs could not be read (rows with an error)" if failed else ""
        print(f"medlab predict: {len(rows)} predictions written to {path}{unread}")


class TestResultsWriter(Callback):
    """``test_predictions.csv`` beside the run's other results: one row per test item (an image, a case, a beat or a
    record), named by the DataModule where it names its items (a case id, ``record:sample``), else by its index in
    the test split, then the columns the task's ``test_step`` returned for it. A column of class indices becomes
    class names (``true``, ``predicted``); a per-class column becomes one column per class (``p_<class>``,
    ``dice_<class>``); larger outputs (a predicted mask) are left out. Under DDP the rows of every process are
    gathered, in the test split's order.

    Args:
        item_names: a name per test item, in the test split's order; none: their indices.
    """

    def __init__(self, item_names: list[str] | None = None) -> None:
        self.item_names = item_names
        self.rows: list[tuple[int, dict[str, list[Any]]]] = []
        self.seen = 0

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rows, self.seen = [], 0

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if not isinstance(outputs, dict):
            return
        names = getattr(pl_module, "class_names", None)
        columns: dict[str, list[Any]] = {}
        for key, values in outputs.items():
            values = values.detach().cpu()
            if values.ndim > 2:  # a mask, a map: not a table's column
                continue
            if values.ndim == 1 and not values.is_floating_point() and names:
                columns[key] = [names[int(v)] for v in values]
            elif values.ndim == 1:
                columns[key] = values.tolist()
            else:
                labels = names if names and len(names) == values.shape[1] else range(values.shape[1])
                columns.update({f"{key}_{label}": values[:, j].tolist() for j, label in enumerate(labels)})
        count = len(next(iter(columns.values())))
        for k in range(count):  # EvaluationShard: process r reads items r, r + W, r + 2W, ...
            index = trainer.global_rank + (self.seen + k) * trainer.world_size
            self.rows.append((index, {key: column[k] for key, column in columns.items()}))
        self.seen += count

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows = self.rows
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not trainer.is_global_zero or not rows:
            return
        rows.sort(key=lambda row: row[0])
        header = list(rows[0][1])
        path = Path(trainer.default_root_dir) / "test_predictions.csv"
        with atomic_file(path) as handle:
            writer = csv.writer(handle)
            writer.writerow(["item", *header])
            for index, row in rows:
                item = self.item_names[index] if self.item_names else index
                writer.writerow([item, *(format_value(row[key]) for key in header)])


def format_value(value: Any) -> str:
    return f"{value:.9g}" if isinstance(value, float) else str(value)  # 9 digits: a float32 exactly
