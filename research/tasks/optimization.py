"""Optimizer and LR scheduler from config (dependency injection), shared by every task."""

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable


def configure_optimization(
    parameters: Iterable[torch.nn.Parameter],
    optimizer: OptimizerCallable,
    lr_scheduler: LRSchedulerCallable | None,
    interval: Literal["epoch", "step"] = "epoch",
    monitor: str = "val/loss",
    total_steps: Callable[[], int | float] | None = None,
) -> Any:
    """What ``configure_optimizers`` returns; ``ReduceLROnPlateau`` watches ``monitor``.

    A schedule over the whole fit (``OneCycleLR``) whose config leaves ``total_steps`` and ``epochs`` out gets
    ``total_steps()`` (the Trainer's ``estimated_stepping_batches``), so ``--trainer.max_epochs`` stays the one
    setting of the fit's length.
    """
    built = optimizer(parameters)
    if lr_scheduler is None:
        return built
    given = getattr(lr_scheduler, "keywords", {})  # the config's init_args (LightningCLI builds a partial)
    if total_steps and given.get("total_steps", 0) is None and given.get("epochs") is None:
        scheduler = lr_scheduler(built, total_steps=int(total_steps()))
    else:
        scheduler = lr_scheduler(built)
    config = {"scheduler": scheduler, "interval": interval}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = monitor
    return {"optimizer": built, "lr_scheduler": config}
