"""A small panel of explained test cases in every run's figures (``medlab explain`` does the whole test split)."""

import copy
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from research.callbacks.figures import figures_folder, log_figure, plt


class ExplanationPanel(Callback):
    """Saves ``figures/explanations.png`` (W&B ``test/explanations``): the first test items, each beside its map of
    the predicted class (``research.explain``). Costs one batch of explanations after testing: well under a second
    for LeNet's Grad-CAM, so the quickstart experiment has it on; occlusion of volumes costs much more.

    Args:
        method: ``gradcam``, ``gradcampp`` or ``occlusion``.
        layer: Grad-CAM's target layer (default: per network family).
        count: test items in the panel.
    """

    def __init__(self, method: str = "gradcam", layer: str | None = None, count: int = 8) -> None:
        self.method, self.layer, self.count = method, layer, count
        self.batch: Any = None

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.batch = None

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if self.batch is None:
            self.batch = batch

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from research.explain import Explainer, groups, panel, picture

        folder = figures_folder(trainer)
        if not trainer.is_global_zero or self.batch is None:
            return
        names = pl_module.data.class_names
        # Testing runs under inference mode; the maps need gradients, and a copy of the network keeps MONAI's hooks
        # off the model being tested.
        with torch.inference_mode(False), torch.enable_grad():
            x, targets = next(groups(self.batch, sequences=len(self.batch) == 3))
            x, targets = x[: self.count].detach().cpu().clone(), targets[: self.count].cpu()
            net = copy.deepcopy(pl_module.net).cpu().float()
            explainer = Explainer(net, self.method, self.layer, multilabel=pl_module.data.task == "multilabel")
            probabilities, classes, maps = explainer(x)
        pictures = [picture(x[i].numpy(), maps[i].numpy()) for i in range(len(x))]
        titles = [f"{names[int(c)]} {float(p[c]):.2f} (true {names[int(t)]})"
                  for c, p, t in zip(classes, probabilities, targets, strict=True)]  # fmt: skip
        what = self.method + (f" of {explainer.layer}" if explainer.layer else "")
        figure = panel(pictures, titles, f"{what}: high = supports the predicted class")
        log_figure(trainer, folder, figure, "explanations", "test/explanations")
        plt.close(figure)
