"""Optimizer and LR scheduler from config (dependency injection), shared by every task."""

from collections.abc import Iterable
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable


def configure_optimization(
    parameters: Iterable[torch.nn.Parameter],
    optimizer: OptimizerCallable,
    lr_scheduler: LRSchedulerCallable | None,
    interval: Literal["epoch", "step"] = "epoch",
    monitor: str = "val/loss",
) -> Any:
    """What ``configure_optimizers`` returns; ``ReduceLROnPlateau`` watches ``monitor``."""
    built = optimizer(parameters)
    if lr_scheduler is None:
        return built
    scheduler = lr_scheduler(built)
    config = {"scheduler": scheduler, "interval": interval}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = monitor
    return {"optimizer": built, "lr_scheduler": config}
