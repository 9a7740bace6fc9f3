"""What every medlab task shares: the data's spec, the optimizer and scheduler from config, and the best-so-far
value of the metric the run monitors."""

from collections.abc import Callable
from typing import Any, Literal, get_args

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric, MinMetric

from datamodules.spec import DataSpec, TaskType

NetBuilder = Callable[[int, int], nn.Module]
"""Builds the network from ``(in_channels, num_outputs)``: every builder in ``research.models``."""


class Task(LightningModule):
    """Base of medlab's tasks. A task declares the task types it learns (``learns``), builds its network from
    ``self.data`` (a ``datamodules.spec.DataSpec``) and implements its steps; the rest is here.

    ``medlab`` links ``data`` from the DataModule's ``spec`` and ``monitor``/``mode`` from ``experiment``, so an
    experiment file never repeats them. Evaluation losses are ``MeanMetric``s (``self.losses[stage]``): summed over
    every sample of every process, so DDP equals one process exactly.

    Args:
        data: the DataModule's ``spec`` as a dict (linked by ``medlab``).
        optimizer: optimizer class and its arguments (``class_path``/``init_args``); the task passes the parameters.
        lr_scheduler: learning-rate scheduler (e.g. ``OneCycleLR``: its ``total_steps`` comes from the Trainer when left
            out).
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        monitor: the metric that picks the best checkpoint (linked from ``experiment.monitor``); its best value so far
            is logged as ``<monitor>_best``.
        mode: ``max`` or ``min``: which way ``monitor`` improves (linked from ``experiment.mode``).
    """

    learns: tuple[TaskType, ...] = get_args(TaskType)

    def __init__(
        self,
        data: dict[str, Any],
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        monitor: str | None = "val/loss",
        mode: Literal["min", "max"] = "min",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data = DataSpec.from_dict(data)
        if self.data.task not in self.learns:
            raise ValueError(
                f"{type(self).__name__} learns {', '.join(self.learns)} tasks; the DataModule's task is "
                f"{self.data.task!r}"
            )
        self.optimizer, self.lr_scheduler, self.scheduler_interval = optimizer, lr_scheduler, scheduler_interval
        self.monitor, self.mode = monitor, mode
        self.best = MaxMetric() if mode == "max" else MinMetric()
        self.best.persistent(True)  # in the checkpoint, so a resumed run keeps its best so far
        self.losses = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})

    @property
    def class_names(self) -> list[str]:
        """A name per output (``DataSpec`` requires them for every task but regression, which has none)."""
        return self.data.class_names

    def log_epoch(self, values: dict[str, Tensor], stage: str) -> None:
        """Log an evaluation epoch's metrics with its mean loss; after a validation epoch (not the sanity check), also
        the best value of ``monitor`` so far."""
        values = {**values, f"{stage}/loss": self.losses[stage].compute()}
        self.losses[stage].reset()
        self.log_dict(values, sync_dist=False)
        if stage == "val" and not self.trainer.sanity_checking and self.monitor in values:
            self.best(values[self.monitor])
            self.log(f"{self.monitor}_best", self.best.compute(), prog_bar=True)

    def configure_optimizers(self) -> Any:
        """The config's optimizer over every parameter, and its scheduler; ``ReduceLROnPlateau`` watches ``val/loss``.

        A schedule over the whole fit (``OneCycleLR``) whose config leaves ``total_steps`` and ``epochs`` out gets the
        Trainer's ``estimated_stepping_batches``, so ``--trainer.max_epochs`` stays the one setting of the fit's length.
        """
        optimizer = self.optimizer(self.parameters())
        if self.lr_scheduler is None:
            return optimizer
        given = getattr(self.lr_scheduler, "keywords", {})  # the config's init_args (LightningCLI builds a partial)
        if given.get("total_steps", 0) is None and given.get("epochs") is None:
            scheduler = self.lr_scheduler(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        else:
            scheduler = self.lr_scheduler(optimizer)
        config = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}
