"""``docs/extending.md``, proven: a DataModule and a task defined here, in the test file, run through ``medlab run``
with one YAML file and no change anywhere else in the code."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset
from torchmetrics.classification import BinaryAUROC

from datamodules.loaders import SplitDataModule
from datamodules.spec import DataSpec
from research.cli import cli
from research.runs import RunError
from research.tasks import Task
from research.tracking import finish_wandb
from tests.conftest import CPU, QUICK


class Blobs(SplitDataModule):
    """Two Gaussian blobs: class 1 is class 0 shifted by ``shift`` along every feature.

    Args:
        features: features per sample.
        shift: distance between the classes' means, per feature.
        batch_size: samples per batch.
    """

    def __init__(self, features: int = 8, shift: float = 1.0, batch_size: int = 32) -> None:
        super().__init__()
        self.features, self.shift, self.batch_size, self.num_workers = features, shift, batch_size, 0

    @property
    def spec(self) -> DataSpec:
        return DataSpec(task="binary", num_outputs=2, in_channels=self.features, spatial_dims=1,
                        class_names=["left", "right"])  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        generator = torch.Generator().manual_seed(0)
        for split in ("train", "val", "test"):
            labels = torch.arange(200) % 2
            samples = torch.randn(200, self.features, generator=generator) + self.shift * labels[:, None]
            self.datasets[split] = TensorDataset(samples, labels)


class LogisticRegression(Task):
    """A linear layer and cross-entropy; logs AUROC.

    Args:
        **kwargs: ``data``, ``optimizer``, ... (``research.tasks.Task``).
    """

    learns = ("binary",)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.linear = nn.Linear(self.data.in_channels, self.data.num_outputs)
        self.auc = nn.ModuleDict({"val": BinaryAUROC(), "test": BinaryAUROC()})

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        samples, labels = batch
        loss = F.cross_entropy(self.linear(samples), labels)
        self.log("train/loss", loss, on_epoch=True)
        return loss

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        samples, labels = batch
        logits = self.linear(samples)
        self.losses[stage].update(F.cross_entropy(logits, labels), weight=len(labels))
        self.auc[stage].update(logits.softmax(1)[:, 1], labels)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch({"val/auc": self.auc["val"].compute()}, "val")
        self.auc["val"].reset()

    def on_test_epoch_end(self) -> None:
        self.log_epoch({"test/auc": self.auc["test"].compute()}, "test")
        self.auc["test"].reset()


EXPERIMENT = """
experiment:
  name: blobs_logistic
  monitor: val/auc
seed_everything: 0
trainer:
  max_epochs: 3
model:
  class_path: tests.test_extending.LogisticRegression
  init_args:
    optimizer:
      class_path: torch.optim.SGD
      init_args:
        lr: 0.1
data:
  class_path: tests.test_extending.Blobs
  init_args:
    shift: 1.0
"""


def medlab_run(tmp_path: Path, *args: str) -> Path:
    experiment = tmp_path / "blobs_logistic.yaml"
    experiment.write_text(EXPERIMENT)
    try:
        medlab = cli(["run", "--config", CPU, "--config", str(experiment), f"--experiment.runs_dir={tmp_path}",
                      *QUICK, *args])  # fmt: skip
    finally:
        finish_wandb()
    return medlab.run_dir


def test_a_datamodule_and_a_task_defined_outside_medlab_run_through_medlab_run(tmp_path: Path) -> None:
    run_dir = medlab_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["monitor"] == "val/auc" and summary["test"]["test/auc"] > 0.9
    assert set(summary["test"]) == {"test/auc", "test/loss"}
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_epoch", "val/auc", "val/auc_best", "val/loss"} <= set(header)
    checkpoint = torch.load(run_dir / summary["best_checkpoint"], weights_only=True)
    assert checkpoint["hyper_parameters"]["data"]["class_names"] == ["left", "right"]  # the spec the task was given


class Forgetful(Blobs):
    """Declares a spec without class names."""

    @property
    def spec(self) -> DataSpec:
        return DataSpec(task="binary", num_outputs=2, in_channels=self.features, spatial_dims=1)


class NoSpec(SplitDataModule):
    """Declares no spec at all."""

    def setup(self, stage: str | None = None) -> None: ...


def test_a_datamodule_that_forgets_a_field_fails_at_construction_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"data \(Forgetful\).spec: .*missing 1 required .*'class_names'"):
        medlab_run(tmp_path, "--data=tests.test_extending.Forgetful")
    with pytest.raises(TypeError, match="abstract method '?spec"):
        NoSpec()
    assert not any(tmp_path.glob("blobs_logistic/*")), "nothing is written before the data is understood"
