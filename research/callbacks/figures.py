"""Test-set figures a reviewer asks for first: the confusion matrix and the ROC curve."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.loggers import WandbLogger  # noqa: E402


class ClassificationFigures(Callback):
    """Saves ``figures/confusion_matrix.png`` and ``figures/roc.png`` after testing and logs them to W&B.

    ``ImageClassifier`` adds it itself. Plotting computes the module's ``test_confusion_matrix`` and ``test_roc``
    torchmetrics, which syncs across DDP processes, so every rank plots and only rank zero writes.
    """

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        confusion_matrix, roc = pl_module.test_confusion_matrix, pl_module.test_roc
        names = getattr(trainer.datamodule, "class_names", None)
        figures = {
            "confusion_matrix": confusion_matrix.plot(labels=names)[0],
            "roc": roc.plot(score=True)[0] if pl_module.task == "binary" else roc.plot(score=True, labels=names)[0],
        }
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "figures"
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            for name, figure in figures.items():
                figure.savefig(folder / f"{name}.png", dpi=120, bbox_inches="tight")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    for name in figures:
                        logger.log_image(key=f"test/{name}", images=[str(folder / f"{name}.png")])
        for figure in figures.values():
            plt.close(figure)
