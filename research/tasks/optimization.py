"""Optimizer and LR scheduler from config (dependency injection), shared by every task."""

from typing import Any

import torch
from lightning.pytorch import LightningModule


def configure_optimization(task: LightningModule, monitor: str = "val/loss") -> Any:
    """What ``configure_optimizers`` returns for a task holding the config's ``optimizer`` and ``lr_scheduler``
    callables and its ``scheduler_interval``; ``ReduceLROnPlateau`` watches ``monitor``.

    A schedule over the whole fit (``OneCycleLR``) whose config leaves ``total_steps`` and ``epochs`` out gets the
    Trainer's ``estimated_stepping_batches``, so ``--trainer.max_epochs`` stays the one setting of the fit's length.
    """
    optimizer = task.optimizer(task.parameters())
    if task.lr_scheduler is None:
        return optimizer
    given = getattr(task.lr_scheduler, "keywords", {})  # the config's init_args (LightningCLI builds a partial)
    if given.get("total_steps", 0) is None and given.get("epochs") is None:
        scheduler = task.lr_scheduler(optimizer, total_steps=int(task.trainer.estimated_stepping_batches))
    else:
        scheduler = task.lr_scheduler(optimizer)
    config = {"scheduler": scheduler, "interval": task.scheduler_interval}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = monitor
    return {"optimizer": optimizer, "lr_scheduler": config}
